"""Byte-literal vectors for every PDU type (RFC 7143 section 11), both directions, plus decode validation."""

from __future__ import annotations

import pytest

from target.pdu import codec
from target.pdu.framing import PduReader, RawPdu
from target.pdu.pdus import (
    R2T,
    RESERVED_TAG,
    AsyncEvent,
    AsyncMessage,
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutReason,
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
    SnackType,
    Stage,
    TaskAttribute,
    TaskMgmtRequest,
    TaskMgmtResponse,
    TextRequest,
    TextResponse,
    TmfFunction,
    TmfResponse,
)


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def frame(wire: bytes, **kwargs: bool) -> RawPdu:
    reader = PduReader(max_data_segment_length=1 << 20, **kwargs)
    reader.feed(wire)
    raw = reader.next_pdu()
    assert raw is not None
    assert reader.buffered == 0
    return raw


def bhs(b0: int, b1: int = 0x80, rest: bytes = b"") -> bytes:
    """A 48-byte BHS with the given first two bytes and bytes 2.. from `rest` (zero-filled)."""
    out = bytearray(48)
    out[0] = b0
    out[1] = b1
    out[2 : 2 + len(rest)] = rest
    return bytes(out)


LOGIN_TEXT = (
    b"InitiatorName=iqn.2004-10.com.ubuntu:01:4d5e6f7a8b9c\0InitiatorAlias=client1\0"
    b"TargetName=iqn.2003-01.org.linux-iscsi.lab:sn.1234\0SessionType=Normal\0AuthMethod=None\0"
)
SENSE = h("0012 70000500 0000000a 00000000 24000000 0000")
TEXT_RESPONSE_DATA = b"TargetName=iqn.2024-01.lab.sanlab:t1\0TargetAddress=127.0.0.1:3260,1\0"
REJECTED_BHS = bhs(0x01, 0x21)

VECTORS: list[tuple[str, Pdu, bytes]] = [
    (
        "nop-out ping with data",
        NopOut(itt=0x10, cmdsn=5, exp_statsn=7, immediate=True, data=b"ping"),
        h("40800000 00000004 00000000 00000000 00000010 ffffffff 00000005 00000007") + bytes(16) + b"ping",
    ),
    (
        "nop-out answering a nop-in",
        NopOut(itt=RESERVED_TAG, ttt=0x1234, cmdsn=5, exp_statsn=8, immediate=True),
        h("40800000 00000000 00000000 00000000 ffffffff 00001234 00000005 00000008") + bytes(16),
    ),
    (
        "scsi command READ(10) on LUN 1",
        ScsiCommand(
            itt=0x2A,
            cmdsn=0x100,
            exp_statsn=0x200,
            cdb=h("28000000 00100000 08000000 00000000"),
            expected_data_length=4096,
            lun=0x0001_0000_0000_0000,
            read=True,
        ),
        h(
            "01c10000 00000000 00010000 00000000 0000002a 00001000 00000100 00000200"
            "28000000 00100000 08000000 00000000"
        ),
    ),
    (
        "scsi command WRITE(10) with padded immediate data, unsolicited Data-Out follows (F=0)",
        ScsiCommand(
            itt=1,
            cmdsn=2,
            exp_statsn=3,
            cdb=h("2a000000 00000000 02000000 00000000"),
            expected_data_length=1024,
            write=True,
            final=False,
            data=b"abcdef",
        ),
        h(
            "01210000 00000006 00000000 00000000 00000001 00000400 00000002 00000003"
            "2a000000 00000000 02000000 00000000"
        )
        + b"abcdef\0\0",
    ),
    (
        "scsi command READ(32): 32-byte CDB with the extended CDB AHS",
        ScsiCommand(
            itt=7,
            cmdsn=0x10,
            exp_statsn=0x11,
            cdb=h("7f000000 00000018 00090000 00000000 00000020 00000000 00000000 00000008"),
            expected_data_length=4096,
            read=True,
        ),
        h(
            "01c10000 05000000 00000000 00000000 00000007 00001000 00000010 00000011"
            "7f000000 00000018 00090000 00000000"
            "00110100 00000020 00000000 00000000 00000008"
        ),
    ),
    (
        "scsi command 20-byte CDB: extended CDB AHS padded",
        ScsiCommand(itt=3, cmdsn=4, exp_statsn=5, cdb=bytes(range(1, 21)), attr=TaskAttribute.ORDERED),
        h(
            "01820000 02000000 00000000 00000000 00000003 00000000 00000004 00000005"
            "0102030405060708090a0b0c0d0e0f10"
            "00050100 11121314"
        ),
    ),
    (
        "bidirectional XDWRITEREAD(10) with the read length AHS",
        ScsiCommand(
            itt=8,
            cmdsn=0x12,
            exp_statsn=0x13,
            cdb=h("53000000 00000000 01000000 00000000"),
            expected_data_length=512,
            read=True,
            write=True,
            bidi_read_length=512,
        ),
        h(
            "01e10000 02000000 00000000 00000000 00000008 00000200 00000012 00000013"
            "53000000 00000000 01000000 00000000"
            "00050200 00000200"
        ),
    ),
    (
        "task management ABORT TASK",
        TaskMgmtRequest(
            itt=0x30,
            cmdsn=0x14,
            exp_statsn=0x15,
            function=TmfFunction.ABORT_TASK,
            lun=0x0001_0000_0000_0000,
            rtt=0x2A,
            ref_cmdsn=0x13,
            immediate=True,
        ),
        h(
            "42810000 00000000 00010000 00000000 00000030 0000002a 00000014 00000015"
            "00000013 00000000 00000000 00000000"
        ),
    ),
    (
        "login request as open-iscsi sends it (security -> operational, AuthMethod=None)",
        LoginRequest(
            itt=0,
            isid=0x00023D000001,
            tsih=0,
            cid=0,
            cmdsn=1,
            exp_statsn=0,
            csg=Stage.SECURITY,
            nsg=Stage.OPERATIONAL,
            transit=True,
            data=LOGIN_TEXT,
        ),
        h("43810000 000000a2 00023d00 00010000 00000000 00000000 00000001 00000000")
        + bytes(16)
        + LOGIN_TEXT
        + b"\0\0",
    ),
    (
        "text request SendTargets=All",
        TextRequest(itt=1, cmdsn=1, exp_statsn=1, data=b"SendTargets=All\0"),
        h("04800000 00000010 00000000 00000000 00000001 ffffffff 00000001 00000001")
        + bytes(16)
        + b"SendTargets=All\0",
    ),
    (
        "text request continued (C=1, F=0)",
        TextRequest(itt=2, cmdsn=3, exp_statsn=4, final=False, cont=True, immediate=True, data=b"X-a=b"),
        h("44400000 00000005 00000000 00000000 00000002 ffffffff 00000003 00000004")
        + bytes(16)
        + b"X-a=b\0\0\0",
    ),
    (
        "data-out answering an R2T, final",
        DataOut(
            itt=1,
            ttt=0xABC,
            exp_statsn=3,
            datasn=0,
            buffer_offset=0x400,
            lun=0x0001_0000_0000_0000,
            final=True,
            data=b"12345678",
        ),
        h(
            "05800000 00000008 00010000 00000000 00000001 00000abc 00000000 00000003"
            "00000000 00000000 00000400 00000000"
        )
        + b"12345678",
    ),
    (
        "logout request close session",
        LogoutRequest(itt=9, cmdsn=0x20, exp_statsn=0x21, reason=LogoutReason.CLOSE_SESSION, immediate=True),
        h("46800000 00000000 00000000 00000000 00000009 00000000 00000020 00000021") + bytes(16),
    ),
    (
        "logout request remove connection 2 for recovery",
        LogoutRequest(itt=9, cmdsn=0x20, exp_statsn=0x21, reason=LogoutReason.REMOVE_FOR_RECOVERY, cid=2),
        h("06820000 00000000 00000000 00000000 00000009 00020000 00000020 00000021") + bytes(16),
    ),
    (
        "status SNACK",
        SnackRequest(itt=RESERVED_TAG, exp_statsn=5, type=SnackType.STATUS, begrun=3, runlength=2),
        h(
            "10810000 00000000 00000000 00000000 ffffffff ffffffff 00000000 00000005"
            "00000000 00000000 00000003 00000002"
        ),
    ),
    (
        "nop-in ping from the target",
        NopIn(itt=RESERVED_TAG, ttt=0x77, statsn=0x10, exp_cmdsn=0x20, max_cmdsn=0x40),
        h("20800000 00000000 00000000 00000000 ffffffff 00000077 00000010 00000020 00000040") + bytes(12),
    ),
    (
        "scsi response CHECK CONDITION with sense data",
        ScsiResponse(itt=0x2A, statsn=0x10, exp_cmdsn=0x11, max_cmdsn=0x50, status=0x02, data=SENSE),
        h(
            "21800002 00000014 00000000 00000000 0000002a 00000000 00000010 00000011"
            "00000050 00000000 00000000 00000000"
        )
        + SENSE,
    ),
    (
        "scsi response GOOD with residual underflow",
        ScsiResponse(
            itt=0x2B, statsn=0x11, exp_cmdsn=0x12, max_cmdsn=0x51, status=0, underflow=True, residual=0x200
        ),
        h(
            "21820000 00000000 00000000 00000000 0000002b 00000000 00000011 00000012"
            "00000051 00000000 00000000 00000200"
        ),
    ),
    (
        "scsi response bidirectional: read overflow, write underflow, target failure",
        ScsiResponse(
            itt=1,
            statsn=2,
            exp_cmdsn=3,
            max_cmdsn=4,
            status=0,
            response=1,
            exp_datasn=5,
            residual=6,
            bidi_residual=7,
            bidi_overflow=True,
            underflow=True,
            snack_tag=8,
        ),
        h(
            "21920100 00000000 00000000 00000000 00000001 00000008 00000002 00000003"
            "00000004 00000005 00000007 00000006"
        ),
    ),
    (
        "task management response: task does not exist",
        TaskMgmtResponse(
            itt=0x30, statsn=0x17, exp_cmdsn=0x18, max_cmdsn=0x58, response=TmfResponse.TASK_DOES_NOT_EXIST
        ),
        h("22800100 00000000 00000000 00000000 00000030 00000000 00000017 00000018 00000058") + bytes(12),
    ),
    (
        "login response: operational -> full feature, TSIH assigned",
        LoginResponse(
            itt=0,
            isid=0x00023D000001,
            tsih=1,
            statsn=0,
            exp_cmdsn=1,
            max_cmdsn=1,
            csg=Stage.OPERATIONAL,
            nsg=Stage.FULL_FEATURE,
            transit=True,
            data=b"HeaderDigest=None\0DataDigest=None\0",
        ),
        h("23870000 00000022 00023d00 00010001 00000000 00000000 00000000 00000001 00000001")
        + bytes(12)
        + b"HeaderDigest=None\0DataDigest=None\0\0\0",
    ),
    (
        "login response: initiator error, target not found",
        LoginResponse(
            itt=5,
            isid=0x80123456789A,
            tsih=0,
            statsn=0,
            exp_cmdsn=1,
            max_cmdsn=1,
            csg=0,
            nsg=0,
            status_class=2,
            status_detail=3,
        ),
        h("23000000 00000000 80123456 789a0000 00000005 00000000 00000000 00000001 00000001 0203")
        + bytes(10),
    ),
    (
        "text response to SendTargets",
        TextResponse(itt=1, statsn=2, exp_cmdsn=2, max_cmdsn=3, data=TEXT_RESPONSE_DATA),
        h("24800000 00000044 00000000 00000000 00000001 ffffffff 00000002 00000002 00000003")
        + bytes(12)
        + TEXT_RESPONSE_DATA,
    ),
    (
        "data-in with phase-collapsed status (S) and residual underflow",
        DataIn(
            itt=0x2A,
            datasn=0,
            buffer_offset=0,
            exp_cmdsn=0x11,
            max_cmdsn=0x50,
            statsn=0x10,
            final=True,
            status_present=True,
            status=0,
            underflow=True,
            residual=0x1FB,
            data=b"hello",
        ),
        h(
            "25830000 00000005 00000000 00000000 0000002a ffffffff 00000010 00000011"
            "00000050 00000000 00000000 000001fb"
        )
        + b"hello\0\0\0",
    ),
    (
        "data-in middle of a sequence (no F, no S)",
        DataIn(itt=0x2A, datasn=1, buffer_offset=0x2000, exp_cmdsn=0x11, max_cmdsn=0x50, data=b"data"),
        h(
            "25000000 00000004 00000000 00000000 0000002a ffffffff 00000000 00000011"
            "00000050 00000001 00002000 00000000"
        )
        + b"data",
    ),
    (
        "data-in final with A bit (DataACK requested) on LUN 2",
        DataIn(
            itt=3,
            datasn=2,
            buffer_offset=8,
            exp_cmdsn=4,
            max_cmdsn=5,
            ttt=0x99,
            lun=0x0002_0000_0000_0000,
            final=True,
            ack=True,
            data=b"abcd",
        ),
        h(
            "25c00000 00000004 00020000 00000000 00000003 00000099 00000000 00000004"
            "00000005 00000002 00000008 00000000"
        )
        + b"abcd",
    ),
    (
        "logout response",
        LogoutResponse(itt=9, statsn=0x30, exp_cmdsn=0x21, max_cmdsn=0x60, time2wait=2, time2retain=20),
        h(
            "26800000 00000000 00000000 00000000 00000009 00000000 00000030 00000021"
            "00000060 00000000 00020014 00000000"
        ),
    ),
    (
        "R2T",
        R2T(
            itt=1,
            ttt=0xABC,
            statsn=0x12,
            exp_cmdsn=0x13,
            max_cmdsn=0x53,
            r2tsn=0,
            buffer_offset=0x400,
            desired_length=0x10000,
            lun=0x0001_0000_0000_0000,
        ),
        h(
            "31800000 00000000 00010000 00000000 00000001 00000abc 00000012 00000013"
            "00000053 00000000 00000400 00010000"
        ),
    ),
    (
        "async message: target requests logout within 5 seconds",
        AsyncMessage(
            statsn=0x40, exp_cmdsn=0x41, max_cmdsn=0x80, async_event=AsyncEvent.LOGOUT_REQUEST, parameter3=5
        ),
        h(
            "32800000 00000000 00000000 00000000 ffffffff 00000000 00000040 00000041"
            "00000080 01000000 00000005 00000000"
        ),
    ),
    (
        "async message: SCSI async event with sense data",
        AsyncMessage(
            statsn=1,
            exp_cmdsn=2,
            max_cmdsn=3,
            async_event=AsyncEvent.SCSI_ASYNC_EVENT,
            lun=0x0003_0000_0000_0000,
            data=SENSE,
        ),
        h(
            "32800000 00000014 00030000 00000000 ffffffff 00000000 00000001 00000002"
            "00000003 00000000 00000000 00000000"
        )
        + SENSE,
    ),
    (
        "reject: protocol error, carrying the rejected BHS",
        Reject(
            reason=RejectReason.PROTOCOL_ERROR, statsn=0x10, exp_cmdsn=0x11, max_cmdsn=0x50, data=REJECTED_BHS
        ),
        h("3f800400 00000030 00000000 00000000 ffffffff 00000000 00000010 00000011 00000050")
        + bytes(12)
        + REJECTED_BHS,
    ),
]


@pytest.mark.parametrize(("name", "pdu", "wire"), VECTORS, ids=[v[0] for v in VECTORS])
def test_encode_matches_vector(name: str, pdu: Pdu, wire: bytes) -> None:
    assert codec.encode_pdu_bytes(pdu) == wire


@pytest.mark.parametrize(("name", "pdu", "wire"), VECTORS, ids=[v[0] for v in VECTORS])
def test_decode_matches_vector(name: str, pdu: Pdu, wire: bytes) -> None:
    raw = frame(wire)
    assert raw.opcode == pdu.opcode
    decoded = codec.decode_pdu(raw)
    assert decoded == pdu
    assert type(decoded) is type(pdu)


@pytest.mark.parametrize(("name", "pdu", "wire"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vectors_with_digests(name: str, pdu: Pdu, wire: bytes) -> None:
    out = codec.encode_pdu_bytes(pdu, header_digest=True, data_digest=True)
    raw = frame(out, header_digest=True, data_digest=True)
    assert raw.data_digest_ok
    assert codec.decode_pdu(raw) == pdu
    header_len = 48 + wire[4] * 4
    assert out[:header_len] == wire[:header_len]
    assert len(out) == len(wire) + 4 + (4 if len(getattr(pdu, "data", b"")) else 0)


def test_vector_table_covers_every_opcode() -> None:
    assert {pdu.opcode for _, pdu, _ in VECTORS} == set(Opcode)


def test_encode_segments_for_vectored_send() -> None:
    data = memoryview(b"x" * 13)
    pdu = DataIn(itt=1, datasn=0, buffer_offset=0, exp_cmdsn=1, max_cmdsn=2, data=data)
    segments = codec.encode_pdu(pdu)
    assert len(segments) == 3
    assert segments[1] is data  # the data segment is passed through, not copied
    assert segments[2] == b"\0\0\0"
    with_digest = codec.encode_pdu(pdu, header_digest=True, data_digest=True)
    assert len(with_digest[0]) == 52
    assert len(with_digest[2]) == 3 + 4
    no_data = codec.encode_pdu(R2T(1, 2, 3, 4, 5, 6, 7, 8))
    assert [len(s) for s in no_data] == [48]
    aligned = codec.encode_pdu(NopIn(1, 2, 3, 4, 5, data=b"abcd"))
    assert [len(s) for s in aligned] == [48, 4]


def test_rfc3720_read_command_header_digest() -> None:
    # RFC 3720 B.4: the 48-byte iSCSI READ command PDU has CRC32C "56 3a 96 d9" on the wire.
    wire = codec.encode_pdu_bytes(
        ScsiCommand(
            itt=0x14000000,
            cmdsn=0x14,
            exp_statsn=0x18,
            cdb=h("28000000 00000000 02000000 00000000"),
            expected_data_length=0x400,
            read=True,
            attr=TaskAttribute.UNTAGGED,
        ),
        header_digest=True,
    )
    assert wire[:48] == h(
        "01c00000 00000000 00000000 00000000 14000000 00000400 00000014 00000018"
        "28000000 00000000 02000000 00000000"
    )
    assert wire[48:] == h("563a96d9")


def test_data_in_without_status_zeroes_statsn_and_status() -> None:
    pdu = DataIn(itt=1, datasn=0, buffer_offset=0, exp_cmdsn=1, max_cmdsn=2, statsn=99, status=2, data=b"a")
    wire = codec.encode_pdu_bytes(pdu)
    assert wire[3] == 0
    assert wire[24:28] == bytes(4)
    decoded = codec.decode_pdu(frame(wire))
    assert isinstance(decoded, DataIn)
    assert (decoded.statsn, decoded.status, decoded.status_present) == (0, 0, False)


def test_login_request_always_immediate() -> None:
    wire = codec.encode_pdu_bytes(LoginRequest(1, 2, 3, 4, 5, 6, csg=1, nsg=3, transit=True))
    assert wire[0] == 0x43
    assert wire[1] == 0x87


def test_async_and_reject_use_reserved_itt() -> None:
    assert codec.encode_pdu_bytes(AsyncMessage(1, 2, 3, 4))[16:20] == b"\xff" * 4
    assert codec.encode_pdu_bytes(Reject(4, 1, 2, 3))[16:20] == b"\xff" * 4


def test_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        codec.encode_pdu_bytes(NopOut(itt=1 << 32, cmdsn=0, exp_statsn=0))
    with pytest.raises(ValueError):
        codec.encode_pdu_bytes(LoginRequest(0, 1 << 48, 0, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError):
        codec.encode_pdu_bytes(ScsiCommand(1, 1, 1, cdb=bytes(261)))
    with pytest.raises(TypeError):
        codec.encode_pdu_bytes("not a pdu")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- decode errors


def decode_error(wire: bytes, **kwargs: bool | None) -> codec.PduDecodeError:
    with pytest.raises(codec.PduDecodeError) as info:
        codec.decode_pdu(frame(wire), **kwargs)
    return info.value


@pytest.mark.parametrize("opcode", [0x07, 0x1C, 0x1D, 0x1E, 0x1F, 0x27, 0x3C])
def test_unknown_opcode_is_command_not_supported(opcode: int) -> None:
    err = decode_error(bhs(opcode))
    assert err.reason is RejectReason.COMMAND_NOT_SUPPORTED


def test_direction_check() -> None:
    target_pdu = codec.encode_pdu_bytes(NopIn(1, 2, 3, 4, 5))
    initiator_pdu = codec.encode_pdu_bytes(NopOut(1, 2, 3))
    assert decode_error(target_pdu, from_initiator=True).reason is RejectReason.PROTOCOL_ERROR
    assert decode_error(initiator_pdu, from_initiator=False).reason is RejectReason.PROTOCOL_ERROR
    assert isinstance(codec.decode_pdu(frame(initiator_pdu), from_initiator=True), NopOut)
    assert isinstance(codec.decode_pdu(frame(target_pdu), from_initiator=False), NopIn)


def test_bhs_must_be_48_bytes() -> None:
    with pytest.raises(codec.PduDecodeError) as info:
        codec.decode_pdu(RawPdu(bhs=b"\x00" * 47, ahs=b"", data=b""))
    assert info.value.reason is RejectReason.PROTOCOL_ERROR


def test_scsi_command_without_f_and_w() -> None:
    wire = codec.encode_pdu_bytes(ScsiCommand(1, 1, 1, cdb=bytes(16), read=True, expected_data_length=8))
    broken = bytearray(wire)
    broken[1] &= 0x7F  # clear F
    assert decode_error(bytes(broken)).reason is RejectReason.INVALID_PDU_FIELD


def test_scsi_command_length_without_direction() -> None:
    wire = bytearray(codec.encode_pdu_bytes(ScsiCommand(1, 1, 1, cdb=bytes(16), expected_data_length=512)))
    assert decode_error(bytes(wire)).reason is RejectReason.INVALID_PDU_FIELD


def test_scsi_command_rw_with_zero_length_is_tolerated() -> None:
    # RFC 7143 11.3.1.1: R and W MAY be 1 when the Expected Data Transfer Length is 0.
    pdu = ScsiCommand(1, 1, 1, cdb=bytes(16), read=True, write=True)
    assert codec.decode_pdu(frame(codec.encode_pdu_bytes(pdu))) == pdu


def test_scsi_command_immediate_data_needs_w() -> None:
    pdu = ScsiCommand(1, 1, 1, cdb=bytes(16), read=True, expected_data_length=4, data=b"abcd")
    assert decode_error(codec.encode_pdu_bytes(pdu)).reason is RejectReason.PROTOCOL_ERROR


@pytest.mark.parametrize("attr", [5, 6, 7])
def test_scsi_command_reserved_task_attribute(attr: int) -> None:
    wire = bytearray(codec.encode_pdu_bytes(ScsiCommand(1, 1, 1, cdb=bytes(16))))
    wire[1] = 0x80 | attr
    assert decode_error(bytes(wire)).reason is RejectReason.INVALID_PDU_FIELD


def with_ahs(base: ScsiCommand, ahs: bytes) -> bytes:
    wire = bytearray(codec.encode_pdu_bytes(base))
    assert len(ahs) % 4 == 0
    wire[4] = len(ahs) // 4
    return bytes(wire[:48]) + ahs + bytes(wire[48:])


PLAIN = ScsiCommand(1, 1, 1, cdb=bytes(16))


@pytest.mark.parametrize(
    ("ahs", "reason"),
    [
        (h("00010100"), RejectReason.PROTOCOL_ERROR),  # extended CDB AHS with no CDB bytes (LIO CVE fix)
        (h("00000100"), RejectReason.PROTOCOL_ERROR),  # AHSLength 0
        (h("00090100 00000000"), RejectReason.PROTOCOL_ERROR),  # runs past TotalAHSLength
        (h("00040200 00000000"), RejectReason.PROTOCOL_ERROR),  # bidi AHS with AHSLength != 5
        (h("00050200 00000010 00050200 00000010"), RejectReason.PROTOCOL_ERROR),  # duplicate bidi AHS
        (h("00020100 01000000 00020100 02000000"), RejectReason.PROTOCOL_ERROR),  # duplicate extended CDB
        (h("00050300 00000000"), RejectReason.COMMAND_NOT_SUPPORTED),  # reserved AHS type 3
        (h("00f60100") + bytes(244), RejectReason.PROTOCOL_ERROR),  # CDB of 261 bytes
    ],
)
def test_bad_ahs(ahs: bytes, reason: RejectReason) -> None:
    assert decode_error(with_ahs(PLAIN, ahs)).reason is reason


def test_ahs_type_reserved_bits_ignored_and_order_free() -> None:
    ahs = h("00050200 00000100") + h("00020140 aa000000")  # bidi first; ext CDB type byte has bit 6 set
    decoded = codec.decode_pdu(frame(with_ahs(PLAIN, ahs)))
    assert isinstance(decoded, ScsiCommand)
    assert decoded.cdb == bytes(16) + b"\xaa"
    assert decoded.bidi_read_length == 0x100


def test_longest_cdb_round_trips() -> None:
    pdu = ScsiCommand(
        1, 1, 1, cdb=bytes(i & 0xFF for i in range(260)), bidi_read_length=7, read=True, write=True
    )
    wire = codec.encode_pdu_bytes(pdu)
    assert wire[4] * 4 == 256
    assert codec.decode_pdu(frame(wire)) == pdu


def test_ahs_on_other_pdus_is_protocol_error() -> None:
    wire = bytearray(codec.encode_pdu_bytes(NopOut(1, 1, 1)))
    wire[4] = 2
    assert decode_error(bytes(wire[:48]) + h("00050200 00000000")).reason is RejectReason.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "pdu",
    [
        TaskMgmtRequest(1, 1, 1, function=TmfFunction.LOGICAL_UNIT_RESET),
        LogoutRequest(1, 1, 1, reason=0),
        SnackRequest(1, 1, type=0),
        R2T(1, 2, 3, 4, 5, 6, 7, 8),
        TaskMgmtResponse(1, 2, 3, 4, 0),
        LogoutResponse(1, 2, 3, 4),
    ],
)
def test_data_segment_on_pdus_without_one(pdu: Pdu) -> None:
    wire = bytearray(codec.encode_pdu_bytes(pdu))
    wire[7] = 4
    assert decode_error(bytes(wire) + b"abcd").reason is RejectReason.PROTOCOL_ERROR


def test_nop_out_with_reserved_itt_must_be_immediate() -> None:
    wire = codec.encode_pdu_bytes(NopOut(itt=RESERVED_TAG, ttt=5, cmdsn=1, exp_statsn=1))
    assert decode_error(wire).reason is RejectReason.PROTOCOL_ERROR


def test_text_final_and_continue() -> None:
    wire = bytearray(codec.encode_pdu_bytes(TextRequest(1, 1, 1)))
    wire[1] = 0xC0
    assert decode_error(bytes(wire)).reason is RejectReason.PROTOCOL_ERROR
    wire = bytearray(codec.encode_pdu_bytes(TextResponse(1, 1, 1, 1)))
    wire[1] = 0xC0
    assert decode_error(bytes(wire)).reason is RejectReason.PROTOCOL_ERROR


def test_login_transit_and_continue() -> None:
    wire = bytearray(codec.encode_pdu_bytes(LoginRequest(0, 1, 0, 0, 1, 0, csg=0, nsg=1)))
    wire[1] = 0xC1
    assert decode_error(bytes(wire)).reason is RejectReason.PROTOCOL_ERROR


def test_data_in_status_without_final() -> None:
    wire = bytearray(codec.encode_pdu_bytes(DataIn(1, 0, 0, 1, 1)))
    wire[1] = 0x01
    assert decode_error(bytes(wire)).reason is RejectReason.PROTOCOL_ERROR


def test_overflow_and_underflow_together() -> None:
    wire = bytearray(codec.encode_pdu_bytes(ScsiResponse(1, 1, 1, 1, 0)))
    wire[1] = 0x86
    assert decode_error(bytes(wire)).reason is RejectReason.PROTOCOL_ERROR
    wire[1] = 0x98
    assert decode_error(bytes(wire)).reason is RejectReason.PROTOCOL_ERROR
    wire = bytearray(codec.encode_pdu_bytes(DataIn(1, 0, 0, 1, 1, final=True, status_present=True)))
    wire[1] = 0x87
    assert decode_error(bytes(wire)).reason is RejectReason.PROTOCOL_ERROR


def test_reserved_fields_are_ignored() -> None:
    # RFC 7143 11.2: receivers ignore reserved bits and fields.
    wire = bytearray(codec.encode_pdu_bytes(NopOut(itt=1, cmdsn=2, exp_statsn=3)))
    wire[0] |= 0x80
    wire[2] = 0xFF
    wire[40] = 0xFF
    assert codec.decode_pdu(frame(bytes(wire))) == NopOut(itt=1, cmdsn=2, exp_statsn=3)


def test_unknown_tmf_function_and_logout_reason_kept_as_int() -> None:
    tmf = codec.decode_pdu(frame(codec.encode_pdu_bytes(TaskMgmtRequest(1, 1, 1, function=0x55))))
    assert isinstance(tmf, TaskMgmtRequest)
    assert tmf.function == 0x55
    logout = codec.decode_pdu(frame(codec.encode_pdu_bytes(LogoutRequest(1, 1, 1, reason=9))))
    assert isinstance(logout, LogoutRequest)
    assert logout.reason == 9


def test_decode_error_message() -> None:
    err = codec.PduDecodeError(RejectReason.PROTOCOL_ERROR, "boom")
    assert err.reason is RejectReason.PROTOCOL_ERROR
    assert err.message == "boom"
    assert "PROTOCOL_ERROR" in str(err)
