"""FILEIO backstore: a regular file is the medium (LIO target_core_file.c).

Thin (the default) keeps the file sparse: blocks never written are holes that read back as zeros, UNMAP punches
holes (fallocate PUNCH_HOLE|KEEP_SIZE) so the LU can report LBPME=1 and LBPRZ=1 (SBC-3 4.7.3.4), and GET LBA
STATUS is answered from SEEK_DATA / SEEK_HOLE. Thick allocates every block at creation (posix_fallocate) and
UNMAP only zeroes (the blocks stay allocated).

write_back=True: writes land in the page cache (WCE=1) and SYNCHRONIZE CACHE / FUA make them durable.
write_back=False: write-through, each write is durable (RWF_DSYNC) before it completes.
"""

from __future__ import annotations

import errno
import os
import stat
from concurrent.futures import ThreadPoolExecutor

from target.backstore.base import BackstoreError
from target.backstore.fdio import (
    FALLOC_FL_KEEP_SIZE,
    FdBackstore,
    check_geometry,
    libc_fallocate,
    punch_hole,
    pwrite_full,
)

#: linux/falloc.h: zero a range, keep it allocated
FALLOC_FL_ZERO_RANGE = 0x10


class FileioBackstore(FdBackstore):
    def __init__(
        self,
        path: str,
        *,
        size: int = 0,
        block_size: int = 512,
        write_back: bool = True,
        thin: bool = True,
        read_only: bool = False,
        create: bool = True,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        check_geometry(path, size, block_size)
        exists = os.path.exists(path)
        if not exists:
            if read_only:
                raise BackstoreError(f"{path}: file does not exist (read-only backstore cannot create it)")
            if not create or size == 0:
                raise BackstoreError(f"{path}: file does not exist and no size was given to create it")
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise BackstoreError(f"{path}: directory {parent} does not exist")
        flags = (os.O_RDONLY if read_only else os.O_RDWR | os.O_CREAT) | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise BackstoreError(f"{path}: cannot open: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BackstoreError(f"{path}: not a regular file (use the block backstore for devices)")
            if size == 0:
                size = st.st_size
                if size == 0:
                    raise BackstoreError(f"{path}: file is empty and no size was given")
                if size % block_size:
                    raise BackstoreError(
                        f"{path}: file size {size} is not a multiple of the block size {block_size}"
                    )
            if st.st_size < size:
                if read_only:
                    raise BackstoreError(f"{path}: file is {st.st_size} bytes, smaller than the size {size}")
                os.ftruncate(fd, size)  # sparse extension
            if not thin and not read_only:
                os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            raise BackstoreError(f"{path}: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        super().__init__(
            path,
            fd,
            size=size,
            block_size=block_size,
            write_back=write_back,
            read_only=read_only,
            executor=executor,
        )
        self.thin = thin
        # thin: UNMAP deallocates (punched holes read as zeros); thick: UNMAP zeroes in place
        self.can_unmap = thin
        self.unmap_zeroes = True

    # -- UNMAP / provisioning ------------------------------------------------------------------------------

    def _unmap_sync(self, offset: int, length: int) -> None:
        fd = self.fd
        if self.thin:
            try:
                punch_hole(fd, offset, length)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                self._zero_sync(offset, length)
        else:
            self._zero_sync(offset, length)
        if not self.write_back:
            os.fdatasync(fd)

    def _zero_sync(self, offset: int, length: int) -> None:
        fn = libc_fallocate()
        if fn is not None and fn(self.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
            return
        chunk = 1 << 20
        zeros = bytes(min(chunk, length))
        pos = offset
        end = offset + length
        while pos < end:
            n = min(chunk, end - pos)
            pwrite_full(self.fd, pos, zeros[:n], False)
            pos += n

    async def unmap(self, offset: int, length: int) -> None:
        if self.read_only:
            raise BackstoreError(f"{self.path}: read-only backstore")
        self._check_range(offset, length)
        if length:
            await self._run(self._unmap_sync, offset, length)

    def _extents_sync(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        fd = self.fd
        end = offset + length
        out: list[tuple[int, int, bool]] = []
        pos = offset

        def add(start: int, stop: int, mapped: bool) -> None:
            if stop <= start:
                return
            if out and out[-1][2] == mapped and out[-1][0] + out[-1][1] == start:
                out[-1] = (out[-1][0], out[-1][1] + stop - start, mapped)
            else:
                out.append((start, stop - start, mapped))

        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data at or after pos
                    data = end
                elif exc.errno == errno.EINVAL:  # file system without SEEK_DATA: all mapped
                    add(pos, end, True)
                    break
                else:
                    raise
            if data > pos:
                add(pos, min(data, end), False)
                pos = min(data, end)
                continue
            hole = os.lseek(fd, pos, os.SEEK_HOLE)
            stop = min(max(hole, pos + 1), end)
            add(pos, stop, True)
            pos = stop
        return out

    async def is_mapped(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        self._check_range(offset, length)
        if length == 0:
            return []
        return await self._run(self._extents_sync, offset, length)

    # -- resize ------------------------------------------------------------------------------------------

    def _resize_sync(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        if not self.thin and size > self.size:
            os.posix_fallocate(self.fd, self.size, size - self.size)

    async def resize(self, size: int) -> None:
        if self.read_only:
            raise BackstoreError(f"{self.path}: read-only backstore")
        if size <= 0 or size % self.block_size:
            raise BackstoreError(f"{self.path}: new size {size} is not a multiple of the block size")
        await self._run(self._resize_sync, size)
        self.size = size
