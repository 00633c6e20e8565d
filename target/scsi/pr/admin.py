"""Administrator's view of and action on the persistent reservations of one logical unit (the management API's
`pr show` / `pr clear`; LIO exposes the same through configfs `<device>/pr/`: res_pr_generation,
res_pr_registered_i_pts, res_holder, res_pr_type, res_pr_holder_tg_port, res_pr_all_tgt_pts,
res_aptpl_active - and its only "clear" is writing the APTPL metadata file or PROUT from an initiator).

`describe(lu)` is a JSON-able snapshot. `admin_clear(lu)` does what a PERSISTENT RESERVE OUT with CLEAR does
(SPC-4 5.13.11.2.7): release the reservation, remove every registration, bump PRGENERATION - except that no I_T
nexus issued it, so RESERVATIONS PREEMPTED (2Ah/03h) goes to every registered I_T nexus without exception. The
new state is made durable first (APTPL file rewritten atomically, or removed), as for the SCSI command; if that
fails nothing changes.
"""

from __future__ import annotations

from typing import Any

from target.scsi.gates import PrType
from target.scsi.pr.aptpl import AptplError
from target.scsi.pr.registrations import PrState, Registration
from target.scsi.pr.state import pr_state
from target.scsi.sense import Asc

#: SPC-4 6.16.2 table 190 names (LIO's res_pr_type prints the same words)
TYPE_NAMES = {
    PrType.WRITE_EXCLUSIVE: "Write Exclusive",
    PrType.EXCLUSIVE_ACCESS: "Exclusive Access",
    PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: "Write Exclusive, Registrants Only",
    PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: "Exclusive Access, Registrants Only",
    PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: "Write Exclusive, All Registrants",
    PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: "Exclusive Access, All Registrants",
}


class AdminError(Exception):
    """The administrative change could not be made durable; nothing changed."""


def _initiator_port(reg: Registration) -> str:
    """SPC-4 7.6.4.6 text form: "<name>,i,0x<isid>" for one initiator port, the bare name for every ISID."""
    return reg.initiator_name if reg.isid is None else f"{reg.initiator_name},i,0x{reg.isid:012x}"


def _registration(reg: Registration, holders: list[Registration]) -> dict[str, Any]:
    return {
        "key": f"0x{reg.key:016x}",
        "initiator": reg.initiator_name,
        "isid": None if reg.isid is None else f"0x{reg.isid:012x}",
        "initiator_port": _initiator_port(reg),
        "transport_id": reg.transport_id.encode().hex(),
        "all_tg_pt": reg.target_port is None,
        "target_port": None
        if reg.target_port is None
        else f"{reg.target_port[0]},t,0x{reg.target_port[1]:04x}",
        "relative_port_id": reg.relative_port_id,
        "holder": any(h is reg for h in holders),
    }


def describe(lu: Any) -> dict[str, Any]:
    """Generation, registrations (initiator port, TransportID, key, target port), the reservation and APTPL."""
    state = pr_state(lu)
    holders = state.holders()
    res = state.reservation
    reservation: dict[str, Any] | None = None
    if res is not None:
        reservation = {
            "type": TYPE_NAMES.get(res.type, str(int(res.type))),
            "type_code": int(res.type),
            "scope": "LU_SCOPE" if res.scope == 0 else str(res.scope),
            "all_registrants": res.holder is None,
            "holder": None if res.holder is None else _initiator_port(res.holder),
            "holder_key": None if res.holder is None else f"0x{res.holder.key:016x}",
        }
    force = bool(getattr(getattr(lu, "attrs", None), "force_pr_aptpl", 0))
    return {
        "storage_object": getattr(lu, "name", ""),
        "generation": state.generation,
        "aptpl": state.aptpl or force,
        "aptpl_capable": state.store is not None,
        "aptpl_file": str(state.store.path) if state.store is not None else None,
        "lost_reservation": state.lost,
        "registrations": [_registration(r, holders) for r in state.registrations],
        "reservation": reservation,
    }


def _persist(lu: Any, state: PrState, was_active: bool) -> None:
    store = state.store
    if store is None:
        return
    if state.aptpl or bool(getattr(getattr(lu, "attrs", None), "force_pr_aptpl", 0)):
        store.save(state.to_dict())
    elif was_active:
        store.remove()


def admin_clear(lu: Any) -> dict[str, Any]:
    """Release the reservation and remove every registration (PROUT CLEAR semantics, see the module docstring);
    returns {registrations_removed, reservation_released, unit_attentions, generation}."""
    state = pr_state(lu)
    snapshot = state.to_dict()
    was_active = state.aptpl or bool(getattr(getattr(lu, "attrs", None), "force_pr_aptpl", 0))
    victims = list(state.registrations)
    had_reservation = state.reservation is not None
    state.registrations = []
    state.reservation = None
    if victims or had_reservation:
        state.generation = (state.generation + 1) & 0xFFFFFFFF
    try:
        _persist(lu, state, was_active)
    except AptplError as exc:
        state.restore(snapshot)
        raise AdminError(str(exc)) from exc
    ua = getattr(lu, "ua", None)
    notified: list[Any] = []
    if ua is not None and victims:
        notified = [
            n for n in ua.nexuses if any(r.matches(n, enforce_isid=state.enforce_isid) for r in victims)
        ]
        if notified:
            ua.establish(Asc.RESERVATIONS_PREEMPTED, only=notified)
    return {
        "registrations_removed": len(victims),
        "reservation_released": had_reservation,
        "unit_attentions": len(notified),
        "generation": state.generation,
    }


__all__ = ["TYPE_NAMES", "AdminError", "admin_clear", "describe"]
