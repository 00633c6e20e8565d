"""REPORT TARGET PORT GROUPS (SPC-4 6.37, MAINTENANCE IN / 0Ah) and SET TARGET PORT GROUPS (SPC-4 6.49,
MAINTENANCE OUT / 0Ah). The groups and their states live in `target.scsi.alua`.

Both commands exist only while the LU has ALUA (`lu.alua`, LU attribute alua_support=1). SET TARGET PORT GROUPS
is answered like an unsupported command when the issuing port's group does not allow explicit transitions
(TPGS 01b, SPC-4 6.49: "...shall be supported if the TPGS field is 10b or 11b").
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from target.scsi.alua.groups import AluaError, LuAlua, TargetPortGroup
from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, AluaState, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage
from target.scsi.sense import CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

MAINTENANCE_IN = 0xA3
MAINTENANCE_OUT = 0xA4
SA_TARGET_PORT_GROUPS = 0x0A
STPG_HEADER = 4
STPG_DESCRIPTOR = 4
#: bound on what a peer can make us parse: one descriptor per group id is the most that makes sense
MAX_STPG_DESCRIPTORS = 1024


class ParameterDataFormat(enum.IntEnum):
    """RTPG PARAMETER DATA FORMAT (SPC-4 6.37.1 table 278)."""

    LENGTH_ONLY = 0b000
    EXTENDED = 0b001


#: states a SET TARGET PORT GROUPS descriptor may ask for (SPC-4 6.49 table 330); others are invalid
STPG_STATES = frozenset(
    {
        AluaState.ACTIVE_OPTIMIZED,
        AluaState.ACTIVE_NON_OPTIMIZED,
        AluaState.STANDBY,
        AluaState.UNAVAILABLE,
        AluaState.OFFLINE,
    }
)


def _alua(ctx: CommandContext) -> LuAlua:
    alua: Any = ctx.lu.alua
    if not isinstance(alua, LuAlua):
        raise CheckCondition.invalid_opcode()
    return alua


def group_descriptor(g: TargetPortGroup, port_ids: list[int]) -> bytes:
    """One target port group descriptor (SPC-4 6.37.2 table 279) with its target port descriptors."""
    head = bytearray(8)
    head[0] = (0x80 if g.preferred else 0) | (int(g.state) & 0x0F)
    head[1] = g.support_bits
    head[2:4] = g.id.to_bytes(2, "big")
    head[5] = int(g.status)
    head[7] = min(len(port_ids), 0xFF)
    body = b"".join(b"\x00\x00" + rtpi.to_bytes(2, "big") for rtpi in port_ids[:0xFF])
    return bytes(head) + body


def rtpg_data(alua: LuAlua, fmt: ParameterDataFormat, implicit_trans_secs: int = 0) -> bytes:
    """The parameter data of REPORT TARGET PORT GROUPS in the given format."""
    body = b"".join(group_descriptor(g, ids) for g, ids in alua.report())
    if fmt is ParameterDataFormat.EXTENDED:
        # byte 4: FORMAT TYPE 001b in bits 6-4; byte 5: IMPLICIT TRANSITION TIME (SPC-4 6.37.1 table 277)
        ext = bytes((0x10, implicit_trans_secs & 0xFF, 0, 0))
        data = ext + body
    else:
        data = body
    return len(data).to_bytes(4, "big") + data


async def report_target_port_groups(ctx: CommandContext) -> ScsiResult:
    alua = _alua(ctx)
    raw = ctx.cdb[1] >> 5
    try:
        fmt = ParameterDataFormat(raw)
    except ValueError:
        ctx.invalid_cdb(1, 7)
    trans = alua.group_of(ctx.nexus).implicit_trans_secs
    return ctx.respond(rtpg_data(alua, fmt, trans))


def parse_stpg(alua: LuAlua, params: bytes) -> list[tuple[TargetPortGroup, AluaState]]:
    """Validate a SET TARGET PORT GROUPS parameter list (SPC-4 6.49.2): header, then 4-byte descriptors
    (byte 0 bits 3-0 ASYMMETRIC ACCESS STATE, bytes 2-3 TARGET PORT GROUP). Every error raises ILLEGAL REQUEST
    with a field pointer before anything changes."""
    if not params:
        return []
    if len(params) < STPG_HEADER or (len(params) - STPG_HEADER) % STPG_DESCRIPTOR:
        raise CheckCondition.param_list_length_error()
    count = (len(params) - STPG_HEADER) // STPG_DESCRIPTOR
    if count > MAX_STPG_DESCRIPTORS:
        raise CheckCondition.param_list_length_error()
    out: list[tuple[TargetPortGroup, AluaState]] = []
    seen: set[int] = set()
    for i in range(count):
        off = STPG_HEADER + i * STPG_DESCRIPTOR
        raw = params[off] & 0x0F
        if params[off] & 0xF0:
            raise CheckCondition.invalid_param(off, 7)
        try:
            state = AluaState(raw)
        except ValueError:
            raise CheckCondition.invalid_param(off, 3) from None
        gid = int.from_bytes(params[off + 2 : off + 4], "big")
        g = alua.by_id(gid)
        if g is None or gid in seen:
            raise CheckCondition.invalid_param(off + 2)
        if state not in STPG_STATES or state not in g.supported:
            raise CheckCondition.invalid_param(off, 3)
        try:
            alua.check_transition(g, state, explicit=True)
        except AluaError:
            raise CheckCondition.invalid_param(off + 2) from None
        seen.add(gid)
        out.append((g, state))
    return out


async def set_target_port_groups(ctx: CommandContext) -> ScsiResult:
    alua = _alua(ctx)
    if not alua.explicit_supported(ctx.nexus):
        # this port's group is implicit-only (TPGS 01b): answered like the unsupported service action it is
        raise CheckCondition.invalid_cdb(1, 4)
    changes = parse_stpg(alua, ctx.parameters())
    if changes:
        await alua.set_states(changes, explicit_from=ctx.nexus)
    return ctx.good()


def _has_alua(lu: Any) -> bool:
    return isinstance(getattr(lu, "alua", None), LuAlua)


def _explicit(lu: Any) -> bool:
    alua = getattr(lu, "alua", None)
    return isinstance(alua, LuAlua) and alua.explicit_supported()


COMMANDS = [
    CommandSpec(
        opcode=MAINTENANCE_IN,
        service_action=SA_TARGET_PORT_GROUPS,
        name="REPORT TARGET PORT GROUPS",
        cdb_length=12,
        usage=usage(MAINTENANCE_IN, 0xE0 | SA_TARGET_PORT_GROUPS, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0),
        handler=report_target_port_groups,
        direction=Direction.IN,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.ANY,  # SPC-4 5.15.2.4: processed in every access state
        spc2_allowed=True,
        alloc_len=(6, 4),
        enabled=_has_alua,
    ),
    CommandSpec(
        opcode=MAINTENANCE_OUT,
        service_action=SA_TARGET_PORT_GROUPS,
        name="SET TARGET PORT GROUPS",
        cdb_length=12,
        usage=usage(MAINTENANCE_OUT, SA_TARGET_PORT_GROUPS, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0),
        handler=set_target_port_groups,
        direction=Direction.OUT,
        pr_class=PrClass.WRITE,  # SPC-4 5.13.1 table 62: conflicts like a write
        alua_class=AluaClass.UNAVAILABLE_OK,  # SPC-4 5.15.2.4.5
        param_len=(6, 4),
        enabled=_explicit,
    ),
]
