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
from types import TracebackType


class _Entry:
    """One holder or waiter. Its event is created only when a later overlapping request waits on it."""

    __slots__ = ("_done", "_released", "end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end  # exclusive
        self._done = False
        self._released: asyncio.Event | None = None

    @property
    def released(self) -> asyncio.Event:
        if self._released is None:
            self._released = asyncio.Event()
            if self._done:
                self._released.set()
        return self._released

    def release(self) -> None:
        self._done = True
        if self._released is not None:
            self._released.set()

    def overlaps(self, other: _Entry) -> bool:
        return self.start < other.end and other.start < self.end


class _Hold:
    """`async with lock.hold(start, count)`: a plain async context manager (cheaper than a generator-based one
    on the per-WRITE path)."""

    __slots__ = ("_count", "_entry", "_lock", "_start")

    def __init__(self, lock: RangeLock, start: int, count: int) -> None:
        self._lock = lock
        self._start = start
        self._count = count
        self._entry: _Entry | None = None

    async def __aenter__(self) -> None:
        if self._count <= 0:  # a zero count holds nothing and never waits
            return
        entries = self._lock._entries
        entry = _Entry(self._start, self._start + self._count)
        blockers = [e for e in entries if e.overlaps(entry)] if entries else []
        entries.append(entry)
        self._entry = entry
        if blockers:
            try:
                for blocker in blockers:
                    await blocker.released.wait()
            except BaseException:
                self._leave()
                raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._leave()

    def _leave(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._lock._entries.remove(entry)
            entry.release()


class RangeLock:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    @property
    def held(self) -> int:
        """Entries holding or waiting (for tests and statistics)."""
        return len(self._entries)

    def hold(self, start: int, count: int) -> _Hold:
        """Hold blocks [start, start+count) for the body of `async with`. A zero count holds nothing and never
        waits. A waiter that is cancelled leaves the list and releases its successors at once."""
        return _Hold(self, start, count)
