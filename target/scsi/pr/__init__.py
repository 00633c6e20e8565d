"""SPC-4 persistent reservations: PERSISTENT RESERVE IN/OUT, the per-LU state, TransportIDs and APTPL.

    registrations.py  PrState: registrations, the reservation, PR generation, every service action
    transport_id.py   iSCSI TransportIDs (formats 00b and 01b)
    prin.py           PERSISTENT RESERVE IN
    prout.py          PERSISTENT RESERVE OUT, effects (unit attentions, PREEMPT AND ABORT), APTPL write
    aptpl.py          durable state in <state_dir>/pr/<serial>.json
    state.py          attach(lu, state_dir), pr_state(lu)

The reservation conflict gate for every other command is target.scsi.reservation (driven by the opcode table's
PrClass); SPC-2 RESERVE/RELEASE interplay is there too.
"""

from __future__ import annotations

from target.scsi.opcodes import CommandSpec
from target.scsi.pr import prin, prout
from target.scsi.pr.registrations import PrState, Registration, Reservation
from target.scsi.pr.state import attach, pr_state
from target.scsi.pr.transport_id import TransportId

COMMANDS: list[CommandSpec] = [*prin.COMMANDS, *prout.COMMANDS]

__all__ = ["COMMANDS", "PrState", "Registration", "Reservation", "TransportId", "attach", "pr_state"]
