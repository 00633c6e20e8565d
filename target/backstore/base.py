"""The backstore interface: the few verbs the SBC device needs (LIO's se_subsystem_api, trimmed).

All offsets and lengths are in bytes. Methods are coroutines so a backstore can keep blocking I/O off the
event loop (fileio/block run their syscalls in a thread pool; ramdisk answers at once).
"""

from __future__ import annotations

import abc


class BackstoreError(Exception):
    """An I/O error from the medium (becomes MEDIUM ERROR / WRITE ERROR / UNRECOVERED READ ERROR)."""


class Backstore(abc.ABC):
    #: capacity in bytes (a multiple of block_size)
    size: int
    block_size: int
    #: True when UNMAP makes blocks read back as zeros (LBPRZ)
    unmap_zeroes: bool = False
    #: True when the backstore can deallocate (thin provisioning, LBPME)
    can_unmap: bool = False
    #: True when writes are cached and need flush() to be durable (WCE)
    write_back: bool = False
    #: True when the medium was opened read-only (writes raise BackstoreError; the LU reports write protect)
    read_only: bool = False

    @abc.abstractmethod
    async def read(self, offset: int, length: int) -> bytes | bytearray | memoryview: ...

    @abc.abstractmethod
    async def write(self, offset: int, data: bytes | bytearray | memoryview, fua: bool = False) -> None: ...

    @abc.abstractmethod
    async def flush(self) -> None: ...

    def read_nowait(self, offset: int, length: int) -> bytes | bytearray | None:
        """The bytes at once if the backstore has them without blocking (page cache, memory), else None (the
        caller then uses `read`). Raises BackstoreError like `read`. Default: None."""
        return None

    def write_nowait(self, offset: int, data: bytes | bytearray | memoryview, fua: bool = False) -> bool:
        """`write` done at once if that cannot block; False when it was not done (the caller then uses `write`).
        Raises BackstoreError like `write`. Default: False."""
        return False

    async def unmap(self, offset: int, length: int) -> None:
        """Deallocate a range; the default writes zeros (a thick backstore)."""
        await self.write(offset, bytes(length))

    async def is_mapped(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """GET LBA STATUS: [(offset, length, mapped)] covering [offset, offset+length). Default: all mapped."""
        return [(offset, length, True)]

    async def resize(self, size: int) -> None:
        raise BackstoreError("resize not supported")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file descriptors."""
