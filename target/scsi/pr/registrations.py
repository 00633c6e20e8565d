"""Persistent reservation state of one logical unit: registrations, the reservation, the PR generation
(SPC-4 5.13). Pure state machine: every PERSISTENT RESERVE OUT service action is a method that either raises
(RESERVATION CONFLICT as `StatusError`, sense as `CheckCondition`) leaving the state untouched, or mutates the
state and returns the `Effects` the caller applies afterwards (unit attentions, tasks to abort) - so the caller
can persist APTPL state first and roll back if that fails.

Theory of operation.
- A registration belongs to an I_T nexus: initiator port (iSCSI name + ISID) and target port (target name +
  TPGT). Two wildcards cover what SPC-4 lets one registration stand for: `isid=None` (a TransportID of format
  00b names the initiator device: every ISID of that name, SPC-4 7.6.4.6) and `target_port=None` (ALL_TG_PT=1:
  every target port of the LU, SPC-4 6.16.3). A nexus is "registered" when some registration matches it.
- The reservation has a TYPE (scope is always LU_SCOPE, SPC-4 6.16.2) and a holder registration; for the
  all-registrants types (WE-AR, EA-AR) every registered nexus is a holder (SPC-4 5.13.9) and `holder` is None.
- PRGENERATION counts successful REGISTER, REGISTER AND IGNORE EXISTING KEY, REGISTER AND MOVE, CLEAR, PREEMPT
  and PREEMPT AND ABORT; not RESERVE, RELEASE, or a REGISTER of key 0 from an unregistered nexus (SPC-4 6.15.2).
- Persistent reservations survive resets and I_T nexus loss (SPC-4 5.13.1); only APTPL decides whether they
  survive a power loss (target.scsi.pr.aptpl).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from target.scsi.command import Nexus, ScsiStatus
from target.scsi.gates import PrType
from target.scsi.pr.transport_id import TransportId
from target.scsi.sense import Asc, CheckCondition, SenseKey, StatusError

if TYPE_CHECKING:
    from target.scsi.pr.aptpl import AptplStore

#: SPC-4 6.16.2: the only scope left
LU_SCOPE = 0
#: how many registrations one LU holds; beyond it INSUFFICIENT REGISTRATION RESOURCES (SPC-4 5.13.7)
MAX_REGISTRATIONS = 4096

TargetPort = tuple[str, int]  # (target name, lower case; TPGT)


def target_port_of(nexus: Nexus) -> TargetPort:
    return (nexus.target_name.lower(), nexus.tpg_tag)


def conflict(why: str) -> StatusError:
    return StatusError(ScsiStatus.RESERVATION_CONFLICT, why)


@dataclass(eq=False)
class Registration:
    key: int
    initiator_name: str
    #: None: every ISID of the name (TransportID format 00b)
    isid: int | None
    #: None: every target port (ALL_TG_PT)
    target_port: TargetPort | None
    #: the relative target port identifier it was made through (READ FULL STATUS)
    relative_port_id: int = 1

    def matches(self, nexus: Nexus, *, enforce_isid: bool = True) -> bool:
        if self.initiator_name.lower() != nexus.initiator_name.lower():
            return False
        if enforce_isid and self.isid is not None and self.isid != nexus.isid:
            return False
        return self.target_port is None or self.target_port == target_port_of(nexus)

    def same_nexus_as(self, name: str, isid: int | None, port: TargetPort | None) -> bool:
        return self.initiator_name.lower() == name.lower() and self.isid == isid and self.target_port == port

    @property
    def transport_id(self) -> TransportId:
        return TransportId(self.initiator_name, self.isid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": f"0x{self.key:016x}",
            "initiator": self.initiator_name,
            "isid": None if self.isid is None else f"0x{self.isid:012x}",
            "target_port": None if self.target_port is None else list(self.target_port),
            "relative_port_id": self.relative_port_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Registration:
        tp = d.get("target_port")
        isid = d.get("isid")
        return cls(
            key=int(d["key"], 16) & 0xFFFFFFFFFFFFFFFF,
            initiator_name=str(d["initiator"]),
            isid=None if isid is None else int(isid, 16) & 0xFFFFFFFFFFFF,
            target_port=None if tp is None else (str(tp[0]).lower(), int(tp[1])),
            relative_port_id=int(d.get("relative_port_id", 1)) & 0xFFFF,
        )


@dataclass
class Reservation:
    type: PrType
    #: the holding registration; None for the all-registrants types (every registrant holds it)
    holder: Registration | None
    scope: int = LU_SCOPE


@dataclass
class Effects:
    """What a service action asks the caller to do after the state change is durable."""

    #: (condition, registrations whose I_T nexuses get it) - the issuing nexus is always left out
    unit_attentions: list[tuple[Asc, list[Registration]]] = field(default_factory=list)
    #: PREEMPT AND ABORT: abort every task of the I_T nexuses these registrations matched
    abort: list[Registration] = field(default_factory=list)


class PrState:
    """Registrations and reservation of one logical unit (see the module docstring)."""

    def __init__(self, *, enforce_isid: bool = True) -> None:
        self.registrations: list[Registration] = []
        self.reservation: Reservation | None = None
        self.generation = 0
        #: Activate Persist Through Power Loss, as set by the last REGISTER / RIEK / REGISTER AND MOVE
        self.aptpl = False
        self.enforce_isid = enforce_isid
        #: where APTPL state goes (None: APTPL is not offered, PTPL_C=0)
        self.store: AptplStore | None = None
        #: the device server can establish a recoverable lost persistent reservation condition (SPC-4 5.13.5.3.2)
        #: and so supports REPLACE LOST RESERVATION (RLR_C): set with APTPL (target.scsi.pr.state.attach)
        self.rlr_capable = False
        #: a recoverable lost persistent reservation condition exists: every command but a few ends with DATA
        #: PROTECT / PERSISTENT RESERVATION INFORMATION LOST (target.scsi.reservation) until REPLACE LOST
        #: RESERVATION; kept in the APTPL file so that a restart does not end it (SPC-4 5.13.5.3.2)
        self.lost = False

    # --- queries (the reservation gate's protocol, target.scsi.reservation.PersistentReservations) -----------

    def registration_for(self, nexus: Nexus) -> Registration | None:
        """The registration of this I_T nexus; an exact one before a wildcard one."""
        best: Registration | None = None
        for reg in self.registrations:
            if reg.matches(nexus, enforce_isid=self.enforce_isid):
                if reg.isid is not None and reg.target_port is not None:
                    return reg
                best = best or reg
        return best

    def reservation_type(self) -> PrType | None:
        return self.reservation.type if self.reservation is not None else None

    def is_registered(self, nexus: Nexus) -> bool:
        return self.registration_for(nexus) is not None

    def is_holder(self, nexus: Nexus) -> bool:
        res = self.reservation
        if res is None:
            return False
        reg = self.registration_for(nexus)
        if reg is None:
            return False
        if res.holder is None:  # all registrants
            return True
        return reg is res.holder or res.holder.matches(nexus, enforce_isid=self.enforce_isid)

    def has_registrations(self) -> bool:
        return bool(self.registrations)

    def holders(self) -> list[Registration]:
        res = self.reservation
        if res is None:
            return []
        return list(self.registrations) if res.holder is None else [res.holder]

    # --- helpers ------------------------------------------------------------------------------------------

    def _bump(self) -> None:
        self.generation = (self.generation + 1) & 0xFFFFFFFF

    def _own(self, nexus: Nexus, key: int) -> Registration:
        """The issuing nexus' registration, checking RESERVATION KEY (SPC-4 5.13.6: else RESERVATION CONFLICT)."""
        reg = self.registration_for(nexus)
        if reg is None:
            raise conflict("I_T nexus not registered")
        if reg.key != key:
            raise conflict("reservation key mismatch")
        return reg

    def _others(self, reg: Registration) -> list[Registration]:
        return [r for r in self.registrations if r is not reg]

    def _remove(self, victims: Iterable[Registration]) -> None:
        gone = set(map(id, victims))
        self.registrations = [r for r in self.registrations if id(r) not in gone]

    def _unregister(self, reg: Registration, fx: Effects) -> None:
        """Remove one registration; release the reservation it held (SPC-4 5.13.10, 5.13.11.2.3)."""
        res = self.reservation
        self._remove([reg])
        if res is None:
            return
        if res.holder is None:
            if not self.registrations:  # the last all-registrants holder left
                self.reservation = None
            return
        if res.holder is reg:
            self.reservation = None
            if res.type in (
                PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
                PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
            ):
                fx.unit_attentions.append((Asc.RESERVATIONS_RELEASED, list(self.registrations)))

    def _check_room(self, more: int) -> None:
        if len(self.registrations) + more > MAX_REGISTRATIONS:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INSUFFICIENT_REGISTRATION_RESOURCES)

    # --- PERSISTENT RESERVE OUT service actions -----------------------------------------------------------

    def register(
        self,
        nexus: Nexus,
        key: int,
        sa_key: int,
        *,
        ignore_existing: bool = False,
        spec_i_pt: list[TransportId] | None = None,
        all_tg_pt: bool = False,
        aptpl: bool = False,
    ) -> Effects:
        """REGISTER / REGISTER AND IGNORE EXISTING KEY (SPC-4 5.13.7, 6.16.3 table 212)."""
        fx = Effects()
        reg = self.registration_for(nexus)
        if reg is None:
            if not ignore_existing and key != 0:
                raise conflict("unregistered I_T nexus with a non-zero RESERVATION KEY")
            if sa_key == 0:
                if spec_i_pt:
                    raise CheckCondition.invalid_param(20, 3)
                return fx  # nothing to do, no generation change
            port = None if all_tg_pt else target_port_of(nexus)
            new = [Registration(sa_key, nexus.initiator_name, nexus.isid, port, nexus.relative_port_id)]
            for i, tid in enumerate(spec_i_pt or []):
                if any(n.same_nexus_as(tid.name, tid.isid, port) for n in new):
                    continue  # the issuing port named again, or a duplicate: registered once
                for r in self.registrations:
                    if r.same_nexus_as(tid.name, tid.isid, port):
                        # SPC-4 6.16.3: an already registered I_T nexus in the list fails the whole command
                        raise CheckCondition.invalid_param(28 + i)
                new.append(Registration(sa_key, tid.name, tid.isid, port, nexus.relative_port_id))
            self._check_room(len(new))
            self.registrations.extend(new)  # all or nothing
        else:
            if not ignore_existing and reg.key != key:
                raise conflict("RESERVATION KEY does not match the registered key")
            if spec_i_pt:
                raise CheckCondition.invalid_param(20, 3)
            if sa_key == 0:
                self._unregister(reg, fx)
            else:
                reg.key = sa_key
        self.aptpl = aptpl
        self._bump()
        return fx

    def reserve(self, nexus: Nexus, key: int, pr_type: PrType) -> None:
        """RESERVE (SPC-4 5.13.9): idempotent for the holder with the same type; anything else conflicts."""
        reg = self._own(nexus, key)
        res = self.reservation
        if res is not None:
            if self.is_holder(nexus) and res.type is pr_type:
                return
            raise conflict("another persistent reservation exists")
        self.reservation = Reservation(pr_type, None if _all_registrants(pr_type) else reg)

    def release(self, nexus: Nexus, key: int, pr_type: int, scope: int) -> Effects:
        """RELEASE (SPC-4 5.13.11.2): a no-op unless the nexus holds the reservation; the holder must name its
        type and scope (else INVALID RELEASE OF PERSISTENT RESERVATION)."""
        fx = Effects()
        reg = self._own(nexus, key)
        res = self.reservation
        if res is None or not self.is_holder(nexus):
            return fx
        if res.type != pr_type or res.scope != scope:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
        self.reservation = None
        if res.type not in (PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS):
            # SPC-4 5.13.11.2.2: registrants-only and all-registrants releases are announced to the registrants
            fx.unit_attentions.append((Asc.RESERVATIONS_RELEASED, self._others(reg)))
        return fx

    def clear(self, nexus: Nexus, key: int) -> Effects:
        """CLEAR (SPC-4 5.13.11.3): release the reservation, remove every registration; RESERVATIONS PREEMPTED
        to every other registered I_T nexus."""
        reg = self._own(nexus, key)
        fx = Effects(unit_attentions=[(Asc.RESERVATIONS_PREEMPTED, self._others(reg))])
        self.registrations = []
        self.reservation = None
        self._bump()
        return fx

    def preempt(
        self, nexus: Nexus, key: int, sa_key: int, pr_type: PrType, *, abort: bool = False
    ) -> Effects:
        """PREEMPT / PREEMPT AND ABORT (SPC-4 5.13.11.4, 5.13.11.5)."""
        reg = self._own(nexus, key)
        res = self.reservation
        fx = Effects()
        if res is not None and res.holder is None:
            # all-registrants reservation (5.13.11.4.3 b): key 0 takes it over, else only registrations go
            if sa_key == 0:
                victims = self._others(reg)
                self._remove(victims)
                old_type = res.type
                self.reservation = Reservation(pr_type, None if _all_registrants(pr_type) else reg)
                fx.unit_attentions.append((Asc.REGISTRATIONS_PREEMPTED, victims))
                if old_type is not pr_type:
                    fx.unit_attentions.append((Asc.RESERVATIONS_RELEASED, self._others(reg)))
            else:
                victims = self._victims(reg, sa_key)
                self._remove(victims)
                fx.unit_attentions.append((Asc.REGISTRATIONS_PREEMPTED, victims))
        elif res is not None and res.holder is not None and res.holder.key == sa_key:
            # preempting the holder (5.13.11.4.3 a): its registrations go, the issuer reserves with the new type
            victims = [r for r in self.registrations if r.key == sa_key and r is not reg]
            self._remove(victims)
            old_type = res.type
            self.reservation = Reservation(pr_type, None if _all_registrants(pr_type) else reg)
            fx.unit_attentions.append((Asc.REGISTRATIONS_PREEMPTED, victims))
            if old_type is not pr_type:
                fx.unit_attentions.append((Asc.RESERVATIONS_RELEASED, self._others(reg)))
        else:
            # no reservation, or one whose holder is not named (5.13.11.4.2, 5.13.11.4.3 c): registrations only
            if sa_key == 0:
                raise CheckCondition.invalid_param(8)
            victims = self._victims(reg, sa_key)
            self._remove(victims)
            fx.unit_attentions.append((Asc.REGISTRATIONS_PREEMPTED, victims))
        if abort:
            fx.abort = list(victims)
        self._bump()
        return fx

    def _victims(self, reg: Registration, sa_key: int) -> list[Registration]:
        victims = [r for r in self.registrations if r.key == sa_key and r is not reg]
        if not victims and reg.key != sa_key:
            # SPC-4 5.13.11.4.2: no registration has SERVICE ACTION RESERVATION KEY
            raise conflict("no registration with SERVICE ACTION RESERVATION KEY")
        return victims

    def register_and_move(
        self,
        nexus: Nexus,
        key: int,
        sa_key: int,
        dest: TransportId,
        dest_port: TargetPort,
        dest_rtpi: int,
        *,
        unreg: bool,
        aptpl: bool,
    ) -> Effects:
        """REGISTER AND MOVE (SPC-4 5.13.8): register the destination I_T nexus (or change its key) and move the
        reservation to it; optionally unregister the issuing nexus."""
        fx = Effects()
        reg = self.registration_for(nexus)
        if reg is None:
            raise conflict("I_T nexus not registered")
        if reg.key != key:
            raise conflict("reservation key mismatch")
        res = self.reservation
        if res is None or not self.is_holder(nexus):
            raise conflict("not the reservation holder")
        if res.holder is None:
            # SPC-4 5.13.8: an all-registrants reservation cannot be moved
            raise conflict("all-registrants reservation")
        if sa_key == 0:
            raise CheckCondition.invalid_param(8)
        same_initiator = dest.name.lower() == nexus.initiator_name.lower() and dest.isid in (None, nexus.isid)
        if same_initiator and dest_port == target_port_of(nexus):
            # the destination is the issuing I_T nexus (SPC-4 5.13.8)
            raise CheckCondition.invalid_param(24)
        target = None
        for r in self.registrations:
            if r.same_nexus_as(dest.name, dest.isid, dest_port):
                target = r
                break
        if target is None:
            self._check_room(1)
            target = Registration(sa_key, dest.name, dest.isid, dest_port, dest_rtpi)
            self.registrations.append(target)
        else:
            target.key = sa_key
        self.reservation = Reservation(res.type, target, res.scope)
        if unreg:
            self._remove([reg])
        self.aptpl = aptpl
        self._bump()
        return fx

    def replace_lost(self, nexus: Nexus, sa_key: int, pr_type: PrType, *, aptpl: bool) -> Effects:
        """REPLACE LOST RESERVATION (SPC-4 5.13.11.3), as one uninterrupted series of actions: remove every prior
        registration without unit attentions, register the issuing I_T nexus with SERVICE ACTION RESERVATION
        KEY, release any reservation, reserve with `pr_type` for the issuer, set PRGENERATION to zero and end
        the lost persistent reservation condition. Without that condition: ILLEGAL REQUEST, INVALID RELEASE OF
        PERSISTENT RESERVATION (and nothing changes)."""
        if not self.lost:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
        if sa_key == 0:
            # a registration needs a non-zero key (SPC-4 5.13.7: key zero unregisters)
            raise CheckCondition.invalid_param(8)
        reg = Registration(
            sa_key, nexus.initiator_name, nexus.isid, target_port_of(nexus), nexus.relative_port_id
        )
        self.registrations = [reg]
        self.reservation = Reservation(pr_type, None if _all_registrants(pr_type) else reg)
        self.generation = 0
        self.aptpl = aptpl
        self.lost = False
        return Effects()

    # --- persistence (target.scsi.pr.aptpl) ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        res = self.reservation
        holder: int | None = None
        if res is not None and res.holder is not None:
            holder = next((i for i, r in enumerate(self.registrations) if r is res.holder), None)
        return {
            "generation": self.generation,
            "aptpl": self.aptpl,
            "lost": self.lost,
            "registrations": [r.to_dict() for r in self.registrations],
            "reservation": None
            if res is None
            else {"type": int(res.type), "scope": res.scope, "holder": holder},
        }

    def restore(self, d: dict[str, Any]) -> None:
        """Load what `to_dict` produced (APTPL file, or a rollback snapshot). Raises ValueError when malformed."""
        try:
            regs = [Registration.from_dict(x) for x in d.get("registrations", [])][:MAX_REGISTRATIONS]
            rd = d.get("reservation")
            res: Reservation | None = None
            if rd is not None:
                pr_type = PrType(int(rd["type"]))
                idx = rd.get("holder")
                holder = None if idx is None else regs[int(idx)]
                if holder is None and not _all_registrants(pr_type):
                    raise ValueError("reservation without a holder")
                res = Reservation(pr_type, holder, int(rd.get("scope", LU_SCOPE)))
            generation = int(d.get("generation", 0)) & 0xFFFFFFFF
            aptpl = bool(d.get("aptpl", False))
            lost = d.get("lost", False)
            if not isinstance(lost, bool):
                raise TypeError(f"lost is {lost!r}")
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"malformed persistent reservation state: {exc!r}") from exc
        self.registrations, self.reservation, self.generation, self.aptpl = regs, res, generation, aptpl
        self.lost = lost


def _all_registrants(pr_type: PrType) -> bool:
    return pr_type in (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
