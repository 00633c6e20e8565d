"""Reservation state of a logical unit and the reservation conflict gate.

SPC-2 RESERVE/RELEASE (SPC-2 5.5.1, 7.21, 7.24) keep one holder I_T nexus. Persistent reservations (SPC-4 5.13)
plug in through the `PersistentReservations` protocol: when a PR object is attached and holds a reservation,
the gate asks it (type, holder?, registered?) and derives the verdict from the command's `PrClass`
(SPC-4 5.13.1 table 62).

SPC-2 RESERVE/RELEASE while persistent reservation state exists (SPC-4 5.13.3, with CRH=1 as LIO reports it):
- from the persistent reservation holder, or from a registered I_T nexus while a registrants-only or
  all-registrants reservation exists: GOOD status, and nothing changes;
- otherwise, while any I_T nexus is registered: RESERVATION CONFLICT (SPC-2 5.5.1: "still registered by any
  initiator ... all RESERVE commands and all RELEASE commands regardless of initiator shall conflict");
- with no registrations: plain SPC-2 processing.
An SPC-2 reservation held by another I_T nexus makes PERSISTENT RESERVE IN/OUT conflict (their specs are not
`spc2_allowed`), so an SPC-2 reservation and a persistent reservation never coexist.

Recoverable lost persistent reservation condition (SPC-4 5.13.5.3.2; established by target.scsi.pr.state when an
APTPL file cannot be read): before any conflict check, every command ends with CHECK CONDITION, DATA PROTECT /
PERSISTENT RESERVATION INFORMATION LOST except PERSISTENT RESERVE OUT with REPLACE LOST RESERVATION (which never
gets RESERVATION CONFLICT then) and the commands of SPC-4 5.13.5.2 (`LOST_PR_ALLOWED`): INQUIRY, LOG SENSE,
READ BUFFER, REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST SENSE, START STOP UNIT with START=1 and POWER
CONDITION 0h, WRITE BUFFER. PERSISTENT RESERVE IN is not on the list, so it is terminated too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from target.scsi.command import Nexus, ScsiStatus
from target.scsi.gates import PrType
from target.scsi.sense import CheckCondition, StatusError

if TYPE_CHECKING:
    from target.scsi.opcodes import CommandSpec


#: SPC-4 5.13.5.2 (the commands a logical unit whose persistent reservation information is not available lets
#: into the task set) as (operation code, service action or None for every one); START STOP UNIT needs its CDB too
LOST_PR_ALLOWED: frozenset[tuple[int, int | None]] = frozenset(
    {
        (0x12, None),  # INQUIRY
        (0x4D, None),  # LOG SENSE
        (0x3C, None),  # READ BUFFER(10)
        (0xA0, None),  # REPORT LUNS
        (0xA3, 0x0A),  # MAINTENANCE IN / REPORT TARGET PORT GROUPS
        (0x03, None),  # REQUEST SENSE
        (0x1B, None),  # START STOP UNIT (with START=1 and POWER CONDITION 0h only, see _lost_allowed)
        (0x3B, None),  # WRITE BUFFER
        (0x5F, 0x08),  # PERSISTENT RESERVE OUT / REPLACE LOST RESERVATION (SPC-4 5.13.5.3.2 a, b A)
    }
)
START_STOP_UNIT = 0x1B


def _lost_allowed(spec: CommandSpec, cdb: bytes | None) -> bool:
    """Whether `spec` runs during a lost persistent reservation condition. Without the CDB, START STOP UNIT is
    not let through (its START and POWER CONDITION fields decide)."""
    listed = (spec.opcode, spec.service_action) in LOST_PR_ALLOWED or (spec.opcode, None) in LOST_PR_ALLOWED
    if not listed:
        return False
    if spec.opcode == START_STOP_UNIT:
        # SBC-3 5.25: byte 4 POWER CONDITION (bits 7-4), START (bit 0)
        return cdb is not None and len(cdb) > 4 and cdb[4] & 0xF1 == 0x01
    return True


class PersistentReservations(Protocol):
    """What the reservation gate needs from the persistent-reservations work."""

    @property
    def lost(self) -> bool:
        """A recoverable lost persistent reservation condition exists (SPC-4 5.13.5.3.2)."""
        ...

    def reservation_type(self) -> PrType | None:
        """The type of the persistent reservation, or None when none is held."""
        ...

    def is_holder(self, nexus: Nexus) -> bool: ...

    def is_registered(self, nexus: Nexus) -> bool: ...

    def has_registrations(self) -> bool: ...


class Reservations:
    def __init__(self) -> None:
        #: the I_T nexus holding an SPC-2 reservation, if any
        self.spc2_holder: Nexus | None = None
        #: the persistent reservation state (target.scsi.pr), when that work is wired in
        self.pr: PersistentReservations | None = None

    def unrestricted(self, nexus: Nexus) -> bool:
        """No reservation can refuse any command from `nexus`: no SPC-2 reservation of another nexus, no lost
        persistent reservation condition, and no persistent reservation unless `nexus` holds it."""
        holder = self.spc2_holder
        if holder is not None and holder != nexus:
            return False
        pr = self.pr
        if pr is None:
            return True
        if pr.lost:
            return False
        return pr.reservation_type() is None or pr.is_holder(nexus)

    # --- SPC-2 ----------------------------------------------------------------------------------------------

    def _pr_exception(self, nexus: Nexus) -> bool:
        """SPC-4 5.13.3 (see the module docstring): True = GOOD with no effect; raises on conflict; False =
        process as SPC-2."""
        pr = self.pr
        if pr is None or not pr.has_registrations():
            return False
        if pr.is_holder(nexus):
            return True
        pr_type = pr.reservation_type()
        if pr_type is not None and pr_type.registrants_type and pr.is_registered(nexus):
            return True
        raise StatusError(ScsiStatus.RESERVATION_CONFLICT)

    def reserve(self, nexus: Nexus) -> None:
        """RESERVE(6)/(10): idempotent for the holder; a conflict for anyone else (SPC-2 7.21)."""
        if self._pr_exception(nexus):
            return
        if self.spc2_holder is not None and self.spc2_holder != nexus:
            raise StatusError(ScsiStatus.RESERVATION_CONFLICT)
        self.spc2_holder = nexus

    def release(self, nexus: Nexus) -> None:
        """RELEASE(6)/(10): releases only the holder's reservation; from anyone else it is a no-op with GOOD
        status (SPC-2 7.24)."""
        if self._pr_exception(nexus):
            return
        if self.spc2_holder == nexus:
            self.spc2_holder = None

    def clear_spc2(self) -> None:
        """LOGICAL UNIT RESET, TARGET RESET, power on: SPC-2 reservations are released (SPC-2 5.5.1)."""
        self.spc2_holder = None

    def nexus_lost(self, nexus: Nexus) -> None:
        if self.spc2_holder == nexus:
            self.spc2_holder = None

    # --- the gate -------------------------------------------------------------------------------------------

    def check(self, spec: CommandSpec, nexus: Nexus, cdb: bytes | None = None) -> None:
        """Raise RESERVATION CONFLICT when `spec` may not run on `nexus` now; DATA PROTECT / PERSISTENT RESERVATION
        INFORMATION LOST during a lost persistent reservation condition (see the module docstring). `cdb` is
        needed only to let START STOP UNIT through during that condition."""
        if self.pr is not None and self.pr.lost:
            if not _lost_allowed(spec, cdb):
                raise CheckCondition.pr_information_lost()
            if spec.opcode == 0x5F:
                return  # REPLACE LOST RESERVATION: never RESERVATION CONFLICT (SPC-4 5.13.5.3.2 a)
        holder = self.spc2_holder
        if holder is not None and holder != nexus and not spec.spc2_allowed:
            raise StatusError(ScsiStatus.RESERVATION_CONFLICT)
        if self.pr is not None:
            pr_type = self.pr.reservation_type()
            if pr_type is not None and not spec.pr_class.allowed(
                pr_type, holder=self.pr.is_holder(nexus), registered=self.pr.is_registered(nexus)
            ):
                raise StatusError(ScsiStatus.RESERVATION_CONFLICT)
