"""FILEIO backstore: sparse files, hole punching, FUA, write-through, resize, thick provisioning."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from target.backstore.base import BackstoreError
from target.backstore.fileio import FileioBackstore

MiB = 1 << 20


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_sparse_by_default(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    bs = FileioBackstore(str(path), size=64 * MiB)
    try:
        st = os.stat(path)
        assert st.st_size == 64 * MiB
        assert st.st_blocks * 512 < MiB  # nothing allocated yet
        assert bs.can_unmap and bs.unmap_zeroes
        assert run(bs.read(0, 4096)) == bytes(4096)
    finally:
        bs.close()


def test_read_write_round_trip(tmp_path: Path) -> None:
    bs = FileioBackstore(str(tmp_path / "d"), size=MiB, block_size=4096)

    async def go() -> None:
        data = os.urandom(3 * 4096)
        await bs.write(8192, data)
        assert await bs.read(8192, len(data)) == data
        assert await bs.read(0, 8192) == bytes(8192)
        await bs.write(MiB - 4096, b"\xaa" * 4096, fua=True)
        assert await bs.read(MiB - 4096, 4096) == b"\xaa" * 4096
        await bs.flush()

    try:
        run(go())
    finally:
        bs.close()


def test_out_of_range_is_an_error(tmp_path: Path) -> None:
    bs = FileioBackstore(str(tmp_path / "d"), size=MiB)
    try:
        with pytest.raises(BackstoreError):
            run(bs.read(MiB - 512, 1024))
        with pytest.raises(BackstoreError):
            run(bs.write(MiB, b"x" * 512))
    finally:
        bs.close()


def test_punch_hole_reads_zeros_and_deallocates(tmp_path: Path) -> None:
    path = tmp_path / "d"
    bs = FileioBackstore(str(path), size=4 * MiB)

    async def go() -> None:
        await bs.write(0, b"\x55" * (2 * MiB))
        await bs.flush()
        assert await bs.is_mapped(0, 4 * MiB) == [(0, 2 * MiB, True), (2 * MiB, 2 * MiB, False)]
        await bs.unmap(MiB, MiB)
        assert await bs.read(MiB, MiB) == bytes(MiB)
        assert await bs.read(0, MiB) == b"\x55" * MiB
        extents = await bs.is_mapped(0, 4 * MiB)
        assert extents == [(0, MiB, True), (MiB, 3 * MiB, False)]
        # a sub-range query is clipped to the range asked for
        assert await bs.is_mapped(MiB - 4096, 8192) == [(MiB - 4096, 4096, True), (MiB, 4096, False)]

    try:
        run(go())
        assert os.stat(path).st_blocks * 512 <= MiB + 64 * 1024
    finally:
        bs.close()


def test_fua_and_write_through(tmp_path: Path) -> None:
    bs = FileioBackstore(str(tmp_path / "d"), size=MiB, write_back=False)

    async def go() -> None:
        await bs.write(0, b"\x01" * 512)
        await bs.write(512, b"\x02" * 512, fua=True)

    try:
        assert bs.write_back is False
        run(go())
        # durable data is visible through an independent descriptor
        with open(tmp_path / "d", "rb") as f:
            assert f.read(1024) == b"\x01" * 512 + b"\x02" * 512
    finally:
        bs.close()


def test_resize_grow_and_shrink(tmp_path: Path) -> None:
    path = tmp_path / "d"
    bs = FileioBackstore(str(path), size=MiB)

    async def go() -> None:
        await bs.write(MiB - 512, b"\x77" * 512)
        await bs.resize(2 * MiB)
        assert bs.size == 2 * MiB
        assert os.path.getsize(path) == 2 * MiB
        assert await bs.read(MiB - 512, 1024) == b"\x77" * 512 + bytes(512)
        await bs.resize(MiB // 2)
        assert bs.size == MiB // 2
        with pytest.raises(BackstoreError):
            await bs.read(MiB - 512, 512)
        with pytest.raises(BackstoreError):
            await bs.resize(1000)

    try:
        run(go())
    finally:
        bs.close()


def test_thick_allocates_everything(tmp_path: Path) -> None:
    path = tmp_path / "d"
    bs = FileioBackstore(str(path), size=4 * MiB, thin=False)

    async def go() -> None:
        await bs.write(0, b"\x33" * 4096)
        await bs.unmap(0, 4096)  # zeroes but keeps the blocks allocated
        assert await bs.read(0, 4096) == bytes(4096)

    try:
        assert not bs.can_unmap
        assert os.stat(path).st_blocks * 512 >= 4 * MiB
        run(go())
        assert os.stat(path).st_blocks * 512 >= 4 * MiB
    finally:
        bs.close()


def test_size_taken_from_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "d"
    path.write_bytes(b"\x11" * 8192)
    bs = FileioBackstore(str(path))
    try:
        assert bs.size == 8192
        assert run(bs.read(4096, 512)) == b"\x11" * 512
    finally:
        bs.close()


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(BackstoreError, match="does not exist"):
        FileioBackstore(str(tmp_path / "missing"))
    with pytest.raises(BackstoreError, match="multiple"):
        FileioBackstore(str(tmp_path / "x"), size=1000)
    odd = tmp_path / "odd"
    odd.write_bytes(b"x" * 1000)
    with pytest.raises(BackstoreError, match="multiple"):
        FileioBackstore(str(odd))
    with pytest.raises(BackstoreError, match="directory"):
        FileioBackstore(str(tmp_path / "nodir" / "f"), size=4096)
    with pytest.raises(BackstoreError, match="directory"):
        FileioBackstore(str(tmp_path), size=4096)


def test_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ro"
    path.write_bytes(b"\x22" * 4096)
    bs = FileioBackstore(str(path), read_only=True)
    try:
        assert bs.read_only
        assert run(bs.read(0, 512)) == b"\x22" * 512
        with pytest.raises(BackstoreError):
            run(bs.write(0, b"\0" * 512))
        with pytest.raises(BackstoreError):
            run(bs.unmap(0, 512))
    finally:
        bs.close()
    with pytest.raises(BackstoreError, match="read-only"):
        FileioBackstore(str(tmp_path / "absent"), size=4096, read_only=True)


def test_concurrent_io_runs_off_the_loop(tmp_path: Path) -> None:
    bs = FileioBackstore(str(tmp_path / "d"), size=MiB)

    async def go() -> None:
        blocks = [bytes([i]) * 4096 for i in range(64)]
        await asyncio.gather(*(bs.write(i * 4096, b) for i, b in enumerate(blocks)))
        got = await asyncio.gather(*(bs.read(i * 4096, 4096) for i in range(64)))
        assert got == blocks

    try:
        run(go())
    finally:
        bs.close()


def test_closed_backstore_raises(tmp_path: Path) -> None:
    bs = FileioBackstore(str(tmp_path / "d"), size=MiB)
    bs.close()
    bs.close()  # idempotent
    with pytest.raises(BackstoreError, match="closed"):
        run(bs.read(0, 512))
