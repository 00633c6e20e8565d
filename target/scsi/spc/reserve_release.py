"""SPC-2 RESERVE(6)/(10) and RELEASE(6)/(10) (SPC-2 7.21 - 7.24; kept in SPC-4 only as compatible reservation
handling, SPC-4 5.13.3). The state lives in `target.scsi.reservation.Reservations`, next to the hook for
persistent reservations. Third-party and extent reservations (obsolete) are not supported: those bits are not
in the usage data, so they get INVALID FIELD IN CDB. The conflict gate runs before the handler: RESERVE from
another nexus while reserved is RESERVATION CONFLICT; RELEASE from a non-holder is a no-op with GOOD status."""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, usage

if TYPE_CHECKING:
    from target.scsi.context import CommandContext


async def reserve(ctx: CommandContext) -> ScsiResult:
    ctx.lu.reservations.reserve(ctx.nexus)
    return ctx.good()


async def release(ctx: CommandContext) -> ScsiResult:
    ctx.lu.reservations.release(ctx.nexus)
    return ctx.good()


COMMANDS = [
    CommandSpec(
        opcode=0x16,
        name="RESERVE(6)",
        cdb_length=6,
        usage=usage(0x16, 0x00, 0x00, 0x00, 0x00, 0x00),
        handler=reserve,
        pr_class=PrClass.COMMAND_DECIDES,
        alua_class=AluaClass.STANDBY_OK,
    ),
    CommandSpec(
        opcode=0x17,
        name="RELEASE(6)",
        cdb_length=6,
        usage=usage(0x17, 0x00, 0x00, 0x00, 0x00, 0x00),
        handler=release,
        pr_class=PrClass.COMMAND_DECIDES,
        alua_class=AluaClass.STANDBY_OK,
        spc2_allowed=True,
    ),
    CommandSpec(
        opcode=0x56,
        name="RESERVE(10)",
        cdb_length=10,
        usage=usage(0x56, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
        handler=reserve,
        pr_class=PrClass.COMMAND_DECIDES,
        alua_class=AluaClass.STANDBY_OK,
    ),
    CommandSpec(
        opcode=0x57,
        name="RELEASE(10)",
        cdb_length=10,
        usage=usage(0x57, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
        handler=release,
        pr_class=PrClass.COMMAND_DECIDES,
        alua_class=AluaClass.STANDBY_OK,
        spc2_allowed=True,
    ),
]
