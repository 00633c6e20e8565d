"""PERSISTENT RESERVE OUT (SPC-4 6.16): parse the CDB and the parameter list, run the service action on the
LU's `PrState`, make APTPL state durable, then apply the effects (unit attentions, PREEMPT AND ABORT).

Parameter lists (SPC-4 6.16.3 table 212, 6.16.4 table 214):
    basic (all but REGISTER AND MOVE): RESERVATION KEY (0-7), SERVICE ACTION RESERVATION KEY (8-15),
        byte 20 SPEC_I_PT (bit 3), ALL_TG_PT (bit 2), APTPL (bit 0); 24 bytes exactly, or with SPEC_I_PT
        TRANSPORTID PARAMETER DATA LENGTH (24-27) and the TransportIDs from byte 28.
    REGISTER AND MOVE: keys as above, byte 17 UNREG (bit 1) APTPL (bit 0), RELATIVE TARGET PORT IDENTIFIER
        (18-19), TRANSPORTID PARAMETER DATA LENGTH (20-23), one TransportID from byte 24.
A wrong PARAMETER LIST LENGTH is PARAMETER LIST LENGTH ERROR; bad fields are INVALID FIELD IN PARAMETER LIST with a
field pointer; SCOPE other than LU_SCOPE or an unknown TYPE is INVALID FIELD IN CDB (byte 2).

REPLACE LOST RESERVATION (08h, SPC-4 5.13.11.3) is offered where the device server can establish a recoverable
lost persistent reservation condition (SPC-4 5.13.5.3.2, `PrState.rlr_capable`, RLR_C in REPORT CAPABILITIES):
every LU with a state directory (APTPL). The condition is established at start-up when the APTPL file exists but
cannot be read (target.scsi.pr.state); while it lasts the reservation gate (target.scsi.reservation) ends every
command but REPLACE LOST RESERVATION and those of SPC-4 5.13.5.2 with DATA PROTECT / PERSISTENT RESERVATION
INFORMATION LOST (44h/01h). The command is checked as SPC-4 6.16 and 5.13.11.3 say: a 24-byte parameter list,
SPEC_I_PT zero, RESERVATION KEY zero, APTPL only with PTPL_C, a valid SCOPE and TYPE; without the lost condition
it ends with ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION; with it the issuer is registered with
SERVICE ACTION RESERVATION KEY and holds a new reservation, PRGENERATION is zero, and the APTPL file (which
recorded the condition) is rewritten with the new state or removed, as its APTPL bit says.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from target.scsi.command import Nexus, ScsiResult
from target.scsi.gates import AluaClass, PrClass, PrType
from target.scsi.opcodes import CommandSpec, Direction, usage
from target.scsi.pr import transport_id
from target.scsi.pr.aptpl import AptplError
from target.scsi.pr.registrations import LU_SCOPE, Effects, PrState, TargetPort, conflict, target_port_of
from target.scsi.pr.state import pr_enabled, pr_state
from target.scsi.sense import Asc, CheckCondition, SenseKey

if TYPE_CHECKING:
    from target.scsi.context import CommandContext
    from target.scsi.device import LogicalUnit

OPCODE = 0x5F
BASIC_LENGTH = 24
#: a bound on the parameter list we accept (TransportIDs of up to 1024 initiator ports fit)
MAX_PARAMETER_LIST = 256 * 1024


class ProutAction(enum.IntEnum):
    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07
    REPLACE_LOST_RESERVATION = 0x08


def _type_from_cdb(cdb: bytes) -> PrType:
    scope, raw = cdb[2] >> 4, cdb[2] & 0x0F
    if scope != LU_SCOPE:
        raise CheckCondition.invalid_cdb(2, 7)
    try:
        return PrType(raw)
    except ValueError:
        raise CheckCondition.invalid_cdb(2, 3) from None


def _resolve_port(lu: LogicalUnit, issuer: Nexus, state: PrState, rtpi: int) -> TargetPort:
    """The target port with relative port identifier `rtpi` (REGISTER AND MOVE): the issuer's, one a known
    nexus reaches the LU through, or one a registration was made through."""
    if rtpi == issuer.relative_port_id:
        return target_port_of(issuer)
    for n in lu.ua.nexuses:
        if n.relative_port_id == rtpi:
            return target_port_of(n)
    for r in state.registrations:
        if r.relative_port_id == rtpi and r.target_port is not None:
            return r.target_port
    raise CheckCondition.invalid_param(18)


def _run(ctx: CommandContext, state: PrState, sa: ProutAction, params: bytes) -> Effects:
    """Validate and perform one service action on `state` (raises before any change on error)."""
    nexus, cdb = ctx.nexus, ctx.cdb
    key = int.from_bytes(params[0:8], "big")
    sa_key = int.from_bytes(params[8:16], "big")
    if sa is ProutAction.REGISTER_AND_MOVE:
        flags = params[17]
        aptpl = bool(flags & 0x01)
        if aptpl and state.store is None:
            raise CheckCondition.invalid_param(17, 0)
        rtpi = int.from_bytes(params[18:20], "big")
        tid_len = int.from_bytes(params[20:24], "big")
        if BASIC_LENGTH + tid_len != len(params):
            raise CheckCondition.param_list_length_error()
        dest, used = transport_id.decode(params, BASIC_LENGTH)
        if used != tid_len:
            raise CheckCondition.invalid_param(20)
        _type_from_cdb(cdb)  # SCOPE and TYPE must be valid (SPC-4 6.16.4)
        own = state.registration_for(nexus)
        if own is None or own.key != key or not state.is_holder(nexus):
            # the conflicts come before the destination port is looked at (SPC-4 5.13.8)
            raise conflict("REGISTER AND MOVE from a nexus that is not the registered holder")
        port = _resolve_port(ctx.lu, nexus, state, rtpi)
        return state.register_and_move(
            nexus, key, sa_key, dest, port, rtpi, unreg=bool(flags & 0x02), aptpl=aptpl
        )
    flags = params[20]
    spec_i_pt, all_tg_pt, aptpl = bool(flags & 0x08), bool(flags & 0x04), bool(flags & 0x01)
    registering = sa in (ProutAction.REGISTER, ProutAction.REGISTER_AND_IGNORE_EXISTING_KEY)
    if spec_i_pt and sa is not ProutAction.REGISTER:
        raise CheckCondition.invalid_param(20, 3)
    if sa is ProutAction.REPLACE_LOST_RESERVATION:
        # SPC-4 5.13.11.3 / 6.16.3: SCOPE and TYPE define the new reservation; RESERVATION KEY shall be zero;
        # ALL_TG_PT is ignored; APTPL is valid (and needs PTPL_C)
        pr_type = _type_from_cdb(cdb)
        if key != 0:
            raise CheckCondition.invalid_param(0)
        if aptpl and state.store is None:
            raise CheckCondition.invalid_param(20, 0)
        return state.replace_lost(nexus, sa_key, pr_type, aptpl=aptpl)
    tids: list[transport_id.TransportId] = []
    if spec_i_pt:
        tid_len = int.from_bytes(params[24:28], "big")
        if BASIC_LENGTH + 4 + tid_len != len(params):
            raise CheckCondition.param_list_length_error()
        tids = transport_id.decode_list(params[28:], base=28)
    if registering:
        if aptpl and state.store is None:
            raise CheckCondition.invalid_param(20, 0)
        return state.register(
            nexus,
            key,
            sa_key,
            ignore_existing=sa is ProutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
            spec_i_pt=tids,
            all_tg_pt=all_tg_pt,
            aptpl=aptpl,
        )
    if sa is ProutAction.RESERVE:
        state.reserve(nexus, key, _type_from_cdb(cdb))
        return Effects()
    if sa is ProutAction.RELEASE:
        return state.release(nexus, key, cdb[2] & 0x0F, cdb[2] >> 4)
    if sa is ProutAction.CLEAR:
        return state.clear(nexus, key)
    return state.preempt(nexus, key, sa_key, _type_from_cdb(cdb), abort=sa is ProutAction.PREEMPT_AND_ABORT)


def _persist(lu: LogicalUnit, state: PrState, was_active: bool) -> None:
    store = state.store
    if store is None:
        return
    if state.aptpl or lu.attrs.force_pr_aptpl:
        store.save(state.to_dict())
    elif was_active:
        store.remove()


async def _apply(ctx: CommandContext, state: PrState, fx: Effects) -> None:
    """Unit attentions to exactly the I_T nexuses SPC-4 names (never the issuer), then PREEMPT AND ABORT."""
    lu, issuer = ctx.lu, ctx.nexus
    known = lu.ua.nexuses
    for asc, regs in fx.unit_attentions:
        if not regs:
            continue
        only = [
            n
            for n in known
            if n != issuer and any(r.matches(n, enforce_isid=state.enforce_isid) for r in regs)
        ]
        lu.ua.establish(asc, only=only)
    if fx.abort:
        regs = fx.abort
        me = lu.task_set.find(issuer, ctx.request.tag)
        # SPC-4 5.13.11.5 / SAM-5 5.6: every task of the preempted I_T nexuses but the PREEMPT AND ABORT itself;
        # TAS=1: they end with TASK ABORTED, TAS=0: silently, with COMMANDS CLEARED BY ANOTHER INITIATOR
        victims = await lu.task_set.abort(
            lambda t: (
                t is not me
                and t.nexus != issuer
                and any(r.matches(t.nexus, enforce_isid=state.enforce_isid) for r in regs)
            ),
            issuer=issuer,
            tas=lu.tas,
        )
        if not lu.tas:
            lu.ua.establish(Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR, only={t.nexus for t in victims})


def _rlr_enabled(lu: LogicalUnit) -> bool:
    """REPLACE LOST RESERVATION is a supported service action only where RLR_C is one."""
    return pr_enabled(lu) and pr_state(lu).rlr_capable


async def persistent_reserve_out(ctx: CommandContext) -> ScsiResult:
    state = pr_state(ctx.lu)
    sa = ProutAction(ctx.cdb[1] & 0x1F)
    length = ctx.parameter_list_length
    if length > MAX_PARAMETER_LIST:
        raise CheckCondition.param_list_length_error()
    params = ctx.parameters()
    if sa is ProutAction.REGISTER_AND_MOVE:
        if len(params) < BASIC_LENGTH + 4:
            raise CheckCondition.param_list_length_error()
    elif len(params) < BASIC_LENGTH or (len(params) != BASIC_LENGTH and not params[20] & 0x08):
        # SPC-4 6.16.3: 24 bytes unless SPEC_I_PT adds TransportIDs
        raise CheckCondition.param_list_length_error()
    elif params[20] & 0x08 and len(params) < BASIC_LENGTH + 4:
        raise CheckCondition.param_list_length_error()
    snapshot = state.to_dict()
    was_lost = state.lost
    # a recorded lost condition is in the file too: ending it rewrites or removes the file
    was_active = state.aptpl or bool(ctx.lu.attrs.force_pr_aptpl) or was_lost
    fx = _run(ctx, state, sa, params)
    try:
        _persist(ctx.lu, state, was_active)
    except AptplError as exc:
        # nothing changes unless it is durable: roll back and say why (SPC-4 5.13.5)
        state.restore(snapshot)
        state.lost = was_lost
        raise CheckCondition(
            SenseKey.ILLEGAL_REQUEST, Asc.INSUFFICIENT_REGISTRATION_RESOURCES, message=str(exc)
        ) from exc
    await _apply(ctx, state, fx)
    return ctx.good()


COMMANDS = [
    CommandSpec(
        opcode=OPCODE,
        name=f"PERSISTENT RESERVE OUT/{sa.name.replace('_', ' ')}",
        cdb_length=10,
        usage=usage(OPCODE, sa, 0xFF, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00),
        handler=persistent_reserve_out,
        direction=Direction.OUT,
        service_action=sa,
        pr_class=PrClass.COMMAND_DECIDES,
        alua_class=AluaClass.STANDBY_OK,
        param_len=(5, 4),
        enabled=_rlr_enabled if sa is ProutAction.REPLACE_LOST_RESERVATION else pr_enabled,
    )
    for sa in ProutAction
]
