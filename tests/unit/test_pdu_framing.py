"""PduReader: incremental framing, digests, bounds (RFC 7143 11.1, 13.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target.pdu import codec
from target.pdu.framing import FramingError, PduReader, RawPdu
from target.pdu.pdus import (
    DataOut,
    LoginRequest,
    NopOut,
    Pdu,
    ScsiCommand,
    TextRequest,
)

PDUS: list[Pdu] = [
    NopOut(itt=1, cmdsn=1, exp_statsn=1, data=b"ping!"),
    ScsiCommand(itt=2, cmdsn=2, exp_statsn=1, cdb=bytes(range(32)), read=True, expected_data_length=512),
    DataOut(itt=2, ttt=7, exp_statsn=1, datasn=0, buffer_offset=0, final=True, data=b"x" * 1023),
    TextRequest(itt=3, cmdsn=3, exp_statsn=1),
    ScsiCommand(
        itt=4, cmdsn=4, exp_statsn=1, cdb=bytes(16), write=True, expected_data_length=6, data=b"abcdef"
    ),
]


def stream(header_digest: bool = False, data_digest: bool = False) -> bytes:
    return b"".join(
        codec.encode_pdu_bytes(p, header_digest=header_digest, data_digest=data_digest) for p in PDUS
    )


def decode_all(raws: list[RawPdu]) -> list[Pdu]:
    return [codec.decode_pdu(r) for r in raws]


@pytest.mark.parametrize(("hd", "dd"), [(False, False), (True, False), (False, True), (True, True)])
def test_several_pdus_in_one_feed(hd: bool, dd: bool) -> None:
    reader = PduReader(header_digest=hd, data_digest=dd)
    reader.feed(stream(hd, dd))
    raws = reader.pdus()
    assert all(r.data_digest_ok for r in raws)
    assert decode_all(raws) == PDUS
    assert reader.next_pdu() is None
    assert reader.at_boundary


@pytest.mark.parametrize(("hd", "dd"), [(False, False), (True, True)])
def test_split_at_every_byte_boundary(hd: bool, dd: bool) -> None:
    wire = stream(hd, dd)
    for cut in range(len(wire) + 1):
        reader = PduReader(header_digest=hd, data_digest=dd)
        reader.feed(wire[:cut])
        first = reader.pdus()
        reader.feed(wire[cut:])
        assert decode_all(first + reader.pdus()) == PDUS, cut


def test_one_byte_at_a_time() -> None:
    wire = stream(True, True)
    reader = PduReader(header_digest=True, data_digest=True)
    out: list[RawPdu] = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        out.extend(reader.pdus())
        assert reader.at_boundary == (
            len(out) > 0 and sum(len(encoded(p)) for p in PDUS[: len(out)]) == i + 1
        )
    assert decode_all(out) == PDUS


def encoded(pdu: Pdu) -> bytes:
    return codec.encode_pdu_bytes(pdu, header_digest=True, data_digest=True)


@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_arbitrary_chunking(cuts: list[int]) -> None:
    wire = stream(True, False)
    points = sorted({min(c, len(wire)) for c in cuts})
    reader = PduReader(header_digest=True)
    out: list[RawPdu] = []
    prev = 0
    for point in [*points, len(wire)]:
        reader.feed(memoryview(wire)[prev:point])
        out.extend(reader.pdus())
        prev = point
    assert decode_all(out) == PDUS


def test_padding_and_data_are_separated() -> None:
    reader = PduReader()
    reader.feed(codec.encode_pdu_bytes(NopOut(1, 1, 1, data=b"abc")))
    raw = reader.next_pdu()
    assert raw is not None
    assert raw.data == b"abc"
    assert raw.ahs == b""
    assert len(raw.bhs) == 48
    assert raw.opcode == 0
    assert raw.itt == 1
    assert raw.data_segment_length == 3
    assert raw.final


def test_ahs_is_framed_separately() -> None:
    reader = PduReader()
    reader.feed(codec.encode_pdu_bytes(PDUS[1]))
    raw = reader.next_pdu()
    assert raw is not None
    assert len(raw.ahs) == 20
    assert raw.data == b""


def test_bad_header_digest_is_fatal() -> None:
    wire = bytearray(codec.encode_pdu_bytes(PDUS[0], header_digest=True))
    wire[50] ^= 0x01  # flip a bit of the digest
    reader = PduReader(header_digest=True)
    reader.feed(bytes(wire))
    with pytest.raises(FramingError, match="header digest"):
        reader.next_pdu()
    with pytest.raises(FramingError):  # stays broken
        reader.next_pdu()
    with pytest.raises(FramingError):
        reader.feed(b"more")


def test_corrupted_header_detected_by_digest() -> None:
    wire = bytearray(codec.encode_pdu_bytes(PDUS[0], header_digest=True))
    wire[20] ^= 0x80  # corrupt the TTT
    reader = PduReader(header_digest=True)
    reader.feed(bytes(wire))
    with pytest.raises(FramingError):
        reader.next_pdu()


def test_bad_data_digest_is_reported_not_fatal() -> None:
    first = bytearray(codec.encode_pdu_bytes(PDUS[2], data_digest=True))
    first[60] ^= 0xFF  # corrupt the data
    reader = PduReader(data_digest=True)
    reader.feed(bytes(first) + codec.encode_pdu_bytes(PDUS[0], data_digest=True))
    bad = reader.next_pdu()
    assert bad is not None
    assert not bad.data_digest_ok
    good = reader.next_pdu()
    assert good is not None
    assert good.data_digest_ok
    assert codec.decode_pdu(good) == PDUS[0]


def test_data_digest_covers_padding() -> None:
    wire = bytearray(codec.encode_pdu_bytes(NopOut(1, 1, 1, data=b"abc"), data_digest=True))
    assert len(wire) == 48 + 4 + 4
    wire[51] = 1  # a non-zero padding byte changes the digest
    reader = PduReader(data_digest=True)
    reader.feed(bytes(wire))
    raw = reader.next_pdu()
    assert raw is not None
    assert not raw.data_digest_ok


def test_no_data_digest_without_data() -> None:
    wire = codec.encode_pdu_bytes(TextRequest(1, 1, 1), data_digest=True)
    assert len(wire) == 48
    reader = PduReader(data_digest=True)
    reader.feed(wire)
    assert reader.next_pdu() is not None


def test_oversize_data_segment_rejected_from_header_alone() -> None:
    wire = codec.encode_pdu_bytes(DataOut(1, 1, 1, 0, 0, data=b"y" * 9000))
    reader = PduReader(max_data_segment_length=8192)
    reader.feed(wire[:48])  # the data has not even arrived
    with pytest.raises(FramingError, match="DataSegmentLength"):
        reader.next_pdu()


def test_limit_exactly_at_max_is_fine() -> None:
    reader = PduReader(max_data_segment_length=8192)
    reader.feed(codec.encode_pdu_bytes(DataOut(1, 1, 1, 0, 0, data=b"y" * 8192)))
    raw = reader.next_pdu()
    assert raw is not None
    assert len(raw.data) == 8192


def test_total_ahs_length_bounded() -> None:
    wire = bytearray(codec.encode_pdu_bytes(NopOut(1, 1, 1)))
    wire[4] = 0xFF
    reader = PduReader()
    reader.feed(bytes(wire))
    with pytest.raises(FramingError, match="TotalAHSLength"):
        reader.next_pdu()


def test_buffer_bound() -> None:
    reader = PduReader(max_buffer=100)
    reader.feed(b"\0" * 60)
    with pytest.raises(FramingError, match="buffer"):
        reader.feed(b"\0" * 41)


def test_default_buffer_bound_follows_segment_limit() -> None:
    reader = PduReader(max_data_segment_length=1 << 20)
    assert reader.buffer_limit() >= 2 * (1 << 20)
    small = PduReader()
    assert small.buffer_limit() == 1 << 20
    with pytest.raises(FramingError):
        small.feed(bytes((1 << 20) + 1))


def test_settings_change_between_pdus() -> None:
    # Login completes without digests; the next PDU uses the negotiated digests and a larger segment limit.
    login = codec.encode_pdu_bytes(LoginRequest(0, 1, 0, 0, 1, 0, csg=1, nsg=3, transit=True, data=b"A=B\0"))
    ffp = codec.encode_pdu_bytes(
        DataOut(1, 2, 3, 0, 0, data=b"z" * 10000), header_digest=True, data_digest=True
    )
    reader = PduReader()
    reader.feed(login + ffp)
    first = reader.next_pdu()
    assert first is not None
    assert first.opcode == 3
    reader.header_digest = True
    reader.data_digest = True
    reader.max_data_segment_length = 16384
    second = reader.next_pdu()
    assert second is not None
    assert second.data_digest_ok
    assert len(second.data) == 10000


def test_settings_fixed_once_header_parsed() -> None:
    wire = codec.encode_pdu_bytes(NopOut(1, 1, 1, data=b"abcd"))
    reader = PduReader()
    reader.feed(wire[:50])
    assert reader.next_pdu() is None  # header parsed, waiting for data
    reader.data_digest = True  # too late for this PDU
    reader.feed(wire[50:])
    raw = reader.next_pdu()
    assert raw is not None
    assert raw.data == b"abcd"


def test_large_stream_compacts_buffer() -> None:
    pdu = DataOut(1, 1, 1, 0, 0, data=b"q" * 8192)
    wire = codec.encode_pdu_bytes(pdu)
    reader = PduReader()
    count = 0
    for _ in range(50):
        reader.feed(wire + wire[:100])
        count += len(reader.pdus())
        reader.feed(wire[100:])
        count += len(reader.pdus())
        assert reader.buffered == 0
    assert count == 100


def test_data_is_independent_of_buffer() -> None:
    reader = PduReader()
    reader.feed(codec.encode_pdu_bytes(NopOut(1, 1, 1, data=b"keep")))
    raw = reader.next_pdu()
    reader.feed(codec.encode_pdu_bytes(NopOut(2, 2, 2, data=b"over")))
    reader.next_pdu()
    assert raw is not None
    assert bytes(raw.data) == b"keep"
