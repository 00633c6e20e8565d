"""REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.37): what `target.scsi.dispatch.Dispatcher` implements
over iSCSI: ABORT TASK, ABORT TASK SET, CLEAR ACA (target.scsi.aca), CLEAR TASK SET, LOGICAL UNIT RESET,
TARGET RESET. Not: QUERY TASK / QUERY TASK SET / QUERY ASYNCHRONOUS EVENT / I_T NEXUS RESET (not iSCSI
functions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

ATS, ATSS, CACAS, CTSS, LURS, QTS, TRS, WAKES = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
SUPPORTED = ATS | ATSS | CACAS | CTSS | LURS | TRS


def supported_tmf_data(repd: bool) -> bytes:
    if repd:
        # extended format (SPC-4 6.37.3): ADDITIONAL DATA LENGTH 0Ch, then TMF timeouts (none reported)
        return bytes((SUPPORTED, 0x00, 0x00, 0x0C)) + bytes(12)
    return bytes((SUPPORTED, 0x00, 0x00, 0x00))


async def report_supported_tmf(ctx: CommandContext) -> ScsiResult:
    return ctx.respond(supported_tmf_data(bool(ctx.cdb[2] & 0x80)))


COMMANDS = [
    CommandSpec(
        opcode=0xA3,
        service_action=0x0D,
        name="REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        cdb_length=12,
        usage=usage(0xA3, 0x0D, 0x80, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00),
        handler=report_supported_tmf,
        direction=Direction.IN,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.UNAVAILABLE_OK,
        alloc_len=(6, 4),
    )
]
