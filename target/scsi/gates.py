"""Command gate classes, kept as data: which commands a reservation or an ALUA access state lets through.

Every `CommandSpec` names one `PrClass` and one `AluaClass`; the device derives the verdict from these tables
instead of per-command booleans (gotgt shows what hand-copied conflict flags cost).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from target.scsi.sense import Asc


class PrType(enum.IntEnum):
    """Persistent reservation TYPE (SPC-4 6.16.2, table 190)."""

    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8

    @property
    def registrants_type(self) -> bool:
        """RO or AR type: every registrant may access (and for AR, every registrant is a holder)."""
        return self.value >= 0x5

    @property
    def exclusive_access(self) -> bool:
        return self in (
            PrType.EXCLUSIVE_ACCESS,
            PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
            PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
        )


@dataclass(frozen=True, slots=True)
class _PrRow:
    """One row shape of SPC-4 5.13.1 table 62 / SBC-3 4.17.1 table 13 (True = Allowed, False = Conflict).

    Columns: the LU has a persistent reservation held by another I_T nexus of type
      we:        Write Exclusive (from any I_T nexus)
      ea:        Exclusive Access (from any I_T nexus)
      reg:       any registrants-only / all-registrants type, command from a registered I_T nexus
      unreg_we:  Write Exclusive RO/AR, command from an I_T nexus that is not registered
      unreg_ea:  Exclusive Access RO/AR, command from an I_T nexus that is not registered
    """

    we: bool
    ea: bool
    reg: bool
    unreg_we: bool
    unreg_ea: bool
    command_decides: bool = False  # the command applies its own reservation rules (keeps the member distinct)


class PrClass(enum.Enum):
    """Reservation conflict class of a command (the distinct row shapes of the SPC-4/SBC-3 tables)."""

    #: INQUIRY, REPORT LUNS, REQUEST SENSE, TEST UNIT READY, LOG SENSE, READ CAPACITY, PR IN, RSOC, ...
    ALLOWED = _PrRow(True, True, True, True, True)
    #: READ, VERIFY, GET LBA STATUS, ...: conflicts only where other nexuses may not read
    READ = _PrRow(True, False, True, True, False)
    #: WRITE, UNMAP, MODE SELECT/SENSE, SYNCHRONIZE CACHE, LOG SELECT, ...: only holders and registrants
    WRITE = _PrRow(False, False, True, False, False)
    #: PERSISTENT RESERVE OUT, RESERVE/RELEASE: the command decides (SPC-4 5.13.4, SPC-3 5.6.3 CRH)
    COMMAND_DECIDES = _PrRow(True, True, True, True, True, command_decides=True)

    def allowed(self, pr_type: PrType, *, holder: bool, registered: bool) -> bool:
        """Whether a command of this class from a nexus may run while a reservation of `pr_type` exists."""
        if holder:
            return True
        row: _PrRow = self.value
        if pr_type is PrType.WRITE_EXCLUSIVE:
            return row.we
        if pr_type is PrType.EXCLUSIVE_ACCESS:
            return row.ea
        if registered:
            return row.reg
        return row.unreg_ea if pr_type.exclusive_access else row.unreg_we


class AluaState(enum.IntEnum):
    """Target port asymmetric access states (SPC-4 6.37 REPORT TARGET PORT GROUPS, table 279)."""

    ACTIVE_OPTIMIZED = 0x0
    ACTIVE_NON_OPTIMIZED = 0x1
    STANDBY = 0x2
    UNAVAILABLE = 0x3
    LBA_DEPENDENT = 0x4
    OFFLINE = 0xE
    TRANSITIONING = 0xF

    @property
    def not_ready_asc(self) -> Asc:
        """The NOT READY additional sense for commands this state rejects (SPC-4 5.15.2.4)."""
        if self is AluaState.STANDBY:
            return Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE
        if self is AluaState.TRANSITIONING:
            return Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION
        if self is AluaState.OFFLINE:
            # SPC-4 5.15.2.4.7 leaves a port that cannot be reached no answer to give; LIO uses 04h/12h
            return Asc.LOGICAL_UNIT_NOT_READY_OFFLINE
        return Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE


_ACTIVE = frozenset({AluaState.ACTIVE_OPTIMIZED, AluaState.ACTIVE_NON_OPTIMIZED, AluaState.LBA_DEPENDENT})


class AluaClass(enum.Enum):
    """In which target port asymmetric access states a command is processed (SPC-4 5.15.2.4.2 - 5.15.2.4.7)."""

    #: INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT TARGET PORT GROUPS: every state
    ANY = frozenset(AluaState)
    #: SET TARGET PORT GROUPS, RSOC, RSTMF: also unavailable (5.15.2.4.5)
    UNAVAILABLE_OK = _ACTIVE | {AluaState.STANDBY, AluaState.UNAVAILABLE}
    #: MODE/LOG SENSE/SELECT, PR IN/OUT, diagnostics: also standby (5.15.2.4.4)
    STANDBY_OK = _ACTIVE | {AluaState.STANDBY}
    #: media access and everything else
    ACTIVE_ONLY = _ACTIVE

    def allowed(self, state: AluaState) -> bool:
        return state in self.value
