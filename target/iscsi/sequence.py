"""Command numbering: the per-session CmdSN window (RFC 7143 4.2.2.1) with serial number arithmetic.

Theory of operation
-------------------
Every non-immediate command carries a CmdSN; the target delivers commands to the SCSI layer in CmdSN order
(across all connections of the session, MC/S), ExpCmdSN is the next CmdSN it expects and MaxCmdSN the last
one it will accept. Sequence numbers are 32-bit and wrap, so comparisons use RFC 1982 serial arithmetic
(SERIAL_BITS = 32).

* A command with ExpCmdSN <= CmdSN <= MaxCmdSN is admitted. If CmdSN == ExpCmdSN it is delivered at once,
  together with any held commands that directly follow it; otherwise it is held until the gap fills
  (out-of-order arrival over several connections). Holding is bounded by the window itself.
* A command outside the window (an old duplicate, or beyond MaxCmdSN) is dropped silently (4.2.2.1:
  "the target MUST silently ignore any non-immediate command outside of this range").
* Immediate commands are delivered at once and do not advance ExpCmdSN (they carry the current CmdSN).
* MaxCmdSN starts at ExpCmdSN + depth - 1 (LIO's default_cmdsn_depth, 64) and, as in LIO, advances by one
  each time a non-immediate command completes. Hence the number of admitted but not yet completed commands
  is bounded by `depth`: this is the "commands in flight per session" bound.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

SERIAL_MOD = 1 << 32
_HALF = 1 << 31
DEFAULT_CMDSN_DEPTH = 64
MAX_CMDSN_DEPTH = 512  # LIO's TA_DEFAULT_CMDSN_DEPTH_MAX

T = TypeVar("T")
PLUG: Any = object()


def sn_add(a: int, n: int) -> int:
    """Serial addition (RFC 1982 3.1), modulo 2**32."""
    return (a + n) % SERIAL_MOD


def sn_lt(a: int, b: int) -> bool:
    """a < b in RFC 1982 serial arithmetic (3.2). Undefined (here: False) when a and b are 2**31 apart."""
    return a != b and ((a < b and b - a < _HALF) or (a > b and a - b > _HALF))


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


def sn_gt(a: int, b: int) -> bool:
    return sn_lt(b, a)


def sn_ge(a: int, b: int) -> bool:
    return a == b or sn_lt(b, a)


def sn_diff(a: int, b: int) -> int:
    """Signed distance a - b in serial space (between -2**31 and 2**31 - 1)."""
    d = (a - b) % SERIAL_MOD
    return d - SERIAL_MOD if d >= _HALF else d


class Admission(enum.Enum):
    DELIVERED = "delivered"  # this command (and maybe held successors) can run now
    HELD = "held"  # inside the window, waiting for a lower CmdSN
    DROPPED = "dropped"  # outside the window or a duplicate: silently ignored


@dataclass
class Submitted(Generic[T]):
    admission: Admission
    deliver: list[T] = field(default_factory=list)  # in CmdSN order, including the submitted item if due


class CmdSnWindow(Generic[T]):
    """The session's command window. Items are opaque to the window (the connection stores its tasks)."""

    def __init__(self, exp_cmdsn: int, depth: int = DEFAULT_CMDSN_DEPTH) -> None:
        if not 1 <= depth <= MAX_CMDSN_DEPTH:
            raise ValueError(f"CmdSN depth {depth} out of range 1..{MAX_CMDSN_DEPTH}")
        self.depth = depth
        self._exp = exp_cmdsn % SERIAL_MOD
        self._max = sn_add(self._exp, depth - 1)
        self._held: dict[int, T] = {}
        self.in_flight = 0  # admitted non-immediate commands not yet completed

    @property
    def exp_cmdsn(self) -> int:
        return self._exp

    @property
    def max_cmdsn(self) -> int:
        return self._max

    @property
    def held_count(self) -> int:
        return len(self._held)

    def in_window(self, cmdsn: int) -> bool:
        return sn_le(self._exp, cmdsn) and sn_le(cmdsn, self._max)

    def is_past(self, cmdsn: int) -> bool:
        """True when a command with this CmdSN has already been received (CmdSN < ExpCmdSN)."""
        return sn_lt(cmdsn, self._exp)

    def submit(self, cmdsn: int, immediate: bool, item: T) -> Submitted[T]:
        if immediate:
            return Submitted(Admission.DELIVERED, [item])
        if not self.in_window(cmdsn) or cmdsn in self._held:
            return Submitted(Admission.DROPPED)
        self.in_flight += 1
        if cmdsn != self._exp:
            self._held[cmdsn] = item
            return Submitted(Admission.HELD)
        out = [item]
        self._exp = sn_add(self._exp, 1)
        while self._exp in self._held:
            out.append(self._held.pop(self._exp))
            self._exp = sn_add(self._exp, 1)
        return Submitted(Admission.DELIVERED, out)

    def pass_through(self, cmdsn: int) -> None:
        """The command at ExpCmdSN, with nothing held, was delivered and completed in one step (the direct
        path): ExpCmdSN and MaxCmdSN advance by one, as `submit` then `complete` would."""
        if cmdsn != self._exp or self._held or not self.in_window(cmdsn):
            raise ValueError(f"CmdSN {cmdsn} is not the next due command (ExpCmdSN {self._exp})")
        self._exp = sn_add(self._exp, 1)
        self._max = sn_add(self._max, 1)

    def plug(self, cmdsn: int) -> list[T] | None:
        """Consider `cmdsn` received without a command (RFC 7143 11.5.1: ABORT TASK whose RefCmdSN is in the
        window but never arrived). Returns held items that became due, or None if cmdsn is not plugged
        (outside the window or already held). The plug itself occupies no slot."""
        if not self.in_window(cmdsn) or cmdsn in self._held:
            return None
        sentinel: Any = PLUG
        result = self.submit(cmdsn, False, sentinel)
        self.complete()
        return [it for it in result.deliver if it is not PLUG]

    def complete(self) -> None:
        """A non-immediate command finished (response sent or task aborted): open one more slot."""
        if self.in_flight > 0:
            self.in_flight -= 1
            self._max = sn_add(self._max, 1)

    def held_items(self) -> list[T]:
        return list(self._held.values())

    def clear_held(self) -> list[T]:
        """Forget held commands (session ends or their connection failed); returns them."""
        items = list(self._held.values())
        for _ in items:
            self.complete()
        self._held.clear()
        return items
