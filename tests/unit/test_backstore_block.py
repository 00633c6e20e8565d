"""BLOCK backstore: against a loop device when one can be set up here, else a regular file stands in."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from target.backstore.base import BackstoreError
from target.backstore.block import BlockBackstore

MiB = 1 << 20


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[str, bool]]:
    """(path, is a real block device). Tries a loop device; a regular file stands in when that fails."""
    img = tmp_path / "backing.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    loop = ""
    if shutil.which("losetup") and os.geteuid() == 0:
        try:
            out = subprocess.run(
                ["losetup", "-f", "--show", str(img)], capture_output=True, text=True, timeout=10, check=True
            )
            loop = out.stdout.strip()
        except (subprocess.SubprocessError, OSError):
            loop = ""
    if loop:
        try:
            yield loop, True
        finally:
            subprocess.run(["losetup", "-d", loop], check=False, timeout=10)
    else:
        # no loop device here: the regular-file path of BlockBackstore is what gets exercised
        yield str(img), False


def test_size_read_write_flush(device: tuple[str, bool]) -> None:
    path, is_dev = device
    bs = BlockBackstore(path)

    async def go() -> None:
        assert bs.size == 8 * MiB
        assert bs.is_device == is_dev
        data = os.urandom(64 * 1024)
        await bs.write(MiB, data)
        await bs.write(2 * MiB, data, fua=True)
        await bs.flush()
        assert await bs.read(MiB, len(data)) == data
        assert await bs.read(2 * MiB, len(data)) == data
        with pytest.raises(BackstoreError):
            await bs.read(8 * MiB - 512, 1024)

    try:
        asyncio.run(go())
    finally:
        bs.close()


def test_discard(device: tuple[str, bool]) -> None:
    path, _ = device
    bs = BlockBackstore(path, block_size=4096)

    async def go() -> None:
        await bs.write(0, b"\x5a" * MiB)
        await bs.flush()
        assert bs.can_unmap  # loop devices advertise discard; files punch holes
        assert not bs.unmap_zeroes  # discard does not promise zeros in general (LBPRZ=0)
        await bs.unmap(0, 512 * 1024)
        # data outside the discarded range is untouched
        assert await bs.read(512 * 1024, 512 * 1024) == b"\x5a" * (512 * 1024)

    try:
        asyncio.run(go())
    finally:
        bs.close()


def test_size_limits(device: tuple[str, bool]) -> None:
    path, _ = device
    small = BlockBackstore(path, size=MiB)
    try:
        assert small.size == MiB
    finally:
        small.close()
    with pytest.raises(BackstoreError, match="does not fit"):
        BlockBackstore(path, size=16 * MiB)
    with pytest.raises(BackstoreError, match="multiple"):
        BlockBackstore(path, size=1000)


def test_not_a_device(tmp_path: Path) -> None:
    with pytest.raises(BackstoreError, match="not a block device"):
        BlockBackstore("/dev/null")
    with pytest.raises(BackstoreError, match="cannot open"):
        BlockBackstore(str(tmp_path / "missing"))
