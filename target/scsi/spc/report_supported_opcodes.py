"""REPORT SUPPORTED OPERATION CODES (SPC-4 6.35), straight from the LU's opcode table: the same CDB usage data
the device enforces, so what we report and what we accept cannot drift apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

SUPPORT_NOT_SUPPORTED = 0b001
SUPPORT_STANDARD = 0b011


def timeouts_descriptor(spec: CommandSpec) -> bytes:
    """Command timeouts descriptor (SPC-4 6.35.4): DESCRIPTOR LENGTH 0Ah."""
    return (
        (0x0A).to_bytes(2, "big")
        + bytes(2)
        + spec.nominal_timeout.to_bytes(4, "big")
        + spec.recommended_timeout.to_bytes(4, "big")
    )


def all_commands(specs: list[CommandSpec], rctd: bool) -> bytes:
    out = bytearray()
    for spec in specs:
        flags = (0x02 if rctd else 0) | (0x01 if spec.service_action is not None else 0)  # CTDP, SERVACTV
        out += bytes((spec.opcode, 0))
        out += (spec.service_action or 0).to_bytes(2, "big")
        out += bytes((0, flags))
        out += spec.cdb_length.to_bytes(2, "big")
        if rctd:
            out += timeouts_descriptor(spec)
    return len(out).to_bytes(4, "big") + bytes(out)


def one_command(spec: CommandSpec | None, rctd: bool) -> bytes:
    if spec is None:
        return bytes((0, SUPPORT_NOT_SUPPORTED, 0, 0))
    head = bytes((0, (0x80 if rctd else 0) | SUPPORT_STANDARD)) + spec.cdb_length.to_bytes(2, "big")
    return head + spec.usage + (timeouts_descriptor(spec) if rctd else b"")


async def report_supported_opcodes(ctx: CommandContext) -> ScsiResult:
    cdb = ctx.cdb
    rctd = bool(cdb[2] & 0x80)
    options = cdb[2] & 0x07
    op = cdb[3]
    sa = int.from_bytes(cdb[4:6], "big")
    table = ctx.lu.table
    lu = ctx.lu
    if options == 0b000:
        return ctx.respond(all_commands([s for s in table if s.is_enabled(lu)], rctd))
    if options == 0b001:
        if table.has_service_actions(op):
            ctx.invalid_cdb(2, 2)  # the opcode has service actions: options 001b is invalid
        spec = table.get(op)
    elif options == 0b010:
        if not table.has_service_actions(op):
            ctx.invalid_cdb(2, 2)
        spec = table.get(op, sa)
    elif options == 0b011:
        spec = table.get(op, sa) if table.has_service_actions(op) else table.get(op)
    else:
        ctx.invalid_cdb(2, 2)
    if spec is not None and not spec.is_enabled(lu):
        spec = None
    return ctx.respond(one_command(spec, rctd))


COMMANDS = [
    CommandSpec(
        opcode=0xA3,
        service_action=0x0C,
        name="REPORT SUPPORTED OPERATION CODES",
        cdb_length=12,
        usage=usage(0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00),
        handler=report_supported_opcodes,
        direction=Direction.IN,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.UNAVAILABLE_OK,
        alloc_len=(6, 4),
    )
]
