"""Where a logical unit keeps its persistent reservation state, and how it gets it (with APTPL state loaded).

`attach(lu, state_dir)` is called once when the LU is built (target.runtime); `pr_state(lu)` is what the
PERSISTENT RESERVE IN/OUT handlers use (an LU built without a state directory gets an in-memory state on first
use, with APTPL not offered).

Lost persistent reservation information (SPC-4 5.13.5.3). With a state directory the device server persists
through power loss (PTPL_C=1) and can also detect that what it preserved is lost: an APTPL file that exists but
cannot be read or understood (I/O error, not JSON, too large, unknown format, malformed state). That is a
recoverable lost persistent reservation (5.13.5.3.2): the application clients can rebuild the state with
PERSISTENT RESERVE OUT REPLACE LOST RESERVATION, so such an LU reports RLR_C=1. At attach:
- the unreadable file is renamed to `<serial>.json.corrupt-<UTC time>` (kept for the operator, never dropped);
- the LU starts with no registrations and no reservation, in the lost condition: every command but those of
  5.13.5.2 and REPLACE LOST RESERVATION ends with DATA PROTECT / PERSISTENT RESERVATION INFORMATION LOST
  (target.scsi.reservation);
- the condition is written to a fresh APTPL file (`"lost": true`, APTPL active), so a restart before the
  recovery does not end it (5.13.5.3.2: only REPLACE LOST RESERVATION clears it). When the file cannot be set
  aside, nothing is written over it: the next start finds it unreadable again, with the same result.
REPLACE LOST RESERVATION then rewrites the file (its APTPL bit set) or removes it (APTPL bit zero). An LU whose
PERSISTENT RESERVE commands are switched off (emulate_pr=0) could never recover, so there the file is only set
aside and logged.
"""

from __future__ import annotations

import logging
from typing import Any

from target.scsi.pr.aptpl import AptplCorrupt, AptplError, AptplStore
from target.scsi.pr.registrations import PrState

log = logging.getLogger(__name__)


def attach(lu: Any, state_dir: str | None) -> PrState:
    """Give `lu` its persistent reservation state; with a state directory, APTPL and REPLACE LOST RESERVATION
    are offered and a saved state (registrations, reservation, generation, lost condition) is loaded
    (SPC-4 5.13.5, see the module docstring)."""
    state = PrState(enforce_isid=bool(getattr(lu.attrs, "enforce_pr_isids", 1)))
    if state_dir:
        state.store = AptplStore(state_dir, lu.serial)
        state.rlr_capable = True
        _load(lu, state, state.store)
    lu.reservations.pr = state
    return state


def _load(lu: Any, state: PrState, store: AptplStore) -> None:
    try:
        doc = store.read()
        if doc is None:
            return
        state.restore(doc)  # assigns nothing unless the whole document is valid
    except (AptplCorrupt, ValueError) as exc:
        _lose(lu, state, store, str(exc))
        return
    if state.lost and not pr_enabled(lu):
        state.lost = False
        log.error(
            "%s: lost persistent reservation condition recorded in %s ignored: PERSISTENT RESERVE is off "
            "(emulate_pr=0)",
            lu.name,
            store.path,
        )
        return
    if state.lost:
        log.error(
            "%s: lost persistent reservation condition (recorded in %s) persists until PERSISTENT RESERVE OUT "
            "REPLACE LOST RESERVATION",
            lu.name,
            store.path,
        )
        return
    log.info(
        "%s: APTPL state loaded: %d registrations, reservation %s",
        lu.name,
        len(state.registrations),
        state.reservation.type.name if state.reservation else "none",
    )


def _lose(lu: Any, state: PrState, store: AptplStore, why: str) -> None:
    """The preserved information is lost: set the file aside, enter (and record) the lost condition."""
    aside = store.set_aside()
    kept = f"kept as {aside}" if aside is not None else f"left in place at {store.path}"
    if not pr_enabled(lu):
        log.error(
            "%s: persistent reservation information lost (%s); file %s; PERSISTENT RESERVE is off (emulate_pr=0), "
            "so no lost condition is established",
            lu.name,
            why,
            kept,
        )
        return
    state.lost = True
    # the loss was detected while persist through power loss was active (SPC-4 5.13.5.3.1)
    state.aptpl = True
    log.error(
        "%s: persistent reservation information lost (%s); file %s; every command but INQUIRY, REPORT LUNS, "
        "REQUEST SENSE, ... ends with DATA PROTECT / PERSISTENT RESERVATION INFORMATION LOST until an initiator "
        "sends PERSISTENT RESERVE OUT REPLACE LOST RESERVATION",
        lu.name,
        why,
        kept,
    )
    if aside is None:
        return  # never write over a file that could not be set aside
    try:
        store.save(state.to_dict())
    except AptplError as exc:
        log.error("%s: the lost condition is not recorded (%s); a restart ends it", lu.name, exc)


def pr_state(lu: Any) -> PrState:
    state = lu.reservations.pr
    if isinstance(state, PrState):
        return state
    return attach(lu, None)


def pr_enabled(lu: Any) -> bool:
    """PERSISTENT RESERVE IN/OUT are offered unless the LU attribute emulate_pr is 0 (LIO's switch)."""
    return bool(getattr(lu.attrs, "emulate_pr", 1))
