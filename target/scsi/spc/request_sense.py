"""REQUEST SENSE (SPC-4 6.39).

With autosense (iSCSI always delivers sense with the status) there is no stored sense to return: REQUEST SENSE
reports a pending unit attention (and clears it, UA_INTLCK_CTRL 00b), else NO SENSE. DESC selects descriptor
format sense data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage
from target.scsi.sense import Asc, SenseKey, build_sense

if TYPE_CHECKING:
    from target.scsi.context import CommandContext


async def request_sense(ctx: CommandContext) -> ScsiResult:
    descriptor = bool(ctx.cdb[1] & 0x01)
    ua = ctx.lu.ua.take(ctx.nexus)
    if ua is not None:
        sense = build_sense(SenseKey.UNIT_ATTENTION, ua, descriptor=descriptor)
    else:
        sense = build_sense(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE, descriptor=descriptor)
    return ctx.respond(sense)


COMMANDS = [
    CommandSpec(
        opcode=0x03,
        name="REQUEST SENSE",
        cdb_length=6,
        usage=usage(0x03, 0x01, 0x00, 0x00, 0xFF, 0x00),
        handler=request_sense,
        direction=Direction.IN,
        ua_exempt=True,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.ANY,
        spc2_allowed=True,
        alloc_len=(4, 1),
    ),
]
