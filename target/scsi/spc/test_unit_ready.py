"""TEST UNIT READY (SPC-4 6.47): the medium is always present; the gates (unit attention, ALUA state,
reservations) give every other answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec, usage

if TYPE_CHECKING:
    from target.scsi.context import CommandContext


async def test_unit_ready(ctx: CommandContext) -> ScsiResult:
    return ctx.good()


COMMANDS = [
    CommandSpec(
        opcode=0x00,
        name="TEST UNIT READY",
        cdb_length=6,
        usage=usage(0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
        handler=test_unit_ready,
        pr_class=PrClass.ALLOWED,
    ),
]
