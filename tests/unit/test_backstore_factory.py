"""open_backstore: StorageObjectConfig -> Backstore, with errors naming the storage object."""

from __future__ import annotations

from pathlib import Path

import pytest

from target.backstore.factory import BackstoreConfigError, open_backstore
from target.backstore.fileio import FileioBackstore
from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig


def test_ramdisk() -> None:
    bs = open_backstore(StorageObjectConfig(plugin="ramdisk", name="r0", size=1 << 20, block_size=4096))
    assert isinstance(bs, RamdiskBackstore)
    assert (bs.size, bs.block_size) == (1 << 20, 4096)


def test_fileio_created_with_options(tmp_path: Path) -> None:
    cfg = StorageObjectConfig(
        plugin="fileio", name="f0", dev=str(tmp_path / "f0.img"), size=1 << 20, write_back=False, thin=False
    )
    bs = open_backstore(cfg)
    try:
        assert isinstance(bs, FileioBackstore)
        assert bs.write_back is False and bs.thin is False and not bs.can_unmap
    finally:
        bs.close()
    ro = open_backstore(StorageObjectConfig(plugin="fileio", name="f0", dev=cfg.dev, readonly=True))
    try:
        assert ro.read_only and ro.size == 1 << 20
    finally:
        ro.close()


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (StorageObjectConfig(plugin="ramdisk", name="r", size=0), "needs a size"),
        (StorageObjectConfig(plugin="ramdisk", name="r", size=4096, block_size=520), "block_size 520"),
        (StorageObjectConfig(plugin="ramdisk", name="r", size=4100), "not a multiple"),
        (
            StorageObjectConfig(plugin="ramdisk", name="r", size=8192, physical_block_size=768),
            "physical_block",
        ),
        (StorageObjectConfig(plugin="fileio", name="f", size=4096), "no file path"),
        (StorageObjectConfig(plugin="fileio", name="f", dev="/nonexistent/x.img"), "does not exist"),
        (
            StorageObjectConfig(plugin="fileio", name="f", dev="/nonexistent/x.img", size=4096),
            "does not exist",
        ),
        (StorageObjectConfig(plugin="block", name="b", dev="/nonexistent/dev"), "does not exist"),
        (StorageObjectConfig(plugin="block", name="b", dev="/dev/null"), "not a block device"),
        (StorageObjectConfig(plugin="block", name="b"), "no device path"),
        (StorageObjectConfig(plugin="nosuch", name="x", size=4096), "unknown backstore plugin"),  # type: ignore[arg-type]
    ],
)
def test_errors_name_the_object(cfg: StorageObjectConfig, message: str) -> None:
    with pytest.raises(BackstoreConfigError, match=message) as info:
        open_backstore(cfg)
    assert cfg.path in str(info.value)


def test_fileio_odd_sized_file(tmp_path: Path) -> None:
    p = tmp_path / "odd.img"
    p.write_bytes(b"\0" * 1000)
    with pytest.raises(BackstoreConfigError, match=r"fileio/odd.*multiple"):
        open_backstore(StorageObjectConfig(plugin="fileio", name="odd", dev=str(p)))
