"""Positional I/O on a file descriptor, kept off the event loop (shared by fileio and block backstores).

Blocking syscalls run in one bounded, process-wide thread pool (`io_executor()`), so a slow disk never blocks
the event loop and a flood of commands cannot create unbounded threads. Reads and writes use
`os.preadv` / `os.pwritev` and loop over short transfers. FUA and write-through map to `RWF_DSYNC` (SBC-3
5.8: FUA=1 means the data is on the medium before GOOD), falling back to `fdatasync` where the kernel does not
take the flag.

The fast path (docs/performance.md): the thread hop costs more than a page-cache hit (a 4 KiB hit is ~1.5 us
of syscall, the hop 20-50 us plus GIL hand-offs), so

- reads first try `preadv2(RWF_NOWAIT)` on the loop: it answers from the page cache or fails with EAGAIN
  without blocking; whatever it could not deliver is read in the pool;
- buffered writes (write-back, no FUA) up to `SYNC_WRITE_MAX` bytes are done on the loop (they only copy into
  the page cache) unless a recent one was slow (dirty-page throttling): a write that took longer than
  `SLOW_WRITE_S` sends the writes of the next `SLOW_BACKOFF_S` seconds to the pool.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import functools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from target.backstore.base import Backstore, BackstoreError

T = TypeVar("T")

#: linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()
#: upper bound on I/O threads for the whole process
MAX_IO_THREADS = 16
#: buffered writes up to this size are done on the event loop (page-cache copies)
SYNC_WRITE_MAX = 256 * 1024
#: a write on the loop slower than this (well above a preempted page-cache copy) means the kernel throttles
#: (dirty pages): use the pool for a while
SLOW_WRITE_S = 0.02
SLOW_BACKOFF_S = 0.5
#: RWF_NOWAIT reads on the loop (None on platforms without the flag)
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def io_executor() -> ThreadPoolExecutor:
    """The process-wide bounded pool every fd backstore runs its syscalls in."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            workers = min(MAX_IO_THREADS, (os.cpu_count() or 1) * 4)
            _EXECUTOR = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backstore-io")
        return _EXECUTOR


_libc: ctypes.CDLL | None = None


def libc_fallocate() -> Callable[[int, int, int, int], int] | None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        except OSError:  # pragma: no cover - no libc
            return None
    fn = getattr(_libc, "fallocate", None)
    if fn is None:  # pragma: no cover
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


def punch_hole(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE): deallocate, reads return zeros. Raises OSError (EOPNOTSUPP...)."""
    fn = libc_fallocate()
    if fn is None:
        raise OSError(errno.EOPNOTSUPP, "fallocate not available")
    if fn(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def pread_full(fd: int, offset: int, length: int) -> bytearray:
    """Read exactly `length` bytes (zeros past end of file, which only a racing truncate can cause)."""
    buf = bytearray(length)
    view = memoryview(buf)
    done = 0
    while done < length:
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            break  # EOF: the rest stays zero
        done += n
    return buf


def pread_nowait(fd: int, buf: bytearray, offset: int) -> int:
    """Fill `buf` from `offset` without blocking (RWF_NOWAIT): the bytes the page cache could give, or -1 when
    the kernel or file system does not take the flag. Stops at EOF or at the first EAGAIN / short read."""
    if _RWF_NOWAIT is None:
        return -1
    view = memoryview(buf)
    length = len(buf)
    done = 0
    try:
        while done < length:
            n = os.preadv(fd, [view[done:]] if done else [view], offset + done, _RWF_NOWAIT)
            if n <= 0:
                break
            done += n
    except BlockingIOError:
        pass
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL) and done == 0:
            return -1
        raise
    finally:
        view.release()
    return done


def pread_into(fd: int, buf: bytearray, offset: int, start: int) -> None:
    """Read `buf[start:]` from `offset + start` (blocking; zeros past end of file)."""
    view = memoryview(buf)
    try:
        length = len(buf)
        done = start
        while done < length:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                break
            done += n
    finally:
        view.release()


def pwrite_full(fd: int, offset: int, data: bytes | bytearray | memoryview, dsync: bool) -> None:
    view = memoryview(data).cast("B")
    flags = os.RWF_DSYNC if dsync else 0
    done = 0
    total = len(view)
    while done < total:
        try:
            n = os.pwritev(fd, [view[done:]], offset + done, flags)
        except OSError as exc:
            if flags and exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                # kernel or file system without per-write flags: plain write + fdatasync below
                flags = 0
                continue
            raise
        if n == 0:  # pragma: no cover - a regular file never does this
            raise OSError(errno.EIO, "short write")
        done += n
    if dsync and not flags:
        os.fdatasync(fd)


class FdBackstore(Backstore):
    """Common part of the fileio and block backstores: an open fd, positional I/O in the thread pool."""

    def __init__(
        self,
        path: str,
        fd: int,
        *,
        size: int,
        block_size: int,
        write_back: bool,
        read_only: bool,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.path = path
        self._fd = fd
        self.size = size
        self.block_size = block_size
        self.write_back = write_back
        self.read_only = read_only
        self._executor = executor
        #: RWF_NOWAIT reads work on this fd (cleared after EOPNOTSUPP)
        self._nowait_reads = _RWF_NOWAIT is not None
        #: loop time before which buffered writes go to the pool (set after a slow write on the loop)
        self._sync_writes_after = 0.0

    # -- helpers ---------------------------------------------------------------------------------------

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise BackstoreError(f"{self.path}: backstore is closed")
        return self._fd

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor or io_executor(), functools.partial(fn, *args))
        except OSError as exc:
            raise BackstoreError(f"{self.path}: {exc.strerror or exc}") from exc

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BackstoreError(
                f"{self.path}: I/O [{offset}, +{length}) outside the {self.size}-byte medium"
            )

    # -- Backstore verbs ---------------------------------------------------------------------------------

    def _read_page_cache(self, buf: bytearray, offset: int) -> int:
        """`pread_nowait` into `buf`: the bytes the page cache gave, or -1 when this fd does not take RWF_NOWAIT
        (then never tried again)."""
        try:
            got = pread_nowait(self.fd, buf, offset)
        except OSError as exc:
            raise BackstoreError(f"{self.path}: {exc.strerror or exc}") from exc
        if got < 0:
            self._nowait_reads = False
        return got

    def read_nowait(self, offset: int, length: int) -> bytearray | None:
        if not self._nowait_reads or length <= 0 or offset < 0 or offset + length > self.size:
            return None
        buf = bytearray(length)
        return buf if self._read_page_cache(buf, offset) == length else None

    def write_nowait(self, offset: int, data: bytes | bytearray | memoryview, fua: bool = False) -> bool:
        # buffered (write-back, no FUA) writes only: they copy into the page cache
        n = len(data)
        if (
            fua
            or self.read_only
            or not self.write_back
            or n == 0
            or n > SYNC_WRITE_MAX
            or offset < 0
            or offset + n > self.size
        ):
            return False
        now = time.monotonic()
        if now < self._sync_writes_after:
            return False
        try:
            written = os.pwrite(self.fd, data, offset)
            if written != n:  # a short write (not seen on regular files): finish it the long way
                pwrite_full(self.fd, offset + written, memoryview(data)[written:], False)
        except OSError as exc:
            raise BackstoreError(f"{self.path}: {exc.strerror or exc}") from exc
        if time.monotonic() - now > SLOW_WRITE_S:
            self._sync_writes_after = time.monotonic() + SLOW_BACKOFF_S
        return True

    async def read(self, offset: int, length: int) -> bytearray:
        self._check_range(offset, length)
        if length == 0:
            return bytearray()
        fd = self.fd
        if self._nowait_reads:
            buf = bytearray(length)
            got = self._read_page_cache(buf, offset)
            if got == length:
                return buf
            if got >= 0:
                await self._run(pread_into, fd, buf, offset, got)
                return buf
        return await self._run(pread_full, fd, offset, length)

    async def write(self, offset: int, data: bytes | bytearray | memoryview, fua: bool = False) -> None:
        if self.read_only:
            raise BackstoreError(f"{self.path}: read-only backstore")
        self._check_range(offset, len(data))
        if len(data) == 0:
            return
        # buffered writes on the loop when they cannot block (write_nowait); write-through (write_back False)
        # and FUA writes are durable before they complete, in the pool
        if self.write_nowait(offset, data, fua):
            return
        await self._run(pwrite_full, self.fd, offset, data, fua or not self.write_back)

    async def flush(self) -> None:
        if self.read_only:
            return
        await self._run(os.fdatasync, self.fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, size={self.size}, block_size={self.block_size})"


def check_geometry(path: str, size: int, block_size: int) -> None:
    """The block size must be a power of two and the size a whole number of blocks (BackstoreError if not)."""
    if block_size <= 0 or block_size & (block_size - 1):
        raise BackstoreError(f"{path}: block size {block_size} is not a power of two")
    if size < 0 or size % block_size:
        raise BackstoreError(f"{path}: size {size} is not a multiple of the block size {block_size}")
