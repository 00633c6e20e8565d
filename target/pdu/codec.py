"""Encode PDU dataclasses to wire bytes and decode framed PDUs back (RFC 7143 section 11).

Theory of operation
-------------------
Every PDU starts with the 48-byte Basic Header Segment (11.2.1):

    byte 0      .|I| opcode            (bit 7 reserved, I = immediate delivery)
    byte 1      F + opcode-specific flags
    bytes 2-3   opcode-specific
    byte 4      TotalAHSLength (in 4-byte words)
    bytes 5-7   DataSegmentLength (bytes, without padding)
    bytes 8-15  LUN or opcode-specific
    bytes 16-19 Initiator Task Tag (or opcode-specific)
    bytes 20-47 opcode-specific

Each opcode has exactly one `struct.Struct` describing its whole BHS (bytes 4-7 are packed as one 32-bit word
`TotalAHSLength << 24 | DataSegmentLength`). Encoding packs into one preallocated bytearray (BHS + AHS +
header digest); the data segment is passed through untouched, so `encode_pdu` returns the segments for a
vectored send. Decoding unpacks with the same struct.

Only the SCSI Command carries Additional Header Segments (11.2.2): the Extended CDB AHS (type 1, for CDBs
longer than 16 bytes) and the Bidirectional Read Expected Data Transfer Length AHS (type 2).

Reserved fields are written as zero and ignored on receipt (11.2: "any compliant receiver MUST ignore any bit
not defined and all reserved fields unless specified otherwise"). Decoding rejects only what the RFC (or the
Linux target, for interoperability) treats as an error; the error carries the Reject reason to answer with.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from target.pdu import digest
from target.pdu.framing import RawPdu
from target.pdu.pdus import (
    BHS_LENGTH,
    R2T,
    RESERVED_TAG,
    AsyncMessage,
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Opcode,
    Pdu,
    Reject,
    RejectReason,
    ScsiCommand,
    ScsiResponse,
    SnackRequest,
    TaskAttribute,
    TaskMgmtRequest,
    TaskMgmtResponse,
    TextRequest,
    TextResponse,
)

__all__ = [
    "AHS_BIDI_READ_LENGTH",
    "AHS_EXTENDED_CDB",
    "MAX_CDB_LENGTH",
    "MAX_DATA_SEGMENT_LENGTH",
    "PduDecodeError",
    "decode_pdu",
    "encode_pdu",
    "encode_pdu_bytes",
    "pad_length",
]

MAX_DATA_SEGMENT_LENGTH = (1 << 24) - 1  # DataSegmentLength is a 24-bit field
MAX_CDB_LENGTH = 260  # SPC-4 4.2.3: the longest variable-length CDB
AHS_EXTENDED_CDB = 1  # RFC 7143 11.2.2.3
AHS_BIDI_READ_LENGTH = 2  # RFC 7143 11.2.2.4
_CDB_IN_BHS = 16

# Flag bits of byte 1.
_F = 0x80
_IMMEDIATE = 0x40
_OPCODE_MASK = 0x3F
# SCSI Command (11.3.1)
_CMD_R = 0x40
_CMD_W = 0x20
_CMD_ATTR = 0x07
# Login (11.12.1) and Text (11.10.1/11.11.1)
_T = 0x80
_C = 0x40
# SCSI Response (11.4.1) and Data-In (11.7.1)
_RSP_BIDI_OVERFLOW = 0x10  # o
_RSP_BIDI_UNDERFLOW = 0x08  # u
_OVERFLOW = 0x04  # O
_UNDERFLOW = 0x02  # U
_DATAIN_ACK = 0x40  # A
_DATAIN_STATUS = 0x01  # S

_ZERO_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4


class PduDecodeError(Exception):
    """A framed PDU whose fields are invalid; `reason` is the Reject reason to answer with (RFC 7143 11.17.1)."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason.name}: {self.message}"


def pad_length(length: int) -> int:
    """Number of padding bytes that bring `length` to a multiple of 4 (RFC 7143 11.1)."""
    return -length & 3


# --------------------------------------------------------------------------- BHS layouts, one per opcode
# Common prefix: B opcode byte, B flags byte, then bytes 2-3, then I = TotalAHSLength<<24 | DataSegmentLength.

_S_NOP_OUT = struct.Struct(">BBHIQIIII16x")  # lun itt ttt cmdsn exp_statsn
_S_SCSI_COMMAND = struct.Struct(">BBHIQIIII16s")  # lun itt edtl cmdsn exp_statsn cdb[16]
_S_TMF_REQUEST = struct.Struct(">BBHIQIIIIII8x")  # lun itt rtt cmdsn exp_statsn ref_cmdsn exp_datasn
_S_LOGIN_REQUEST = struct.Struct(">BBBBIQIH2xII16x")  # vmax vmin; isid<<16|tsih itt cid cmdsn exp_statsn
_S_TEXT_REQUEST = struct.Struct(">BBHIQIIII16x")  # lun itt ttt cmdsn exp_statsn
_S_DATA_OUT = struct.Struct(">BBHIQII4xI4xII4x")  # lun itt ttt exp_statsn datasn buffer_offset
_S_LOGOUT_REQUEST = struct.Struct(">BBHI8xIH2xII16x")  # itt cid cmdsn exp_statsn
_S_SNACK = struct.Struct(">BBHIQII4xI8xII")  # lun itt ttt exp_statsn begrun runlength
_S_NOP_IN = struct.Struct(">BBHIQIIIII12x")  # lun itt ttt statsn exp_cmdsn max_cmdsn
_S_SCSI_RESPONSE = struct.Struct(
    ">BBBBI8xIIIIIIII"
)  # resp status; itt snack statsn exp max expdatasn bidi res
_S_TMF_RESPONSE = struct.Struct(">BBBBI8xI4xIII12x")  # response; itt statsn exp_cmdsn max_cmdsn
_S_LOGIN_RESPONSE = struct.Struct(
    ">BBBBIQI4xIIIBB10x"
)  # vmax vact; isid|tsih itt statsn exp max class detail
_S_TEXT_RESPONSE = struct.Struct(">BBHIQIIIII12x")  # lun itt ttt statsn exp_cmdsn max_cmdsn
_S_DATA_IN = struct.Struct(">BBBBIQIIIIIIII")  # status; lun itt ttt statsn exp max datasn offset residual
_S_LOGOUT_RESPONSE = struct.Struct(">BBBBI8xI4xIII4xHH4x")  # response; itt statsn exp max t2w t2r
_S_R2T = struct.Struct(">BBHIQIIIIIIII")  # lun itt ttt statsn exp max r2tsn offset desired
_S_ASYNC = struct.Struct(">BBHIQI4xIIIBBHHH4x")  # lun itt statsn exp max event vcode p1 p2 p3
_S_REJECT = struct.Struct(">BBBBI8xI4xIIII8x")  # reason; itt statsn exp max datasn_r2tsn

_S_AHS_HEADER = struct.Struct(">HBB")  # AHSLength, AHSType, first AHS-specific byte
_S_AHS_BIDI = struct.Struct(">HBxI")  # AHSLength=5, AHSType=2, reserved, length
_S_U32 = struct.Struct(">I")


def _check_data_length(length: int) -> None:
    if length > MAX_DATA_SEGMENT_LENGTH:
        raise ValueError(f"data segment of {length} bytes does not fit DataSegmentLength")


# --------------------------------------------------------------------------- encode


def _encode_nop_out(p: NopOut, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_NOP_OUT.pack_into(
        b, 0, Opcode.NOP_OUT | (_IMMEDIATE if p.immediate else 0), _F, 0, dlen, p.lun, p.itt, p.ttt,
        p.cmdsn, p.exp_statsn,
    )  # fmt: skip
    return b


def _scsi_command_ahs(p: ScsiCommand) -> bytes:
    cdb = p.cdb
    if len(cdb) > MAX_CDB_LENGTH:
        raise ValueError(f"CDB of {len(cdb)} bytes is longer than {MAX_CDB_LENGTH}")
    parts: list[bytes] = []
    if len(cdb) > _CDB_IN_BHS:
        # 11.2.2.3: AHSLength counts the reserved byte plus the CDB bytes beyond the first 16 (CDBLength - 15).
        rest = bytes(cdb[_CDB_IN_BHS:])
        parts.append(_S_AHS_HEADER.pack(len(rest) + 1, AHS_EXTENDED_CDB, 0) + rest + _ZERO_PAD[len(rest) & 3])
    if p.bidi_read_length is not None:
        parts.append(_S_AHS_BIDI.pack(5, AHS_BIDI_READ_LENGTH, p.bidi_read_length))
    return b"".join(parts)


def _encode_scsi_command(p: ScsiCommand, dlen: int) -> bytearray:
    flags = (
        (_F if p.final else 0) | (_CMD_R if p.read else 0) | (_CMD_W if p.write else 0) | (p.attr & _CMD_ATTR)
    )
    cdb16 = bytes(p.cdb[:_CDB_IN_BHS])
    if len(p.cdb) <= _CDB_IN_BHS and p.bidi_read_length is None:
        b = bytearray(BHS_LENGTH)
        ahs_words = 0
    else:
        ahs = _scsi_command_ahs(p)
        ahs_words = len(ahs) >> 2
        b = bytearray(BHS_LENGTH + len(ahs))
        b[BHS_LENGTH:] = ahs
    _S_SCSI_COMMAND.pack_into(
        b, 0, Opcode.SCSI_COMMAND | (_IMMEDIATE if p.immediate else 0), flags, 0, (ahs_words << 24) | dlen,
        p.lun, p.itt, p.expected_data_length, p.cmdsn, p.exp_statsn, cdb16,
    )  # fmt: skip
    return b


def _encode_tmf_request(p: TaskMgmtRequest, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_TMF_REQUEST.pack_into(
        b, 0, Opcode.TASK_MGMT_REQUEST | (_IMMEDIATE if p.immediate else 0), _F | (p.function & 0x7F), 0,
        dlen, p.lun, p.itt, p.rtt, p.cmdsn, p.exp_statsn, p.ref_cmdsn, p.exp_datasn,
    )  # fmt: skip
    return b


def _login_flags(transit: bool, cont: bool, csg: int, nsg: int) -> int:
    return (_T if transit else 0) | (_C if cont else 0) | ((csg & 3) << 2) | (nsg & 3)


def _isid_tsih(isid: int, tsih: int) -> int:
    if not 0 <= isid < 1 << 48:
        raise ValueError(f"ISID {isid:#x} does not fit 6 bytes")
    return (isid << 16) | tsih


def _encode_login_request(p: LoginRequest, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    # 11.12: the I bit is always 1 for a Login Request.
    _S_LOGIN_REQUEST.pack_into(
        b, 0, Opcode.LOGIN_REQUEST | _IMMEDIATE, _login_flags(p.transit, p.cont, p.csg, p.nsg), p.version_max,
        p.version_min, dlen, _isid_tsih(p.isid, p.tsih), p.itt, p.cid, p.cmdsn, p.exp_statsn,
    )  # fmt: skip
    return b


def _encode_text_request(p: TextRequest, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_TEXT_REQUEST.pack_into(
        b, 0, Opcode.TEXT_REQUEST | (_IMMEDIATE if p.immediate else 0),
        (_F if p.final else 0) | (_C if p.cont else 0), 0, dlen, p.lun, p.itt, p.ttt, p.cmdsn, p.exp_statsn,
    )  # fmt: skip
    return b


def _encode_data_out(p: DataOut, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_DATA_OUT.pack_into(
        b, 0, Opcode.DATA_OUT, _F if p.final else 0, 0, dlen, p.lun, p.itt, p.ttt, p.exp_statsn, p.datasn,
        p.buffer_offset,
    )  # fmt: skip
    return b


def _encode_logout_request(p: LogoutRequest, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_LOGOUT_REQUEST.pack_into(
        b, 0, Opcode.LOGOUT_REQUEST | (_IMMEDIATE if p.immediate else 0), _F | (p.reason & 0x7F), 0, dlen,
        p.itt, p.cid, p.cmdsn, p.exp_statsn,
    )  # fmt: skip
    return b


def _encode_snack(p: SnackRequest, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_SNACK.pack_into(
        b, 0, Opcode.SNACK_REQUEST, _F | (p.type & 0x0F), 0, dlen, p.lun, p.itt, p.ttt, p.exp_statsn, p.begrun,
        p.runlength,
    )  # fmt: skip
    return b


def _encode_nop_in(p: NopIn, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_NOP_IN.pack_into(
        b, 0, Opcode.NOP_IN, _F, 0, dlen, p.lun, p.itt, p.ttt, p.statsn, p.exp_cmdsn, p.max_cmdsn
    )
    return b


def _encode_scsi_response(p: ScsiResponse, dlen: int) -> bytearray:
    flags = (
        _F
        | (_RSP_BIDI_OVERFLOW if p.bidi_overflow else 0)
        | (_RSP_BIDI_UNDERFLOW if p.bidi_underflow else 0)
        | (_OVERFLOW if p.overflow else 0)
        | (_UNDERFLOW if p.underflow else 0)
    )
    b = bytearray(BHS_LENGTH)
    _S_SCSI_RESPONSE.pack_into(
        b, 0, Opcode.SCSI_RESPONSE, flags, p.response, p.status, dlen, p.itt, p.snack_tag, p.statsn,
        p.exp_cmdsn, p.max_cmdsn, p.exp_datasn, p.bidi_residual, p.residual,
    )  # fmt: skip
    return b


def _encode_tmf_response(p: TaskMgmtResponse, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_TMF_RESPONSE.pack_into(
        b, 0, Opcode.TASK_MGMT_RESPONSE, _F, p.response, 0, dlen, p.itt, p.statsn, p.exp_cmdsn, p.max_cmdsn
    )
    return b


def _encode_login_response(p: LoginResponse, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_LOGIN_RESPONSE.pack_into(
        b, 0, Opcode.LOGIN_RESPONSE, _login_flags(p.transit, p.cont, p.csg, p.nsg), p.version_max,
        p.version_active, dlen, _isid_tsih(p.isid, p.tsih), p.itt, p.statsn, p.exp_cmdsn, p.max_cmdsn,
        p.status_class, p.status_detail,
    )  # fmt: skip
    return b


def _encode_text_response(p: TextResponse, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_TEXT_RESPONSE.pack_into(
        b, 0, Opcode.TEXT_RESPONSE, (_F if p.final else 0) | (_C if p.cont else 0), 0, dlen, p.lun, p.itt,
        p.ttt, p.statsn, p.exp_cmdsn, p.max_cmdsn,
    )  # fmt: skip
    return b


def _encode_data_in(p: DataIn, dlen: int) -> bytearray:
    # 11.7: StatSN and Status are only meaningful (and only sent) with the S bit; otherwise reserved (zero).
    if p.status_present:
        flags = _F | _DATAIN_STATUS
        statsn = p.statsn
        status = p.status
    else:
        flags = _F if p.final else 0
        statsn = 0
        status = 0
    if p.ack:
        flags |= _DATAIN_ACK
    if p.overflow:
        flags |= _OVERFLOW
    if p.underflow:
        flags |= _UNDERFLOW
    b = bytearray(BHS_LENGTH)
    _S_DATA_IN.pack_into(
        b, 0, Opcode.DATA_IN, flags, 0, status, dlen, p.lun, p.itt, p.ttt, statsn, p.exp_cmdsn, p.max_cmdsn,
        p.datasn, p.buffer_offset, p.residual,
    )  # fmt: skip
    return b


def _encode_logout_response(p: LogoutResponse, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_LOGOUT_RESPONSE.pack_into(
        b, 0, Opcode.LOGOUT_RESPONSE, _F, p.response, 0, dlen, p.itt, p.statsn, p.exp_cmdsn, p.max_cmdsn,
        p.time2wait, p.time2retain,
    )  # fmt: skip
    return b


def _encode_r2t(p: R2T, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_R2T.pack_into(
        b, 0, Opcode.R2T, _F, 0, dlen, p.lun, p.itt, p.ttt, p.statsn, p.exp_cmdsn, p.max_cmdsn, p.r2tsn,
        p.buffer_offset, p.desired_length,
    )  # fmt: skip
    return b


def _encode_async(p: AsyncMessage, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_ASYNC.pack_into(
        b, 0, Opcode.ASYNC_MESSAGE, _F, 0, dlen, p.lun, RESERVED_TAG, p.statsn, p.exp_cmdsn, p.max_cmdsn,
        p.async_event, p.async_vcode, p.parameter1, p.parameter2, p.parameter3,
    )  # fmt: skip
    return b


def _encode_reject(p: Reject, dlen: int) -> bytearray:
    b = bytearray(BHS_LENGTH)
    _S_REJECT.pack_into(
        b, 0, Opcode.REJECT, _F, p.reason, 0, dlen, RESERVED_TAG, p.statsn, p.exp_cmdsn, p.max_cmdsn,
        p.datasn_r2tsn,
    )  # fmt: skip
    return b


_ENCODERS: dict[type, Callable[[Any, int], bytearray]] = {
    NopOut: _encode_nop_out,
    ScsiCommand: _encode_scsi_command,
    TaskMgmtRequest: _encode_tmf_request,
    LoginRequest: _encode_login_request,
    TextRequest: _encode_text_request,
    DataOut: _encode_data_out,
    LogoutRequest: _encode_logout_request,
    SnackRequest: _encode_snack,
    NopIn: _encode_nop_in,
    ScsiResponse: _encode_scsi_response,
    TaskMgmtResponse: _encode_tmf_response,
    LoginResponse: _encode_login_response,
    TextResponse: _encode_text_response,
    DataIn: _encode_data_in,
    LogoutResponse: _encode_logout_response,
    R2T: _encode_r2t,
    AsyncMessage: _encode_async,
    Reject: _encode_reject,
}


def encode_pdu(
    pdu: Pdu, *, header_digest: bool = False, data_digest: bool = False
) -> list[bytes | bytearray | memoryview]:
    """Wire segments of `pdu` for a vectored send (e.g. `socket.sendmsg` / `transport.writelines`).

    Segment 1 is BHS + AHS (+ header digest); then, if there is data, the data segment itself (not copied)
    and, when needed, the padding plus data digest. Joining the segments gives the PDU's exact bytes.
    """
    data = getattr(pdu, "data", b"")
    dlen = len(data)
    if dlen > MAX_DATA_SEGMENT_LENGTH:
        _check_data_length(dlen)
    try:
        encoder = _ENCODERS[type(pdu)]
    except KeyError:
        raise TypeError(f"not a PDU: {type(pdu).__name__}") from None
    try:
        header = encoder(pdu, dlen)
    except struct.error as exc:
        raise ValueError(f"{type(pdu).__name__}: field out of range: {exc}") from exc
    return wire_segments(header, data, header_digest=header_digest, data_digest=data_digest)


def wire_segments(
    header: bytes | bytearray,
    data: bytes | bytearray | memoryview = b"",
    *,
    header_digest: bool = False,
    data_digest: bool = False,
) -> list[bytes | bytearray | memoryview]:
    """The wire segments of an encoded BHS (+ AHS) and its data segment: header (+ header digest), data (not
    copied), padding (+ data digest)."""
    hdr = bytes(header)
    if header_digest:
        hdr += digest.digest_bytes(hdr)
    dlen = len(data)
    if not dlen:
        return [hdr]
    pad = _ZERO_PAD[dlen & 3]
    if data_digest:
        return [hdr, data, pad + digest.digest_bytes(data, pad)]
    if pad:
        return [hdr, data, pad]
    return [hdr, data]


# --------------------------------------------------------------------------- direct path (target.iscsi.connection)

#: SCSI Command BHS: opcode byte, flags, 2 reserved, TotalAHSLength<<24 | DataSegmentLength, LUN, ITT, EDTL,
#: CmdSN, ExpStatSN, CDB[16] (the layout `_decode_scsi_command` decodes)
SCSI_COMMAND_BHS = _S_SCSI_COMMAND


def data_in_with_status(itt: int, lun: int, statsn: int, exp_cmdsn: int, max_cmdsn: int, dlen: int) -> bytes:
    """BHS of the single, phase-collapsed Data-In of a command answered GOOD with exactly its expected data: F
    and S set, DataSN 0, offset 0, no residual, TTT FFFFFFFFh (what `encode_pdu` makes of the same DataIn)."""
    return _S_DATA_IN.pack(
        Opcode.DATA_IN, _F | _DATAIN_STATUS, 0, 0, dlen, lun, itt, RESERVED_TAG, statsn, exp_cmdsn, max_cmdsn,
        0, 0, 0,
    )  # fmt: skip


def good_scsi_response(itt: int, statsn: int, exp_cmdsn: int, max_cmdsn: int) -> bytes:
    """BHS of a SCSI Response GOOD without sense, residuals or Data-In (ExpDataSN 0): a write done in one PDU."""
    return _S_SCSI_RESPONSE.pack(
        Opcode.SCSI_RESPONSE, _F, 0, 0, 0, itt, 0, statsn, exp_cmdsn, max_cmdsn, 0, 0, 0
    )


def encode_pdu_bytes(pdu: Pdu, *, header_digest: bool = False, data_digest: bool = False) -> bytes:
    """The whole PDU as one bytes object."""
    return b"".join(encode_pdu(pdu, header_digest=header_digest, data_digest=data_digest))


# --------------------------------------------------------------------------- decode


def _no_ahs(raw: RawPdu, name: str) -> None:
    if raw.ahs:
        # 11.2.1.5: "The TotalAHSLength is only used in PDUs that have an AHS and MUST be 0 in all other PDUs";
        # only the SCSI Command defines AHS (11.2.2).
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, f"{name} with an Additional Header Segment")


def _no_data(raw: RawPdu, name: str) -> None:
    # TMF Request/Response, Logout Request/Response, SNACK and R2T: "For this PDU TotalAHSLength and
    # DataSegmentLength MUST be 0" (11.5.2, 11.6.3, 11.14.2, 11.15.2, 11.16.2, 11.8).
    if len(raw.data):
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, f"{name} with a data segment")


def _decode_nop_out(raw: RawPdu) -> NopOut:
    _no_ahs(raw, "NOP-Out")
    b0, _f, _, _, lun, itt, ttt, cmdsn, exp_statsn = _S_NOP_OUT.unpack_from(raw.bhs)
    immediate = bool(b0 & _IMMEDIATE)
    # 11.18: a NOP-Out that answers a NOP-In (valid TTT) has ITT 0xffffffff; a NOP-Out with ITT 0xffffffff
    # carries no CmdSN and MUST be immediate. Both tags reserved means nothing to answer and nothing to ping.
    if itt == RESERVED_TAG and not immediate:
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "NOP-Out with reserved ITT must be immediate")
    return NopOut(
        itt=itt, cmdsn=cmdsn, exp_statsn=exp_statsn, ttt=ttt, lun=lun, immediate=immediate, data=raw.data
    )


def _parse_command_ahs(ahs: bytes | memoryview) -> tuple[bytes, int | None]:
    """Extended CDB bytes and the bidirectional read length from the AHS area (11.2.2)."""
    ext_cdb: bytes | None = None
    bidi: int | None = None
    off = 0
    total = len(ahs)
    while off < total:
        if total - off < 4:
            raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "truncated AHS header")
        ahs_len, ahs_type, _ = _S_AHS_HEADER.unpack_from(ahs, off)
        ahs_type &= 0x3F  # bits 0-1 (the two most significant) are reserved
        size = 3 + ahs_len
        size += pad_length(size)
        if off + size > total:
            raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "AHS longer than TotalAHSLength")
        if ahs_type == AHS_EXTENDED_CDB:
            if ext_cdb is not None:
                raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "duplicate extended CDB AHS")
            # AHSLength = CDBLength - 15; the AHS "MUST NOT be used if the CDBLength is less than 17".
            if ahs_len < 2 or ahs_len - 1 + _CDB_IN_BHS > MAX_CDB_LENGTH:
                raise PduDecodeError(RejectReason.PROTOCOL_ERROR, f"extended CDB AHSLength {ahs_len} invalid")
            ext_cdb = bytes(ahs[off + 4 : off + 3 + ahs_len])
        elif ahs_type == AHS_BIDI_READ_LENGTH:
            if bidi is not None:
                raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "duplicate bidirectional read length AHS")
            if ahs_len != 5:
                raise PduDecodeError(
                    RejectReason.PROTOCOL_ERROR, f"bidirectional read length AHSLength {ahs_len} != 5"
                )
            bidi = int(_S_U32.unpack_from(ahs, off + 4)[0])
        else:
            # As the Linux target does: an AHS type we do not implement -> "Command not supported".
            raise PduDecodeError(RejectReason.COMMAND_NOT_SUPPORTED, f"AHS type {ahs_type} not supported")
        off += size
    return ext_cdb or b"", bidi


#: TaskAttribute by value (a tuple index is cheaper than the enum call on the hot path)
_TASK_ATTRIBUTES: tuple[TaskAttribute, ...] = tuple(TaskAttribute(v) for v in range(TaskAttribute.ACA + 1))


def _decode_scsi_command(raw: RawPdu) -> ScsiCommand:
    b0, flags, _, _, lun, itt, edtl, cmdsn, exp_statsn, cdb16 = _S_SCSI_COMMAND.unpack_from(raw.bhs)
    final = bool(flags & _F)
    read = bool(flags & _CMD_R)
    write = bool(flags & _CMD_W)
    attr_value = flags & _CMD_ATTR
    if attr_value > TaskAttribute.ACA:
        raise PduDecodeError(RejectReason.INVALID_PDU_FIELD, f"reserved task attribute {attr_value}")
    data = raw.data
    # 11.3.1.1: F must be 1 unless unsolicited Data-Out PDUs follow, which needs W (the Linux target rejects
    # this combination with a protocol error). Immediate data is write data, so it also needs W.
    if not final and not write:
        raise PduDecodeError(RejectReason.INVALID_PDU_FIELD, "SCSI Command with neither F nor W set")
    if len(data) and not write:
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "immediate data on a command without W bit")
    # 11.3.1.1: R and/or W MUST be set when the Expected Data Transfer Length is nonzero (they MAY be set when
    # it is 0; the transport treats such a command as one without data).
    if edtl and not (read or write):
        raise PduDecodeError(
            RejectReason.INVALID_PDU_FIELD, "Expected Data Transfer Length without R or W bit"
        )
    if raw.ahs:
        ext_cdb, bidi = _parse_command_ahs(raw.ahs)
        cdb = cdb16 + ext_cdb if ext_cdb else cdb16
    else:
        cdb, bidi = cdb16, None
    return ScsiCommand(
        itt=itt, cmdsn=cmdsn, exp_statsn=exp_statsn, cdb=cdb, expected_data_length=edtl, lun=lun, read=read,
        write=write, final=final, attr=_TASK_ATTRIBUTES[attr_value], immediate=bool(b0 & _IMMEDIATE),
        bidi_read_length=bidi, data=data,
    )  # fmt: skip


def _decode_tmf_request(raw: RawPdu) -> TaskMgmtRequest:
    _no_ahs(raw, "Task Management Request")
    _no_data(raw, "Task Management Request")
    b0, f, _, _, lun, itt, rtt, cmdsn, exp_statsn, ref_cmdsn, exp_datasn = _S_TMF_REQUEST.unpack_from(raw.bhs)
    return TaskMgmtRequest(
        itt=itt, cmdsn=cmdsn, exp_statsn=exp_statsn, function=f & 0x7F, lun=lun, rtt=rtt, ref_cmdsn=ref_cmdsn,
        exp_datasn=exp_datasn, immediate=bool(b0 & _IMMEDIATE),
    )  # fmt: skip


def _decode_login_flags(flags: int, name: str) -> tuple[bool, bool, int, int]:
    transit = bool(flags & _T)
    cont = bool(flags & _C)
    if transit and cont:
        # 11.12.2: "If the T bit is set to 1, the C bit MUST be 0" (answered with Login status 0x0200).
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, f"{name} with both T and C bits set")
    return transit, cont, (flags >> 2) & 3, flags & 3


def _decode_login_request(raw: RawPdu) -> LoginRequest:
    _no_ahs(raw, "Login Request")
    _, flags, vmax, vmin, _, isid_tsih, itt, cid, cmdsn, exp_statsn = _S_LOGIN_REQUEST.unpack_from(raw.bhs)
    transit, cont, csg, nsg = _decode_login_flags(flags, "Login Request")
    return LoginRequest(
        itt=itt, isid=isid_tsih >> 16, tsih=isid_tsih & 0xFFFF, cid=cid, cmdsn=cmdsn, exp_statsn=exp_statsn,
        csg=csg, nsg=nsg, transit=transit, cont=cont, version_max=vmax, version_min=vmin, data=raw.data,
    )  # fmt: skip


def _decode_text_flags(flags: int, name: str) -> tuple[bool, bool]:
    final = bool(flags & _F)
    cont = bool(flags & _C)
    if final and cont:
        # 11.10.2 / 11.11.2: "If the C bit is set to 1, the F bit MUST be set to 0".
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, f"{name} with both F and C bits set")
    return final, cont


def _decode_text_request(raw: RawPdu) -> TextRequest:
    _no_ahs(raw, "Text Request")
    b0, flags, _, _, lun, itt, ttt, cmdsn, exp_statsn = _S_TEXT_REQUEST.unpack_from(raw.bhs)
    final, cont = _decode_text_flags(flags, "Text Request")
    return TextRequest(
        itt=itt, cmdsn=cmdsn, exp_statsn=exp_statsn, ttt=ttt, lun=lun, final=final, cont=cont,
        immediate=bool(b0 & _IMMEDIATE), data=raw.data,
    )  # fmt: skip


def _decode_data_out(raw: RawPdu) -> DataOut:
    _no_ahs(raw, "Data-Out")
    _, flags, _, _, lun, itt, ttt, exp_statsn, datasn, offset = _S_DATA_OUT.unpack_from(raw.bhs)
    return DataOut(
        itt=itt, ttt=ttt, exp_statsn=exp_statsn, datasn=datasn, buffer_offset=offset, lun=lun,
        final=bool(flags & _F), data=raw.data,
    )  # fmt: skip


def _decode_logout_request(raw: RawPdu) -> LogoutRequest:
    _no_ahs(raw, "Logout Request")
    _no_data(raw, "Logout Request")
    b0, flags, _, _, itt, cid, cmdsn, exp_statsn = _S_LOGOUT_REQUEST.unpack_from(raw.bhs)
    return LogoutRequest(
        itt=itt, cmdsn=cmdsn, exp_statsn=exp_statsn, reason=flags & 0x7F, cid=cid,
        immediate=bool(b0 & _IMMEDIATE),
    )  # fmt: skip


def _decode_snack(raw: RawPdu) -> SnackRequest:
    _no_ahs(raw, "SNACK Request")
    _no_data(raw, "SNACK Request")
    _, flags, _, _, lun, itt, ttt, exp_statsn, begrun, runlength = _S_SNACK.unpack_from(raw.bhs)
    return SnackRequest(
        itt=itt,
        exp_statsn=exp_statsn,
        type=flags & 0x0F,
        ttt=ttt,
        lun=lun,
        begrun=begrun,
        runlength=runlength,
    )


def _decode_nop_in(raw: RawPdu) -> NopIn:
    _no_ahs(raw, "NOP-In")
    _, _, _, _, lun, itt, ttt, statsn, exp_cmdsn, max_cmdsn = _S_NOP_IN.unpack_from(raw.bhs)
    return NopIn(
        itt=itt, ttt=ttt, statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, lun=lun, data=raw.data
    )


def _decode_scsi_response(raw: RawPdu) -> ScsiResponse:
    _no_ahs(raw, "SCSI Response")
    (_, flags, response, status, _, itt, snack, statsn, exp_cmdsn, max_cmdsn, exp_datasn, bidi_res, res) = (
        _S_SCSI_RESPONSE.unpack_from(raw.bhs)
    )
    overflow = bool(flags & _OVERFLOW)
    underflow = bool(flags & _UNDERFLOW)
    bidi_overflow = bool(flags & _RSP_BIDI_OVERFLOW)
    bidi_underflow = bool(flags & _RSP_BIDI_UNDERFLOW)
    if (overflow and underflow) or (bidi_overflow and bidi_underflow):
        # 11.4.5: "Bits O and U and bits o and u are mutually exclusive".
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "SCSI Response with both overflow and underflow")
    return ScsiResponse(
        itt=itt, statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, status=status, response=response,
        exp_datasn=exp_datasn, residual=res, bidi_residual=bidi_res, overflow=overflow, underflow=underflow,
        bidi_overflow=bidi_overflow, bidi_underflow=bidi_underflow, snack_tag=snack, data=raw.data,
    )  # fmt: skip


def _decode_tmf_response(raw: RawPdu) -> TaskMgmtResponse:
    _no_ahs(raw, "Task Management Response")
    _no_data(raw, "Task Management Response")
    _, _, response, _, _, itt, statsn, exp_cmdsn, max_cmdsn = _S_TMF_RESPONSE.unpack_from(raw.bhs)
    return TaskMgmtResponse(
        itt=itt, statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, response=response
    )


def _decode_login_response(raw: RawPdu) -> LoginResponse:
    _no_ahs(raw, "Login Response")
    (_, flags, vmax, vact, _, isid_tsih, itt, statsn, exp_cmdsn, max_cmdsn, s_class, s_detail) = (
        _S_LOGIN_RESPONSE.unpack_from(raw.bhs)
    )
    transit, cont, csg, nsg = _decode_login_flags(flags, "Login Response")
    return LoginResponse(
        itt=itt, isid=isid_tsih >> 16, tsih=isid_tsih & 0xFFFF, statsn=statsn, exp_cmdsn=exp_cmdsn,
        max_cmdsn=max_cmdsn, csg=csg, nsg=nsg, transit=transit, cont=cont, version_max=vmax,
        version_active=vact, status_class=s_class, status_detail=s_detail, data=raw.data,
    )  # fmt: skip


def _decode_text_response(raw: RawPdu) -> TextResponse:
    _no_ahs(raw, "Text Response")
    _, flags, _, _, lun, itt, ttt, statsn, exp_cmdsn, max_cmdsn = _S_TEXT_RESPONSE.unpack_from(raw.bhs)
    final, cont = _decode_text_flags(flags, "Text Response")
    return TextResponse(
        itt=itt, statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, ttt=ttt, lun=lun, final=final,
        cont=cont, data=raw.data,
    )  # fmt: skip


def _decode_data_in(raw: RawPdu) -> DataIn:
    _no_ahs(raw, "Data-In")
    (_, flags, _, status, _, lun, itt, ttt, statsn, exp_cmdsn, max_cmdsn, datasn, offset, residual) = (
        _S_DATA_IN.unpack_from(raw.bhs)
    )
    final = bool(flags & _F)
    status_present = bool(flags & _DATAIN_STATUS)
    overflow = bool(flags & _OVERFLOW)
    underflow = bool(flags & _UNDERFLOW)
    if status_present and not final:
        # 11.7.4: "If the S bit is set to 1, the F bit MUST also be set to 1".
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "Data-In with S bit but not F bit")
    if overflow and underflow:
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, "Data-In with both O and U bits")
    if not status_present:
        statsn = 0
        status = 0
    return DataIn(
        itt=itt, datasn=datasn, buffer_offset=offset, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, statsn=statsn,
        ttt=ttt, lun=lun, final=final, ack=bool(flags & _DATAIN_ACK), status_present=status_present,
        status=status, overflow=overflow, underflow=underflow, residual=residual, data=raw.data,
    )  # fmt: skip


def _decode_logout_response(raw: RawPdu) -> LogoutResponse:
    _no_ahs(raw, "Logout Response")
    _no_data(raw, "Logout Response")
    (_, _, response, _, _, itt, statsn, exp_cmdsn, max_cmdsn, t2w, t2r) = _S_LOGOUT_RESPONSE.unpack_from(
        raw.bhs
    )
    return LogoutResponse(
        itt=itt, statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, response=response, time2wait=t2w,
        time2retain=t2r,
    )  # fmt: skip


def _decode_r2t(raw: RawPdu) -> R2T:
    _no_ahs(raw, "R2T")
    _no_data(raw, "R2T")
    (_, _, _, _, lun, itt, ttt, statsn, exp_cmdsn, max_cmdsn, r2tsn, offset, desired) = _S_R2T.unpack_from(
        raw.bhs
    )
    return R2T(
        itt=itt, ttt=ttt, statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, r2tsn=r2tsn,
        buffer_offset=offset, desired_length=desired, lun=lun,
    )  # fmt: skip


def _decode_async(raw: RawPdu) -> AsyncMessage:
    _no_ahs(raw, "Async Message")
    (_, _, _, _, lun, _itt, statsn, exp_cmdsn, max_cmdsn, event, vcode, p1, p2, p3) = _S_ASYNC.unpack_from(
        raw.bhs
    )
    return AsyncMessage(
        statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, async_event=event, async_vcode=vcode,
        parameter1=p1, parameter2=p2, parameter3=p3, lun=lun, data=raw.data,
    )  # fmt: skip


def _decode_reject(raw: RawPdu) -> Reject:
    _no_ahs(raw, "Reject")
    _, _, reason, _, _, _itt, statsn, exp_cmdsn, max_cmdsn, datasn = _S_REJECT.unpack_from(raw.bhs)
    return Reject(
        reason=reason, statsn=statsn, exp_cmdsn=exp_cmdsn, max_cmdsn=max_cmdsn, datasn_r2tsn=datasn,
        data=raw.data,
    )  # fmt: skip


_DECODERS: dict[int, Callable[[RawPdu], Pdu]] = {
    Opcode.NOP_OUT: _decode_nop_out,
    Opcode.SCSI_COMMAND: _decode_scsi_command,
    Opcode.TASK_MGMT_REQUEST: _decode_tmf_request,
    Opcode.LOGIN_REQUEST: _decode_login_request,
    Opcode.TEXT_REQUEST: _decode_text_request,
    Opcode.DATA_OUT: _decode_data_out,
    Opcode.LOGOUT_REQUEST: _decode_logout_request,
    Opcode.SNACK_REQUEST: _decode_snack,
    Opcode.NOP_IN: _decode_nop_in,
    Opcode.SCSI_RESPONSE: _decode_scsi_response,
    Opcode.TASK_MGMT_RESPONSE: _decode_tmf_response,
    Opcode.LOGIN_RESPONSE: _decode_login_response,
    Opcode.TEXT_RESPONSE: _decode_text_response,
    Opcode.DATA_IN: _decode_data_in,
    Opcode.LOGOUT_RESPONSE: _decode_logout_response,
    Opcode.R2T: _decode_r2t,
    Opcode.ASYNC_MESSAGE: _decode_async,
    Opcode.REJECT: _decode_reject,
}

_INITIATOR_OPCODE_LIMIT = 0x20  # 11.2.1.2: initiator opcodes 0x00-0x1f, target opcodes 0x20-0x3f


def decode_pdu(raw: RawPdu, *, from_initiator: bool | None = None) -> Pdu:
    """Decode one framed PDU (either direction) into its dataclass.

    `from_initiator=True` (the target's receive side) rejects target opcodes with PROTOCOL_ERROR and
    `from_initiator=False` (an initiator's receive side) rejects initiator opcodes; None accepts both.
    Unknown opcodes (including the vendor-specific 0x1c-0x1e) raise COMMAND_NOT_SUPPORTED.
    """
    if len(raw.bhs) != BHS_LENGTH:
        raise PduDecodeError(RejectReason.PROTOCOL_ERROR, f"BHS of {len(raw.bhs)} bytes")
    opcode = raw.bhs[0] & _OPCODE_MASK
    if from_initiator is not None and (opcode < _INITIATOR_OPCODE_LIMIT) != from_initiator:
        raise PduDecodeError(
            RejectReason.PROTOCOL_ERROR, f"opcode {opcode:#04x} not valid from the {_peer(from_initiator)}"
        )
    decoder = _DECODERS.get(opcode)
    if decoder is None:
        raise PduDecodeError(RejectReason.COMMAND_NOT_SUPPORTED, f"unsupported opcode {opcode:#04x}")
    return decoder(raw)


def _peer(from_initiator: bool) -> str:
    return "initiator" if from_initiator else "target"
