"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS: SPC-4 6.3 / 6.18 (the SPC-3 list-identifier form), as LIO's
target_core_xcopy.c offers it: block-to-block segment descriptors (02h) between logical units named by
identification CSCD descriptors (E4h), resolved through the LuRegistry by designator (e.g. the NAA).

Theory of operation: the parameter list is parsed and validated completely (lengths, limits, descriptor types,
CSCD resolution, LBA ranges of every segment) before one block moves, so a bad list changes nothing. Then each
segment is copied in bounded chunks: read from the source LU, write to the destination under its LBA range lock
(so COMPARE AND WRITE stays atomic against copies). Results of a list whose LIST ID USAGE asks to hold them are
kept per (I_T nexus, list identifier) for RECEIVE COPY RESULTS / COPY STATUS (bounded per LU).

Errors (SPC-4 6.3.1 and what libiscsi's test-tool expects):
- parameter list shorter than its header says, or descriptor lists longer than MAXIMUM DESCRIPTOR LIST LENGTH:
  PARAMETER LIST LENGTH ERROR
- too many CSCD / segment descriptors: TOO MANY TARGET / SEGMENT DESCRIPTORS
- unsupported CSCD / segment descriptor type: UNSUPPORTED TARGET / SEGMENT DESCRIPTOR TYPE CODE
- a segment naming a CSCD index that does not exist: COPY ABORTED / UNREACHABLE COPY TARGET
- a designator no LU has: COPY ABORTED / COPY TARGET DEVICE NOT REACHABLE
- a segment beyond a device's capacity: COPY ABORTED (with the segment number in the sense-key-specific bytes)
"""

from __future__ import annotations

import enum
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target.backstore.base import Backstore
from target.scsi.command import Nexus, ScsiResult, ScsiStatus
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec, Direction
from target.scsi.sbc import common
from target.scsi.sense import Asc, CheckCondition, FieldPointer, SenseKey

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

EXTENDED_COPY = 0x83
RECEIVE_COPY_RESULTS = 0x84
SA_EXTENDED_COPY_LID1 = 0x00

HEADER_LEN = 16
CSCD_LEN = 32
B2B_SEGMENT_LEN = 28

#: copy manager limits reported by OPERATING PARAMETERS (SPC-4 6.18.4)
MAX_CSCD_DESCRIPTORS = 8
MAX_SEGMENT_DESCRIPTORS = 16
MAX_DESCRIPTOR_LIST_LENGTH = 1024
MAX_SEGMENT_LENGTH = 1 << 28  # bytes
DATA_SEGMENT_GRANULARITY_LOG2 = 9
MAX_HELD_RESULTS = 64
#: ILLEGAL REQUEST / OPERATION IN PROGRESS (00h/16h)
ASC_OPERATION_IN_PROGRESS = 0x0016


class RcrServiceAction(enum.IntEnum):
    """RECEIVE COPY RESULTS service actions (SPC-4 6.18.1, table 218)."""

    COPY_STATUS = 0x00
    RECEIVE_DATA = 0x01
    OPERATING_PARAMETERS = 0x03
    FAILED_SEGMENT_DETAILS = 0x04


class DescriptorType(enum.IntEnum):
    """EXTENDED COPY descriptor type codes we implement (SPC-4 6.3.5 table 109, 6.3.6 table 116)."""

    BLOCK_TO_BLOCK = 0x02
    IDENTIFICATION_CSCD = 0xE4


class ListIdUsage(enum.IntEnum):
    """SPC-4 6.3.1 table 105."""

    HOLD = 0b00
    RESERVED = 0b01
    NO_HOLD = 0b10
    NO_LIST_ID = 0b11


class CopyOperationStatus(enum.IntEnum):
    """COPY STATUS: COPY OPERATION STATUS (SPC-4 6.18.3, SPC-3 table 139)."""

    IN_PROGRESS = 0x00
    COMPLETED_OK = 0x01
    COMPLETED_WITH_ERRORS = 0x02


@dataclass
class CopyResult:
    status: CopyOperationStatus = CopyOperationStatus.IN_PROGRESS
    segments_processed: int = 0
    bytes_transferred: int = 0


@dataclass(frozen=True)
class Segment:
    index: int
    src: Any  # LogicalUnit
    dst: Any
    src_lba: int
    dst_lba: int
    nbytes: int


# --- held results --------------------------------------------------------------------------------------------

_RESULTS: weakref.WeakKeyDictionary[Backstore, OrderedDict[tuple[Nexus, int], CopyResult]] = (
    weakref.WeakKeyDictionary()
)


def _results(lu: Any) -> OrderedDict[tuple[Nexus, int], CopyResult]:
    bs = common.backstore(lu)
    d = _RESULTS.get(bs)
    if d is None:
        d = _RESULTS[bs] = OrderedDict()
    return d


def forget_copy_results(lu: Any, nexus: Nexus | None = None) -> None:
    """Drop held copy results of one I_T nexus (nexus loss) or all of them (LU reset)."""
    d = _results(lu)
    for key in [k for k in d if nexus is None or k[0] == nexus]:
        del d[key]


# --- errors --------------------------------------------------------------------------------------------------


def _copy_aborted(asc: Asc | int, segment: int | None = None) -> CheckCondition:
    # SPC-4 4.5.2.4.6: segment pointer sense-key-specific bytes for COPY ABORTED (SD=1, SEGMENT NUMBER)
    sks = bytes((0xA0, (segment >> 8) & 0xFF, segment & 0xFF)) if segment is not None else None
    return CheckCondition(SenseKey.COPY_ABORTED, asc, sks=sks)


def _illegal(asc: Asc, byte: int | None = None) -> CheckCondition:
    field = FieldPointer(byte, cd=False) if byte is not None else None
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, asc, field=field)


# --- parsing -------------------------------------------------------------------------------------------------


def _resolve(ctx: CommandContext, desc: bytes, offset: int) -> Any:
    """The LU an identification CSCD descriptor names (SPC-4 6.3.6.2)."""
    device_type = desc[1] & 0x1F
    if device_type != 0x00:  # only direct-access block devices
        raise _copy_aborted(Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE)
    designation = desc[4:24]
    dlen = designation[3]
    if dlen == 0 or dlen > 16:
        raise _illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST, offset + 7)
    whole = bytes(designation[: 4 + dlen])
    if ctx.registry is not None:
        lu = ctx.registry.find_by_designator(whole)
        if lu is not None:
            return lu
    designators = getattr(ctx.lu, "designators", None)
    if callable(designators) and whole[4:] in designators():
        return ctx.lu
    raise _copy_aborted(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)


def parse_extended_copy(ctx: CommandContext, params: bytes) -> tuple[int, ListIdUsage, list[Segment]]:
    """Validate a LID1 parameter list; returns (list id, list id usage, segments)."""
    if len(params) < HEADER_LEN:
        raise CheckCondition.param_list_length_error()
    list_id = params[0]
    usage = ListIdUsage((params[1] >> 3) & 0x03)
    if usage == ListIdUsage.RESERVED or (usage == ListIdUsage.NO_LIST_ID and list_id != 0):
        raise _illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST, 1 if usage == ListIdUsage.RESERVED else 0)
    cscd_len = int.from_bytes(params[2:4], "big")
    seg_len = int.from_bytes(params[8:12], "big")
    inline_len = int.from_bytes(params[12:16], "big")
    if cscd_len + seg_len > MAX_DESCRIPTOR_LIST_LENGTH:
        raise CheckCondition.param_list_length_error()
    if HEADER_LEN + cscd_len + seg_len + inline_len > len(params):
        raise CheckCondition.param_list_length_error()
    if inline_len:
        raise _illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST, 12)
    if cscd_len % CSCD_LEN:
        raise _illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST, 2)
    if cscd_len // CSCD_LEN > MAX_CSCD_DESCRIPTORS:
        raise _illegal(Asc.TOO_MANY_TARGET_DESCRIPTORS, 2)
    # segment descriptors are variable length (bytes 2-3 hold length - 4): count them first
    seg_offsets: list[int] = []
    pos = HEADER_LEN + cscd_len
    end = pos + seg_len
    while pos < end:
        if pos + 4 > end:
            raise CheckCondition.param_list_length_error()
        seg_offsets.append(pos)
        pos += 4 + int.from_bytes(params[pos + 2 : pos + 4], "big")
    if pos > end:
        raise CheckCondition.param_list_length_error()
    if len(seg_offsets) > MAX_SEGMENT_DESCRIPTORS:
        raise _illegal(Asc.TOO_MANY_SEGMENT_DESCRIPTORS, 8)
    # CSCD descriptors: type check, then resolution
    cscds: list[Any] = []
    for i in range(cscd_len // CSCD_LEN):
        off = HEADER_LEN + i * CSCD_LEN
        desc = params[off : off + CSCD_LEN]
        if desc[0] != DescriptorType.IDENTIFICATION_CSCD:
            raise _illegal(Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, off)
        cscds.append(desc)
    for off in seg_offsets:
        if params[off] != DescriptorType.BLOCK_TO_BLOCK:
            raise _illegal(Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, off)
        if int.from_bytes(params[off + 2 : off + 4], "big") != B2B_SEGMENT_LEN - 4:
            raise _illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST, off + 2)
    resolved: dict[int, Any] = {}
    segments: list[Segment] = []
    for n, off in enumerate(seg_offsets):
        seg = params[off : off + B2B_SEGMENT_LEN]
        src_i = int.from_bytes(seg[4:6], "big")
        dst_i = int.from_bytes(seg[6:8], "big")
        for idx in (src_i, dst_i):
            if idx >= len(cscds):
                raise _copy_aborted(Asc.UNREACHABLE_COPY_TARGET, n)
            if idx not in resolved:
                resolved[idx] = _resolve(ctx, cscds[idx], HEADER_LEN + idx * CSCD_LEN)
        src, dst = resolved[src_i], resolved[dst_i]
        dc = bool(seg[1] & 0x02)
        nblocks = int.from_bytes(seg[10:12], "big")
        src_lba = int.from_bytes(seg[12:20], "big")
        dst_lba = int.from_bytes(seg[20:28], "big")
        src_bs, dst_bs = common.block_size(src), common.block_size(dst)
        nbytes = nblocks * (dst_bs if dc else src_bs)
        if nbytes % src_bs or nbytes % dst_bs:
            raise _illegal(Asc.COPY_SEGMENT_GRANULARITY_VIOLATION, off + 10)
        if nbytes > MAX_SEGMENT_LENGTH:
            raise _illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST, off + 10)
        if src_lba + nbytes // src_bs > common.num_blocks(
            src
        ) or dst_lba + nbytes // dst_bs > common.num_blocks(dst):
            raise _copy_aborted(Asc.NO_ADDITIONAL_SENSE, n)
        segments.append(Segment(n, src, dst, src_lba, dst_lba, nbytes))
    return list_id, usage, segments


# --- handlers ------------------------------------------------------------------------------------------------


def _dst_read_only(ctx: CommandContext, dst: Any) -> bool:
    if dst is ctx.lu:
        return ctx.read_only
    return bool(getattr(dst, "read_only", False))


async def _copy_segment(ctx: CommandContext, seg: Segment, result: CopyResult) -> None:
    if _dst_read_only(ctx, seg.dst):
        raise CheckCondition.write_protected()
    src_bs, dst_bs = common.block_size(seg.src), common.block_size(seg.dst)
    chunk = max(src_bs, dst_bs) * max(1, common.CHUNK_BYTES // max(src_bs, dst_bs))
    done = 0
    while done < seg.nbytes:
        n = min(chunk, seg.nbytes - done)
        try:
            data = await common.medium_read(seg.src, seg.src_lba + done // src_bs, n // src_bs)
            dst_lba = seg.dst_lba + done // dst_bs
            async with common.range_lock(seg.dst).hold(dst_lba, n // dst_bs):
                await common.medium_write(seg.dst, dst_lba, data)
        except CheckCondition as cc:
            raise _copy_aborted(cc.asc, seg.index) from cc
        done += n
        result.bytes_transferred += n


async def extended_copy(ctx: CommandContext) -> ScsiResult:
    if ctx.parameter_list_length == 0:
        return ScsiResult(status=ScsiStatus.GOOD)  # SPC-4 6.3.1: not an error, nothing copied
    list_id, usage, segments = parse_extended_copy(ctx, ctx.parameters())
    held = _results(ctx.lu)
    key = (ctx.nexus, list_id)
    if usage in (ListIdUsage.HOLD, ListIdUsage.NO_HOLD):
        prior = held.get(key)
        if prior is not None and prior.status == CopyOperationStatus.IN_PROGRESS:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC_OPERATION_IN_PROGRESS)
    result = CopyResult()
    if usage == ListIdUsage.HOLD:
        held.pop(key, None)
        held[key] = result
        while len(held) > MAX_HELD_RESULTS:
            held.popitem(last=False)
    try:
        for seg in segments:
            await _copy_segment(ctx, seg, result)
            result.segments_processed += 1
    except BaseException:
        result.status = CopyOperationStatus.COMPLETED_WITH_ERRORS
        raise
    result.status = CopyOperationStatus.COMPLETED_OK
    return ScsiResult(status=ScsiStatus.GOOD)


def operating_parameters() -> bytes:
    """RECEIVE COPY RESULTS / OPERATING PARAMETERS data (SPC-4 6.18.4, table 223)."""
    implemented = bytes((DescriptorType.BLOCK_TO_BLOCK, DescriptorType.IDENTIFICATION_CSCD))
    data = bytearray(44)
    data[4] = 0x01  # SNLID: lists without a list identifier are supported
    data[8:10] = MAX_CSCD_DESCRIPTORS.to_bytes(2, "big")
    data[10:12] = MAX_SEGMENT_DESCRIPTORS.to_bytes(2, "big")
    data[12:16] = MAX_DESCRIPTOR_LIST_LENGTH.to_bytes(4, "big")
    data[16:20] = MAX_SEGMENT_LENGTH.to_bytes(4, "big")
    # MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0
    data[34:36] = (1).to_bytes(2, "big")  # TOTAL CONCURRENT COPIES
    data[36] = 1  # MAXIMUM CONCURRENT COPIES
    data[37] = DATA_SEGMENT_GRANULARITY_LOG2
    data[38] = DATA_SEGMENT_GRANULARITY_LOG2  # INLINE DATA GRANULARITY
    data[39] = DATA_SEGMENT_GRANULARITY_LOG2  # HELD DATA GRANULARITY
    data[43] = len(implemented)
    out = bytes(data) + implemented
    return (len(out) - 4).to_bytes(4, "big") + out[4:]


class TpcDescriptorType(enum.IntEnum):
    """Third-party copy descriptor types of the Third-party Copy VPD page (SPC-4 7.8.17, table 627)."""

    SUPPORTED_COMMANDS = 0x0001
    PARAMETER_DATA = 0x0004
    SUPPORTED_DESCRIPTORS = 0x0008
    SUPPORTED_CSCD_DESCRIPTOR_IDS = 0x000C
    GENERAL_COPY_OPERATIONS = 0x8001


def _tpc_descriptor(kind: TpcDescriptorType, body: bytes) -> bytes:
    """One third-party copy descriptor: type, length, body padded to a multiple of 4 bytes (SPC-4 7.8.17.1)."""
    body = body + bytes(-(4 + len(body)) % 4)
    return int(kind).to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def third_party_copy_descriptors() -> bytes:
    """The descriptor list of the Third-party Copy VPD page (8Fh) for the EXTENDED COPY (LID1) copy manager: the
    descriptors SPC-4 7.8.17.1 requires of a device that supports EXTENDED COPY (LID1), with the same limits
    OPERATING PARAMETERS reports and `parse_extended_copy` enforces."""
    # Supported Commands (7.8.17.3): per opcode, its list of service actions
    commands: dict[int, list[int]] = {
        EXTENDED_COPY: [SA_EXTENDED_COPY_LID1],
        RECEIVE_COPY_RESULTS: [RcrServiceAction.COPY_STATUS, RcrServiceAction.OPERATING_PARAMETERS],
    }
    cmd_list = b"".join(bytes((op, len(sas), *sas)) for op, sas in commands.items())
    supported_commands = bytes((len(cmd_list),)) + cmd_list
    # Parameter Data (7.8.17.4): limits of the EXTENDED COPY parameter list
    parameter_data = (
        bytes(4)
        + MAX_CSCD_DESCRIPTORS.to_bytes(2, "big")
        + MAX_SEGMENT_DESCRIPTORS.to_bytes(2, "big")
        + MAX_DESCRIPTOR_LIST_LENGTH.to_bytes(4, "big")
        + (0).to_bytes(4, "big")  # MAXIMUM INLINE DATA LENGTH: no inline data
        + bytes(12)
    )
    # Supported Descriptors (7.8.17.5): segment descriptor 02h and CSCD descriptor E4h
    codes = bytes((DescriptorType.BLOCK_TO_BLOCK, DescriptorType.IDENTIFICATION_CSCD))
    supported_descriptors = bytes((len(codes),)) + codes
    # Supported CSCD Descriptor IDs (7.8.17.6): none above 07FFh (only indexes into the CSCD list)
    supported_ids = (0).to_bytes(2, "big")
    # General Copy Operations (7.8.17.10)
    general = (
        (1).to_bytes(4, "big")  # TOTAL CONCURRENT COPIES
        + (1).to_bytes(4, "big")  # MAXIMUM IDENTIFIED CONCURRENT COPIES
        + MAX_SEGMENT_LENGTH.to_bytes(4, "big")
        + bytes((DATA_SEGMENT_GRANULARITY_LOG2, DATA_SEGMENT_GRANULARITY_LOG2))
        + bytes(18)
    )
    return b"".join(
        (
            _tpc_descriptor(TpcDescriptorType.SUPPORTED_COMMANDS, supported_commands),
            _tpc_descriptor(TpcDescriptorType.PARAMETER_DATA, parameter_data),
            _tpc_descriptor(TpcDescriptorType.SUPPORTED_DESCRIPTORS, supported_descriptors),
            _tpc_descriptor(TpcDescriptorType.SUPPORTED_CSCD_DESCRIPTOR_IDS, supported_ids),
            _tpc_descriptor(TpcDescriptorType.GENERAL_COPY_OPERATIONS, general),
        )
    )


def copy_status(result: CopyResult) -> bytes:
    """COPY STATUS data (SPC-4 6.18.3, table 219): transfer count in KiB once it no longer fits in bytes."""
    count, units = result.bytes_transferred, 0x00
    while count > 0xFFFFFFFF:
        count >>= 10
        units += 1
    return (
        (8).to_bytes(4, "big")
        + bytes((int(result.status) & 0x7F,))
        + min(result.segments_processed, 0xFFFF).to_bytes(2, "big")
        + bytes((units,))
        + count.to_bytes(4, "big")
    )


async def receive_copy_results_status(ctx: CommandContext) -> ScsiResult:
    list_id = ctx.cdb[2]
    result = _results(ctx.lu).get((ctx.nexus, list_id))
    if result is None:
        raise CheckCondition.invalid_cdb(2)
    return ctx.respond(copy_status(result))


async def receive_copy_results_op_params(ctx: CommandContext) -> ScsiResult:
    return ctx.respond(operating_parameters())


def _enabled(lu: Any) -> bool:
    return bool(common.attr(lu, "emulate_3pc", 1))


def _rcr_usage(sa: int) -> bytes:
    return bytes((0x84, sa, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00))


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=EXTENDED_COPY,
        service_action=SA_EXTENDED_COPY_LID1,
        name="EXTENDED COPY(LID1)",
        cdb_length=16,
        usage=bytes((0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00)),
        handler=extended_copy,
        direction=Direction.OUT,
        pr_class=PrClass.WRITE,
        param_len=(10, 4),
        enabled=_enabled,
    ),
    CommandSpec(
        opcode=RECEIVE_COPY_RESULTS,
        service_action=RcrServiceAction.COPY_STATUS,
        name="RECEIVE COPY RESULTS(COPY STATUS)",
        cdb_length=16,
        usage=_rcr_usage(RcrServiceAction.COPY_STATUS),
        handler=receive_copy_results_status,
        direction=Direction.IN,
        pr_class=PrClass.READ,
        alloc_len=(10, 4),
        enabled=_enabled,
    ),
    CommandSpec(
        opcode=RECEIVE_COPY_RESULTS,
        service_action=RcrServiceAction.OPERATING_PARAMETERS,
        name="RECEIVE COPY RESULTS(OPERATING PARAMETERS)",
        cdb_length=16,
        usage=_rcr_usage(RcrServiceAction.OPERATING_PARAMETERS),
        handler=receive_copy_results_op_params,
        direction=Direction.IN,
        pr_class=PrClass.READ,
        alloc_len=(10, 4),
        enabled=_enabled,
    ),
]
