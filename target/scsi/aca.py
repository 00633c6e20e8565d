"""Auto contingent allegiance (ACA), SAM-5 5.9, for one logical unit's task set.

Theory of operation. We offer one task set per logical unit shared by every I_T nexus (control mode page
TST = 000b), so an ACA condition blocks the whole task set:

- Establishing (SAM-5 5.9.1, 5.9.2): a command whose CDB CONTROL byte has NACA = 1 and that completes with
  CHECK CONDITION establishes ACA; its I_T nexus becomes the faulted I_T nexus. With NACA = 0 nothing is
  established: the sense travels with the status (autosense) and the task set goes on (the behaviour a NACA=0
  initiator expects). Dormant tasks stay dormant while ACA is active (they are "blocked"); tasks already
  running finish, since a backstore operation is never torn in half (QErr = 01b/11b still aborts per the
  control mode page).
- While ACA is active (SAM-5 5.9.3, 5.9.4; decided at task admission, before unit attentions, so a refused
  command consumes nothing):

      from the faulted I_T nexus, ACA attribute, no ACA task in the set   accepted, enabled at once
      from the faulted I_T nexus, ACA attribute, an ACA task in the set   ACA ACTIVE
      from the faulted I_T nexus, any other attribute                     ACA ACTIVE
      from any other I_T nexus (TST = 000b), any attribute                ACA ACTIVE

  An ACA task that itself completes with CHECK CONDITION and NACA = 1 re-establishes ACA for the same nexus
  (a no-op here); with NACA = 0 the existing ACA condition is left as it is.
- A command with the ACA attribute when no ACA condition exists is refused with CHECK CONDITION, ILLEGAL
  REQUEST / INVALID MESSAGE ERROR (SAM-5 8.6.5).
- Clearing (SAM-5 5.9.5): CLEAR ACA from the faulted I_T nexus (the ACA task, if any, is aborted; blocked tasks
  resume), logical unit reset (and so target reset), I_T nexus loss of the faulted nexus. CLEAR ACA from another
  I_T nexus while ACA is active is FUNCTION REJECTED; with no ACA it is FUNCTION COMPLETE (nothing to do).
  ABORT TASK SET and CLEAR TASK SET leave ACA as it is (SAM-5 7.3, 7.4).

This module holds the condition and the admission rule; `target.scsi.device.LogicalUnit` calls it and
`target.scsi.task_set.TaskSet` does the blocking.
"""

from __future__ import annotations

from target.scsi.command import Nexus, ScsiResult, ScsiStatus, TaskAttr
from target.scsi.opcodes import VARIABLE_LENGTH_OPCODE, cdb_length_for
from target.scsi.sense import Asc, CheckCondition, SenseKey

#: the NACA bit of the CONTROL byte (SAM-5 5.2, table 7)
NACA_BIT = 0x04


def control_byte_index(cdb: bytes | bytearray | memoryview) -> int | None:
    """Where the CONTROL byte is: the last byte of a fixed-length CDB (its length follows from the group code),
    byte 1 of a variable-length CDB (SPC-4 4.2.5.2); for vendor-specific groups the last byte sent."""
    if not cdb:
        return None
    op = cdb[0]
    if op == VARIABLE_LENGTH_OPCODE:
        return 1 if len(cdb) > 1 else None
    n = cdb_length_for(op) or len(cdb)
    return n - 1 if len(cdb) >= n else None


def naca(cdb: bytes | bytearray | memoryview) -> bool:
    """The NACA bit of the CDB's CONTROL byte."""
    i = control_byte_index(cdb)
    return i is not None and bool(cdb[i] & NACA_BIT)


class AcaCondition:
    """The ACA state of one logical unit's task set: which I_T nexus (if any) is faulted."""

    def __init__(self) -> None:
        self.faulted: Nexus | None = None

    @property
    def active(self) -> bool:
        return self.faulted is not None

    def admit(self, nexus: Nexus, attr: TaskAttr, aca_task_present: bool) -> ScsiResult | None:
        """The status that refuses a new command at admission (see the table in the module docstring), or None
        when the command may enter the task set. Raises CheckCondition for the ACA attribute without ACA."""
        if self.faulted is None:
            if attr is TaskAttr.ACA:
                # SAM-5 8.6.5: ACA task attribute while no ACA condition is established
                raise CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_MESSAGE_ERROR)
            return None
        if nexus == self.faulted and attr is TaskAttr.ACA and not aca_task_present:
            return None
        return ScsiResult(status=ScsiStatus.ACA_ACTIVE)

    def establish(self, nexus: Nexus) -> None:
        self.faulted = nexus

    def clear(self) -> None:
        self.faulted = None
