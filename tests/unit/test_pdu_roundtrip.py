"""Hypothesis: encode -> frame -> decode gives the same PDU, for every PDU class, with and without digests."""

from __future__ import annotations

import contextlib
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from target.pdu import codec
from target.pdu.framing import FramingError, PduReader, RawPdu
from target.pdu.pdus import (
    R2T,
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
    ScsiCommand,
    ScsiResponse,
    SnackRequest,
    TaskAttribute,
    TaskMgmtRequest,
    TaskMgmtResponse,
    TextRequest,
    TextResponse,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
b = st.booleans()
data = st.binary(max_size=70)
stage = st.integers(0, 3)


def exclusive_flags() -> st.SearchStrategy[tuple[bool, bool]]:
    """(overflow, underflow): never both (RFC 7143 11.4.5)."""
    return st.sampled_from([(False, False), (True, False), (False, True)])


def nop_out() -> st.SearchStrategy[NopOut]:
    return st.builds(
        lambda itt, imm, **kw: NopOut(itt=itt, immediate=imm or itt == 0xFFFFFFFF, **kw),
        itt=u32, imm=b, cmdsn=u32, exp_statsn=u32, ttt=u32, lun=u64, data=data,
    )  # fmt: skip


@st.composite
def scsi_command(draw: st.DrawFn) -> ScsiCommand:
    read, write = draw(b), draw(b)
    edtl = draw(u32) if (read or write) else 0
    return ScsiCommand(
        itt=draw(u32), cmdsn=draw(u32), exp_statsn=draw(u32),
        cdb=draw(st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=17, max_size=260))),
        expected_data_length=edtl, lun=draw(u64), read=read, write=write,
        final=draw(b) if write else True, attr=draw(st.sampled_from(TaskAttribute)), immediate=draw(b),
        bidi_read_length=draw(st.none() | u32), data=draw(data) if write else b"",
    )  # fmt: skip


@st.composite
def scsi_response(draw: st.DrawFn) -> ScsiResponse:
    over, under = draw(exclusive_flags())
    bover, bunder = draw(exclusive_flags())
    return ScsiResponse(
        itt=draw(u32), statsn=draw(u32), exp_cmdsn=draw(u32), max_cmdsn=draw(u32), status=draw(u8),
        response=draw(u8), exp_datasn=draw(u32), residual=draw(u32), bidi_residual=draw(u32), overflow=over,
        underflow=under, bidi_overflow=bover, bidi_underflow=bunder, snack_tag=draw(u32), data=draw(data),
    )  # fmt: skip


@st.composite
def data_in(draw: st.DrawFn) -> DataIn:
    status_present = draw(b)
    over, under = draw(exclusive_flags())
    return DataIn(
        itt=draw(u32), datasn=draw(u32), buffer_offset=draw(u32), exp_cmdsn=draw(u32), max_cmdsn=draw(u32),
        statsn=draw(u32) if status_present else 0, ttt=draw(u32), lun=draw(u64),
        final=True if status_present else draw(b), ack=draw(b), status_present=status_present,
        status=draw(u8) if status_present else 0, overflow=over, underflow=under, residual=draw(u32),
        data=draw(data),
    )  # fmt: skip


@st.composite
def text_flags(draw: st.DrawFn) -> tuple[bool, bool]:
    """(final, cont): C=1 requires F=0."""
    return draw(st.sampled_from([(True, False), (False, False), (False, True)]))


@st.composite
def login_flags(draw: st.DrawFn) -> tuple[bool, bool]:
    """(transit, cont): T=1 requires C=0."""
    return draw(st.sampled_from([(True, False), (False, False), (False, True)]))


@st.composite
def text_request(draw: st.DrawFn) -> TextRequest:
    final, cont = draw(text_flags())
    return TextRequest(
        itt=draw(u32), cmdsn=draw(u32), exp_statsn=draw(u32), ttt=draw(u32), lun=draw(u64), final=final,
        cont=cont, immediate=draw(b), data=draw(data),
    )  # fmt: skip


@st.composite
def text_response(draw: st.DrawFn) -> TextResponse:
    final, cont = draw(text_flags())
    return TextResponse(
        itt=draw(u32), statsn=draw(u32), exp_cmdsn=draw(u32), max_cmdsn=draw(u32), ttt=draw(u32),
        lun=draw(u64), final=final, cont=cont, data=draw(data),
    )  # fmt: skip


@st.composite
def login_request(draw: st.DrawFn) -> LoginRequest:
    transit, cont = draw(login_flags())
    return LoginRequest(
        itt=draw(u32), isid=draw(st.integers(0, (1 << 48) - 1)), tsih=draw(u16), cid=draw(u16),
        cmdsn=draw(u32), exp_statsn=draw(u32), csg=draw(stage), nsg=draw(stage), transit=transit, cont=cont,
        version_max=draw(u8), version_min=draw(u8), data=draw(data),
    )  # fmt: skip


@st.composite
def login_response(draw: st.DrawFn) -> LoginResponse:
    transit, cont = draw(login_flags())
    return LoginResponse(
        itt=draw(u32), isid=draw(st.integers(0, (1 << 48) - 1)), tsih=draw(u16), statsn=draw(u32),
        exp_cmdsn=draw(u32), max_cmdsn=draw(u32), csg=draw(stage), nsg=draw(stage), transit=transit,
        cont=cont, version_max=draw(u8), version_active=draw(u8), status_class=draw(u8),
        status_detail=draw(u8), data=draw(data),
    )  # fmt: skip


STRATEGIES: dict[Opcode, st.SearchStrategy] = {
    Opcode.NOP_OUT: nop_out(),
    Opcode.SCSI_COMMAND: scsi_command(),
    Opcode.TASK_MGMT_REQUEST: st.builds(
        TaskMgmtRequest,
        itt=u32,
        cmdsn=u32,
        exp_statsn=u32,
        function=st.integers(0, 0x7F),
        lun=u64,
        rtt=u32,
        ref_cmdsn=u32,
        exp_datasn=u32,
        immediate=b,
    ),
    Opcode.LOGIN_REQUEST: login_request(),
    Opcode.TEXT_REQUEST: text_request(),
    Opcode.DATA_OUT: st.builds(
        DataOut, itt=u32, ttt=u32, exp_statsn=u32, datasn=u32, buffer_offset=u32, lun=u64, final=b, data=data
    ),
    Opcode.LOGOUT_REQUEST: st.builds(
        LogoutRequest, itt=u32, cmdsn=u32, exp_statsn=u32, reason=st.integers(0, 0x7F), cid=u16, immediate=b
    ),
    Opcode.SNACK_REQUEST: st.builds(
        SnackRequest,
        itt=u32,
        exp_statsn=u32,
        type=st.integers(0, 15),
        ttt=u32,
        lun=u64,
        begrun=u32,
        runlength=u32,
    ),
    Opcode.NOP_IN: st.builds(
        NopIn, itt=u32, ttt=u32, statsn=u32, exp_cmdsn=u32, max_cmdsn=u32, lun=u64, data=data
    ),
    Opcode.SCSI_RESPONSE: scsi_response(),
    Opcode.TASK_MGMT_RESPONSE: st.builds(
        TaskMgmtResponse, itt=u32, statsn=u32, exp_cmdsn=u32, max_cmdsn=u32, response=u8
    ),
    Opcode.LOGIN_RESPONSE: login_response(),
    Opcode.TEXT_RESPONSE: text_response(),
    Opcode.DATA_IN: data_in(),
    Opcode.LOGOUT_RESPONSE: st.builds(
        LogoutResponse,
        itt=u32,
        statsn=u32,
        exp_cmdsn=u32,
        max_cmdsn=u32,
        response=u8,
        time2wait=u16,
        time2retain=u16,
    ),
    Opcode.R2T: st.builds(
        R2T,
        itt=u32,
        ttt=u32,
        statsn=u32,
        exp_cmdsn=u32,
        max_cmdsn=u32,
        r2tsn=u32,
        buffer_offset=u32,
        desired_length=u32,
        lun=u64,
    ),
    Opcode.ASYNC_MESSAGE: st.builds(
        AsyncMessage,
        statsn=u32,
        exp_cmdsn=u32,
        max_cmdsn=u32,
        async_event=u8,
        async_vcode=u8,
        parameter1=u16,
        parameter2=u16,
        parameter3=u16,
        lun=u64,
        data=data,
    ),
    Opcode.REJECT: st.builds(
        Reject, reason=u8, statsn=u32, exp_cmdsn=u32, max_cmdsn=u32, datasn_r2tsn=u32, data=data
    ),
}

any_pdu = st.one_of(*STRATEGIES.values())


def test_every_opcode_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(Opcode)


def round_trip(pdu: Pdu, header_digest: bool, data_digest: bool) -> Pdu:
    wire = codec.encode_pdu_bytes(pdu, header_digest=header_digest, data_digest=data_digest)
    assert len(wire) % 4 == 0
    reader = PduReader(max_data_segment_length=1 << 16, header_digest=header_digest, data_digest=data_digest)
    reader.feed(wire)
    raw = reader.next_pdu()
    assert raw is not None
    assert reader.at_boundary
    assert raw.data_digest_ok
    assert raw.opcode == pdu.opcode
    return codec.decode_pdu(raw, from_initiator=pdu.opcode < 0x20)


@settings(max_examples=400)
@given(any_pdu, st.booleans(), st.booleans())
def test_round_trip(pdu: Pdu, header_digest: bool, data_digest: bool) -> None:
    decoded = round_trip(pdu, header_digest, data_digest)
    assert type(decoded) is type(pdu)
    assert decoded == pdu


@given(any_pdu)
def test_encode_is_deterministic_and_segments_join(pdu: Pdu) -> None:
    segments = codec.encode_pdu(pdu, header_digest=True, data_digest=True)
    assert b"".join(segments) == codec.encode_pdu_bytes(pdu, header_digest=True, data_digest=True)
    assert len(segments[0]) % 4 == 0


@given(any_pdu)
def test_memoryview_data_encodes_like_bytes(pdu: Pdu) -> None:
    if not hasattr(pdu, "data"):
        return
    as_view = dataclasses.replace(pdu, data=memoryview(bytes(pdu.data)))  # type: ignore[arg-type]
    assert codec.encode_pdu_bytes(as_view, data_digest=True) == codec.encode_pdu_bytes(pdu, data_digest=True)


@settings(max_examples=300)
@given(st.binary(min_size=48, max_size=48), st.binary(max_size=64), st.binary(max_size=64))
def test_decode_never_crashes(bhs: bytes, ahs: bytes, payload: bytes) -> None:
    """Any framed bytes decode to a PDU or raise PduDecodeError, nothing else."""
    ahs = ahs[: len(ahs) // 4 * 4]
    try:
        pdu = codec.decode_pdu(RawPdu(bhs=bhs, ahs=ahs, data=payload))
    except codec.PduDecodeError as exc:
        assert exc.reason in set(exc.reason.__class__)
    else:
        assert pdu.opcode == bhs[0] & 0x3F


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_reader_on_garbage_never_crashes(garbage: bytes) -> None:
    reader = PduReader(max_data_segment_length=256, header_digest=bool(garbage[:1] == b"\x01"))
    reader.feed(garbage)
    try:
        for raw in reader.pdus():
            with contextlib.suppress(codec.PduDecodeError):
                codec.decode_pdu(raw)
    except FramingError:
        pass
