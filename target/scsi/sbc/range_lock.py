"""An asyncio lock over LBA ranges: holders of overlapping ranges run one at a time, in arrival order.

Theory of operation: every request joins one list in arrival order and waits until each earlier entry that
overlaps its range has released. Waiting only on earlier entries keeps the wait graph acyclic (no deadlock)
and makes the lock fair (no starvation); disjoint ranges never wait for each other. A waiter that is cancelled
leaves the list and releases its successors at once.

Every path that changes the medium (WRITE, WRITE AND VERIFY, WRITE SAME, UNMAP, COMPARE AND WRITE, EXTENDED COPY
destination) holds the range it changes, so COMPARE AND WRITE's read-compare-write is atomic (SBC-3 5.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Entry:
    start: int
    end: int  # exclusive
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def overlaps(self, other: _Entry) -> bool:
        return self.start < other.end and other.start < self.end


class RangeLock:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    @property
    def held(self) -> int:
        """Entries holding or waiting (for tests and statistics)."""
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, start: int, count: int) -> AsyncIterator[None]:
        """Hold blocks [start, start+count). A zero count holds nothing and never waits."""
        if count <= 0:
            yield
            return
        entry = _Entry(start, start + count)
        blockers = [e for e in self._entries if e.overlaps(entry)]
        self._entries.append(entry)
        try:
            for blocker in blockers:
                await blocker.released.wait()
            yield
        finally:
            self._entries.remove(entry)
            entry.released.set()
