"""iSCSI TransportIDs (SPC-4 7.6.4.6): byte vectors for both formats, malformed input, round trips."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target.scsi.pr.transport_id import TidFormat, TransportId, decode, decode_list
from target.scsi.sense import Asc, CheckCondition, FieldPointer


def test_format_00b_name_only_vector():
    raw = TransportId("iqn.a").encode()
    # protocol 5, format 00b, ADDITIONAL LENGTH 20 (minimum), name null-terminated and padded
    assert raw == bytes((0x05, 0x00, 0x00, 0x14)) + b"iqn.a" + bytes(15)
    assert decode(raw) == (TransportId("iqn.a"), 24)


def test_format_01b_with_isid_vector():
    tid = TransportId("iqn.1994-05.com.redhat:a", 0x23D000000001)
    raw = tid.encode()
    text = b"iqn.1994-05.com.redhat:a,i,0x23d000000001\x00"
    assert raw[:4] == bytes((0x45, 0x00)) + (len(text) + (-len(text) % 4)).to_bytes(2, "big")
    assert raw[4 : 4 + len(text)] == text
    assert len(raw) % 4 == 0
    assert tid.format is TidFormat.PORT
    assert decode(raw)[0] == tid


def test_decode_list_back_to_back():
    a, b = TransportId("iqn.a", 1), TransportId("iqn.b")
    assert decode_list(a.encode() + b.encode()) == [a, b]


@pytest.mark.parametrize(
    ("raw", "byte"),
    [
        (bytes((0x04, 0, 0, 20)) + b"iqn.a" + bytes(15), 0),  # FCP, not iSCSI
        (bytes((0x85, 0, 0, 20)) + b"iqn.a" + bytes(15), 0),  # format 10b
        (bytes((0x05, 0, 0, 18)) + b"iqn.a" + bytes(13), 2),  # not a multiple of 4
        (bytes((0x05, 0, 0, 40)) + b"iqn.a" + bytes(15), 2),  # runs past the buffer
        (bytes((0x05, 0, 0, 20)) + b"x" * 20, 4),  # no terminating null
        (bytes((0x45, 0, 0, 20)) + b"iqn.a\x00" + bytes(14), 4),  # format 01b without ",i,0x"
        (bytes((0x05,)), 0),  # truncated header
    ],
)
def test_malformed_is_invalid_field_in_parameter_list(raw, byte):
    with pytest.raises(CheckCondition) as ei:
        decode(raw, base=28)
    assert ei.value.asc == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert ei.value.field is not None and ei.value.field.byte == 28 + byte and not ei.value.field.cd
    assert isinstance(ei.value.field, FieldPointer)


@given(
    name=st.from_regex(r"iqn\.[a-z0-9.:-]{1,200}", fullmatch=True),
    isid=st.none() | st.integers(0, (1 << 48) - 1),
)
def test_round_trip(name, isid):
    tid = TransportId(name, isid)
    raw = tid.encode()
    assert len(raw) % 4 == 0 and len(raw) >= 24
    assert decode(raw) == (tid, len(raw))


@given(st.binary(max_size=80))
def test_garbage_never_crashes(raw):
    try:
        tid, n = decode(raw)
    except CheckCondition as cc:
        assert cc.asc == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    else:
        assert 24 <= n <= len(raw) and tid.name
