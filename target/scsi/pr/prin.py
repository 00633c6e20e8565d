"""PERSISTENT RESERVE IN (SPC-4 6.15): READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS.

The ADDITIONAL LENGTH fields always describe the whole data; the response is then cut to the ALLOCATION LENGTH
(SPC-4 4.2.5.6, 6.15.2: "not altered based on the allocation length"). Service actions 04h-1Fh are answered by
the opcode table with INVALID FIELD IN CDB (byte 1, bits 4-0).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage
from target.scsi.pr.registrations import PrState
from target.scsi.pr.state import pr_enabled, pr_state

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

OPCODE = 0x5E


class PrinAction(enum.IntEnum):
    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


#: PERSISTENT RESERVATION TYPE MASK (SPC-4 6.15.4 table 203): every type is supported
TYPE_MASK = bytes((0xEA, 0x01))  # WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX | EX_AC_AR
#: ALLOW COMMANDS 001b: TEST UNIT READY passes Write Exclusive and Exclusive Access (SPC-4 6.15.4 table 202)
ALLOW_COMMANDS = 0b001


def _header(state: PrState, body: bytes) -> bytes:
    return state.generation.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


def read_keys(state: PrState) -> bytes:
    """SPC-4 6.15.2: PRGENERATION, ADDITIONAL LENGTH, one 8-byte key per registration."""
    return _header(state, b"".join(r.key.to_bytes(8, "big") for r in state.registrations))


def read_reservation(state: PrState) -> bytes:
    """SPC-4 6.15.3: the reservation key of the holder (zero for the all-registrants types), SCOPE and TYPE."""
    res = state.reservation
    if res is None:
        return _header(state, b"")
    key = res.holder.key if res.holder is not None else 0
    body = key.to_bytes(8, "big") + bytes(4) + bytes((0, (res.scope << 4) | int(res.type))) + bytes(2)
    return _header(state, body)


def report_capabilities(state: PrState, *, aptpl_forced: bool = False) -> bytes:
    """SPC-4 6.15.4: RLR_C (REPLACE LOST RESERVATION, see target.scsi.pr.prout), CRH (SPC-2 RESERVE/RELEASE
    exceptions, 5.13.3), SIP_C, ATP_C, PTPL_C; TMV with the type mask, ALLOW COMMANDS, PTPL_A."""
    ptpl_c = state.store is not None
    b2 = (0x80 if state.rlr_capable else 0) | 0x10 | 0x08 | 0x04 | (0x01 if ptpl_c else 0)
    b3 = 0x80 | (ALLOW_COMMANDS << 4) | (0x01 if ptpl_c and (state.aptpl or aptpl_forced) else 0)
    return (8).to_bytes(2, "big") + bytes((b2, b3)) + TYPE_MASK + bytes(2)


def read_full_status(state: PrState) -> bytes:
    """SPC-4 6.15.5: one descriptor per registration with ALL_TG_PT, R_HOLDER, SCOPE/TYPE, the relative target
    port identifier and the initiator's iSCSI TransportID (format 01b with the ISID, 00b without one)."""
    res = state.reservation
    holders = state.holders()
    out = bytearray()
    for reg in state.registrations:
        tid = reg.transport_id.encode()
        holder = any(h is reg for h in holders)
        flags = (0x02 if reg.target_port is None else 0) | (0x01 if holder else 0)
        scope_type = ((res.scope << 4) | int(res.type)) if holder and res is not None else 0
        out += reg.key.to_bytes(8, "big") + bytes(4) + bytes((flags, scope_type)) + bytes(4)
        out += reg.relative_port_id.to_bytes(2, "big") + len(tid).to_bytes(4, "big") + tid
    return _header(state, bytes(out))


async def persistent_reserve_in(ctx: CommandContext) -> ScsiResult:
    state = pr_state(ctx.lu)
    sa = PrinAction(ctx.cdb[1] & 0x1F)
    if sa is PrinAction.READ_KEYS:
        data = read_keys(state)
    elif sa is PrinAction.READ_RESERVATION:
        data = read_reservation(state)
    elif sa is PrinAction.REPORT_CAPABILITIES:
        data = report_capabilities(state, aptpl_forced=bool(ctx.lu.attrs.force_pr_aptpl))
    else:
        data = read_full_status(state)
    return ctx.respond(data)


COMMANDS = [
    CommandSpec(
        opcode=OPCODE,
        name=f"PERSISTENT RESERVE IN/{sa.name.replace('_', ' ')}",
        cdb_length=10,
        usage=usage(OPCODE, sa, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00),
        handler=persistent_reserve_in,
        direction=Direction.IN,
        service_action=sa,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.STANDBY_OK,
        alloc_len=(7, 2),
        enabled=pr_enabled,
    )
    for sa in PrinAction
]

__all__ = [
    "COMMANDS",
    "PrinAction",
    "read_full_status",
    "read_keys",
    "read_reservation",
    "report_capabilities",
]
