"""Where a logical unit keeps its persistent reservation state, and how it gets it (with APTPL state loaded).

`attach(lu, state_dir)` is called once when the LU is built (target.runtime); `pr_state(lu)` is what the
PERSISTENT RESERVE IN/OUT handlers use (an LU built without a state directory gets an in-memory state on first
use, with APTPL not offered).
"""

from __future__ import annotations

import logging
from typing import Any

from target.scsi.pr.aptpl import AptplStore
from target.scsi.pr.registrations import PrState

log = logging.getLogger(__name__)


def attach(lu: Any, state_dir: str | None) -> PrState:
    """Give `lu` its persistent reservation state; with a state directory, APTPL is offered and a saved state
    (registrations, reservation, generation) is loaded (SPC-4 5.13.5)."""
    state = PrState(enforce_isid=bool(getattr(lu.attrs, "enforce_pr_isids", 1)))
    if state_dir:
        state.store = AptplStore(state_dir, lu.serial)
        doc = state.store.load()
        if doc is not None:
            try:
                state.restore(doc)
            except ValueError as exc:
                log.error("%s: APTPL state ignored: %s", lu.name, exc)
            else:
                log.info(
                    "%s: APTPL state loaded: %d registrations, reservation %s",
                    lu.name,
                    len(state.registrations),
                    state.reservation.type.name if state.reservation else "none",
                )
    lu.reservations.pr = state
    return state


def pr_state(lu: Any) -> PrState:
    state = lu.reservations.pr
    if isinstance(state, PrState):
        return state
    return attach(lu, None)


def pr_enabled(lu: Any) -> bool:
    """PERSISTENT RESERVE IN/OUT are offered unless the LU attribute emulate_pr is 0 (LIO's switch)."""
    return bool(getattr(lu.attrs, "emulate_pr", 1))
