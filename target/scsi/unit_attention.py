"""Unit attention conditions, one bounded queue per I_T nexus per logical unit (SAM-5 5.14, SPC-4 5.11 / 7.5.8).

Theory of operation (UA_INTLCK_CTRL = 00b, the only mode we offer):
- A condition is established for some I_T nexuses (all known ones, or all but the one that caused it).
- A command other than INQUIRY, REPORT LUNS or REQUEST SENSE arriving on a nexus with a pending condition is
  terminated with CHECK CONDITION / UNIT ATTENTION reporting the highest-priority condition, which is then
  cleared (SAM-5 5.14.2).
- INQUIRY is processed and reports nothing; REPORT LUNS is processed and clears REPORTED LUNS DATA HAS CHANGED
  (SPC-4 6.33); REQUEST SENSE returns the condition as its parameter data and clears it (SPC-4 6.39).
- Priority (SAM-5 5.14.3 leaves it to the device; we follow LIO): reset-class conditions (29h) first, then
  arrival order. A reset-class condition supersedes the conditions it implies (parameter changes, commands
  cleared), which are dropped. Duplicate conditions are kept once. The queue is bounded: when full, the oldest
  lowest-priority condition is dropped (SPC-4 lets a device lose conditions it cannot queue).
"""

from __future__ import annotations

from collections.abc import Iterable

from target.scsi.command import Nexus
from target.scsi.sense import Asc

MAX_PENDING = 16

#: conditions a reset-class (29h) condition makes redundant
_SUPERSEDED_BY_RESET = frozenset(
    {
        Asc.MODE_PARAMETERS_CHANGED,
        Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR,
        Asc.CAPACITY_DATA_HAS_CHANGED,
        Asc.PARAMETERS_CHANGED,
    }
)


def _is_reset(asc: Asc) -> bool:
    return asc.asc == 0x29


class UnitAttentionQueue:
    """Pending conditions of one I_T nexus at one logical unit."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self._pending: list[Asc] = []
        self._limit = limit

    def __len__(self) -> int:
        return len(self._pending)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def pending(self) -> list[Asc]:
        """In reporting order."""
        return sorted(self._pending, key=lambda a: 0 if _is_reset(a) else 1)

    def add(self, asc: Asc) -> None:
        if asc in self._pending:
            return
        if _is_reset(asc):
            # a newer reset supersedes older reset-class ones and the changes a reset implies
            self._pending = [a for a in self._pending if not _is_reset(a) and a not in _SUPERSEDED_BY_RESET]
        if len(self._pending) >= self._limit:
            order = self.pending()
            self._pending.remove(order[-1])
        self._pending.append(asc)

    def peek(self) -> Asc | None:
        order = self.pending()
        return order[0] if order else None

    def pop(self) -> Asc | None:
        head = self.peek()
        if head is not None:
            self._pending.remove(head)
        return head

    def discard(self, asc: Asc) -> None:
        if asc in self._pending:
            self._pending.remove(asc)

    def clear(self) -> None:
        self._pending.clear()


class UnitAttentions:
    """All unit attention queues of one logical unit, keyed by I_T nexus."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        # None: a known nexus with nothing pending (the queue is made by the first condition: a login to a
        # target with many LUs registers the nexus with each of them)
        self._queues: dict[Nexus, UnitAttentionQueue | None] = {}
        self._limit = limit

    @property
    def nexuses(self) -> list[Nexus]:
        return list(self._queues)

    def register(self, nexus: Nexus) -> None:
        """Make the nexus known (so conditions established for "every I_T nexus" reach it)."""
        if nexus not in self._queues:
            self._queues[nexus] = None

    def _queue(self, nexus: Nexus) -> UnitAttentionQueue:
        q = self._queues.get(nexus)
        if q is None:
            q = self._queues[nexus] = UnitAttentionQueue(self._limit)
        return q

    def forget(self, nexus: Nexus) -> None:
        self._queues.pop(nexus, None)

    def establish(
        self, asc: Asc, *, only: Iterable[Nexus] | None = None, exclude: Nexus | None = None
    ) -> None:
        """Establish `asc` for the nexuses in `only` (default: every known nexus) except `exclude`."""
        targets = list(only) if only is not None else list(self._queues)
        for nexus in targets:
            if nexus == exclude:
                continue
            self._queue(nexus).add(asc)

    def quiet(self, nexus: Nexus) -> bool:
        """The nexus is known (registered) and has nothing pending."""
        return nexus in self._queues and not self._queues[nexus]

    def has_pending(self, nexus: Nexus) -> bool:
        q = self._queues.get(nexus)
        return bool(q)

    def pending(self, nexus: Nexus) -> list[Asc]:
        q = self._queues.get(nexus)
        return q.pending() if q else []

    def take(self, nexus: Nexus) -> Asc | None:
        """Report-and-clear the highest-priority condition of `nexus` (None when none is pending)."""
        q = self._queues.get(nexus)
        return q.pop() if q else None

    def clear(self, nexus: Nexus, asc: Asc) -> None:
        q = self._queues.get(nexus)
        if q:
            q.discard(asc)
