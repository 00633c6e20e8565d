"""Build a Backstore from its configuration (`StorageObjectConfig`), with errors that name the object."""

from __future__ import annotations

import os
import stat

from target.backstore.base import Backstore, BackstoreError
from target.backstore.block import BlockBackstore
from target.backstore.fileio import FileioBackstore
from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig

#: logical block sizes we serve (LIO accepts the same set)
SUPPORTED_BLOCK_SIZES = (512, 1024, 2048, 4096)


class BackstoreConfigError(BackstoreError):
    """The storage object's configuration cannot be realised (missing file, bad size, ...)."""


def validate_geometry(cfg: StorageObjectConfig) -> None:
    """Checks that need no file system access."""
    where = cfg.path
    if cfg.block_size not in SUPPORTED_BLOCK_SIZES:
        raise BackstoreConfigError(
            f"{where}: block_size {cfg.block_size} not supported (one of {', '.join(map(str, SUPPORTED_BLOCK_SIZES))})"
        )
    pbs = cfg.physical_block_size
    if pbs and (
        pbs < cfg.block_size or pbs % cfg.block_size or pbs & (pbs - 1) or pbs // cfg.block_size > 1 << 15
    ):
        raise BackstoreConfigError(
            f"{where}: physical_block_size {pbs} must be a power-of-two multiple of block_size {cfg.block_size}"
        )
    if cfg.size < 0:
        raise BackstoreConfigError(f"{where}: size {cfg.size} is negative")
    if cfg.size % cfg.block_size:
        raise BackstoreConfigError(
            f"{where}: size {cfg.size} is not a multiple of the block size {cfg.block_size}"
        )


def open_backstore(cfg: StorageObjectConfig) -> Backstore:
    """Open (or create, for fileio with a size) the medium a storage object describes.

    Raises BackstoreConfigError with a message naming `plugin/name` for every problem.
    """
    validate_geometry(cfg)
    where = cfg.path
    try:
        if cfg.plugin == "ramdisk":
            if cfg.size == 0:
                raise BackstoreConfigError(f"{where}: a ramdisk needs a size")
            return RamdiskBackstore(cfg.size, block_size=cfg.block_size, read_only=cfg.readonly, name=where)
        if cfg.plugin == "fileio":
            if not cfg.dev:
                raise BackstoreConfigError(f"{where}: no file path (dev) given")
            if os.path.isdir(cfg.dev):
                raise BackstoreConfigError(f"{where}: {cfg.dev} is a directory")
            if not os.path.exists(cfg.dev) and cfg.size == 0:
                raise BackstoreConfigError(f"{where}: file {cfg.dev} does not exist and no size was given")
            return FileioBackstore(
                cfg.dev,
                size=cfg.size,
                block_size=cfg.block_size,
                write_back=cfg.write_back,
                thin=cfg.thin,
                read_only=cfg.readonly,
            )
        if cfg.plugin == "block":
            if not cfg.dev:
                raise BackstoreConfigError(f"{where}: no device path (dev) given")
            try:
                st = os.stat(cfg.dev)
            except FileNotFoundError:
                raise BackstoreConfigError(f"{where}: device {cfg.dev} does not exist") from None
            if not stat.S_ISBLK(st.st_mode):
                raise BackstoreConfigError(f"{where}: {cfg.dev} is not a block device")
            return BlockBackstore(
                cfg.dev,
                size=cfg.size,
                block_size=cfg.block_size,
                write_back=cfg.write_back,
                read_only=cfg.readonly,
            )
    except BackstoreConfigError:
        raise
    except BackstoreError as exc:
        raise BackstoreConfigError(f"{where}: {exc}") from exc
    raise BackstoreConfigError(f"{where}: unknown backstore plugin {cfg.plugin!r}")
