"""BLOCK backstore: a block device node is the medium (LIO target_core_iblock.c, over the page cache).

Size comes from ioctl(BLKGETSIZE64); UNMAP becomes ioctl(BLKDISCARD) when the device's queue advertises
discard (sysfs queue/discard_max_bytes). A discarded range is not guaranteed to read back as zeros, so LBPRZ
stays 0. A regular file is accepted in place of a device node (size from stat, discard by punching holes)
so the code path can be exercised where no loop device can be created.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from concurrent.futures import ThreadPoolExecutor

from target.backstore.base import BackstoreError
from target.backstore.fdio import FdBackstore, check_geometry, punch_hole

#: linux/fs.h ioctls
BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t)
BLKDISCARD = 0x1277  # _IO(0x12, 119), arg: uint64_t[2] = {start, length}
BLKSSZGET = 0x1268  # _IO(0x12, 104): logical sector size (int)


def _sysfs_queue_value(st: os.stat_result, key: str) -> str | None:
    base = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    for path in (f"{base}/queue/{key}", f"{base}/../queue/{key}"):  # a partition's queue is its disk's
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return None


class BlockBackstore(FdBackstore):
    def __init__(
        self,
        path: str,
        *,
        size: int = 0,
        block_size: int = 512,
        write_back: bool = True,
        read_only: bool = False,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        check_geometry(path, size, block_size)
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise BackstoreError(f"{path}: cannot open: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            self.is_device = stat.S_ISBLK(st.st_mode)
            if self.is_device:
                (dev_size,) = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))
                (sector,) = struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, b"\0" * 4))
                self.device_sector_size = sector
                discard = _sysfs_queue_value(st, "discard_max_bytes")
                can_discard = discard is not None and discard.isdigit() and int(discard) > 0
            elif stat.S_ISREG(st.st_mode):
                dev_size = st.st_size
                self.device_sector_size = 512
                can_discard = True
            else:
                raise BackstoreError(f"{path}: not a block device")
        except OSError as exc:
            os.close(fd)
            raise BackstoreError(f"{path}: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        if size == 0:
            size = dev_size - dev_size % block_size
        if size == 0 or size > dev_size:
            os.close(fd)
            raise BackstoreError(f"{path}: size {size} does not fit the {dev_size}-byte device")
        super().__init__(
            path,
            fd,
            size=size,
            block_size=block_size,
            write_back=write_back,
            read_only=read_only,
            executor=executor,
        )
        self.can_unmap = can_discard and not read_only
        self.unmap_zeroes = False

    def _discard_sync(self, offset: int, length: int) -> None:
        if self.is_device:
            fcntl.ioctl(self.fd, BLKDISCARD, struct.pack("QQ", offset, length))
        else:
            punch_hole(self.fd, offset, length)

    async def unmap(self, offset: int, length: int) -> None:
        if self.read_only:
            raise BackstoreError(f"{self.path}: read-only backstore")
        self._check_range(offset, length)
        if not length:
            return
        if not self.can_unmap:
            await super().unmap(offset, length)  # no discard: write zeros
            return
        await self._run(self._discard_sync, offset, length)
