"""RAMDISK backstore: a sparse medium in memory (LIO target_core_rd.c, rd_mcp without the page table limits).

Memory is a dict of fixed-size pages allocated on first write; a page never written reads as zeros, and
UNMAP drops whole pages (zeroing the partial pages at the ends), so LBPME=1 / LBPRZ=1 hold. Every verb
completes without awaiting anything, so each one is atomic with respect to the others on the event loop.
"""

from __future__ import annotations

from target.backstore.base import Backstore, BackstoreError

DEFAULT_PAGE_SIZE = 64 * 1024


class RamdiskBackstore(Backstore):
    def __init__(
        self,
        size: int,
        *,
        block_size: int = 512,
        page_size: int = DEFAULT_PAGE_SIZE,
        read_only: bool = False,
        name: str = "ramdisk",
    ) -> None:
        if block_size <= 0 or block_size & (block_size - 1):
            raise BackstoreError(f"{name}: block size {block_size} is not a power of two")
        if size <= 0 or size % block_size:
            raise BackstoreError(
                f"{name}: size {size} is not a positive multiple of the block size {block_size}"
            )
        if page_size <= 0 or page_size % block_size:
            raise BackstoreError(f"{name}: page size {page_size} is not a multiple of the block size")
        self.name = name
        self.size = size
        self.block_size = block_size
        self.page_size = page_size
        self.read_only = read_only
        self.can_unmap = True
        self.unmap_zeroes = True
        self.write_back = False
        self._pages: dict[int, bytearray] = {}

    @property
    def allocated_bytes(self) -> int:
        return len(self._pages) * self.page_size

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BackstoreError(
                f"{self.name}: I/O [{offset}, +{length}) outside the {self.size}-byte medium"
            )

    def _chunks(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(page index, offset in page, length) pieces of a byte range."""
        out = []
        pos = offset
        end = offset + length
        ps = self.page_size
        while pos < end:
            idx, in_page = divmod(pos, ps)
            n = min(ps - in_page, end - pos)
            out.append((idx, in_page, n))
            pos += n
        return out

    # memory never blocks: the async verbs are these
    def read_nowait(self, offset: int, length: int) -> bytearray:
        self._check_range(offset, length)
        buf = bytearray(length)
        pos = 0
        for idx, in_page, n in self._chunks(offset, length):
            page = self._pages.get(idx)
            if page is not None:
                buf[pos : pos + n] = page[in_page : in_page + n]
            pos += n
        return buf

    def write_nowait(self, offset: int, data: bytes | bytearray | memoryview, fua: bool = False) -> bool:
        if self.read_only:
            return False  # `write` raises the error
        view = memoryview(data).cast("B")
        self._check_range(offset, len(view))
        pos = 0
        for idx, in_page, n in self._chunks(offset, len(view)):
            page = self._pages.get(idx)
            if page is None:
                page = self._pages[idx] = bytearray(self.page_size)
            page[in_page : in_page + n] = view[pos : pos + n]
            pos += n
        return True

    async def read(self, offset: int, length: int) -> bytearray:
        return self.read_nowait(offset, length)

    async def write(self, offset: int, data: bytes | bytearray | memoryview, fua: bool = False) -> None:
        if self.read_only:
            raise BackstoreError(f"{self.name}: read-only backstore")
        self.write_nowait(offset, data)

    async def flush(self) -> None:
        return None

    async def unmap(self, offset: int, length: int) -> None:
        if self.read_only:
            raise BackstoreError(f"{self.name}: read-only backstore")
        self._check_range(offset, length)
        for idx, in_page, n in self._chunks(offset, length):
            if n == self.page_size:
                self._pages.pop(idx, None)
            else:
                page = self._pages.get(idx)
                if page is not None:
                    page[in_page : in_page + n] = bytes(n)
                    if not any(page):
                        del self._pages[idx]

    async def is_mapped(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        self._check_range(offset, length)
        out: list[tuple[int, int, bool]] = []
        pos = offset
        for idx, _in_page, n in self._chunks(offset, length):
            mapped = idx in self._pages
            if out and out[-1][2] == mapped:
                out[-1] = (out[-1][0], out[-1][1] + n, mapped)
            else:
                out.append((pos, n, mapped))
            pos += n
        return out

    async def resize(self, size: int) -> None:
        if size <= 0 or size % self.block_size:
            raise BackstoreError(f"{self.name}: new size {size} is not a positive multiple of the block size")
        if size < self.size:
            # drop data past the new end so a later grow reads zeros there
            last = size // self.page_size
            for idx in [i for i in self._pages if i >= last]:
                if idx == last and size % self.page_size:
                    cut = size % self.page_size
                    self._pages[idx][cut:] = bytes(self.page_size - cut)
                else:
                    del self._pages[idx]
        self.size = size

    def close(self) -> None:
        self._pages.clear()

    def __repr__(self) -> str:
        return f"RamdiskBackstore({self.name!r}, size={self.size}, block_size={self.block_size})"
