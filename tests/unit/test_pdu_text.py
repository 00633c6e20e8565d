"""iSCSI text key=value data (RFC 7143 6.1): parse, encode, continuation, splitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target.pdu.text import (
    TextAssembler,
    TextError,
    encode_text,
    find_duplicates,
    parse_text,
    split_text,
    valid_key_name,
)

OPEN_ISCSI_LOGIN = (
    b"InitiatorName=iqn.2004-10.com.ubuntu:01:4d5e6f7a8b9c\0InitiatorAlias=client1\0"
    b"TargetName=iqn.2003-01.org.linux-iscsi.lab:sn.1234\0SessionType=Normal\0AuthMethod=None\0"
)


def test_parse_login_text() -> None:
    assert parse_text(OPEN_ISCSI_LOGIN) == [
        ("InitiatorName", "iqn.2004-10.com.ubuntu:01:4d5e6f7a8b9c"),
        ("InitiatorAlias", "client1"),
        ("TargetName", "iqn.2003-01.org.linux-iscsi.lab:sn.1234"),
        ("SessionType", "Normal"),
        ("AuthMethod", "None"),
    ]


def test_parse_empty_and_special_values() -> None:
    assert parse_text(b"") == []
    assert parse_text(b"TargetAlias=\0") == [("TargetAlias", "")]
    assert parse_text(b"X-com.example.k=a=b\0") == [("X-com.example.k", "a=b")]  # first '=' splits
    assert parse_text(b"TargetAlias=caf\xc3\xa9\0") == [("TargetAlias", "café")]
    assert parse_text(b"A=1\0\0\0B=2\0") == [("A", "1"), ("B", "2")]  # stray NULs skipped
    assert parse_text(memoryview(b"A=1\0")) == [("A", "1")]


@pytest.mark.parametrize(
    "data",
    [
        b"A=1",  # not NUL-terminated
        b"NoEquals\0",
        b"=value\0",  # empty key
        b"Bad Key=1\0",  # space not allowed
        b"K\xc3\xa9y=1\0",  # non-ASCII key
        b"A=\xff\xfe\0",  # invalid UTF-8 value
        b"K" * 64 + b"=1\0",  # key longer than 63 bytes
        b"TargetAlias=" + b"v" * 256 + b"\0",  # value longer than 255
    ],
)
def test_parse_errors(data: bytes) -> None:
    with pytest.raises(TextError):
        parse_text(data)


def test_error_carries_key() -> None:
    with pytest.raises(TextError) as info:
        parse_text(b"TargetAlias=" + b"v" * 300 + b"\0")
    assert info.value.key == "TargetAlias"


def test_value_bounds() -> None:
    assert parse_text(b"K" * 63 + b"=1\0")[0][0] == "K" * 63
    assert parse_text(b"A=" + b"v" * 255 + b"\0")[0][1] == "v" * 255
    assert len(parse_text(b"A=" + b"v" * 1000 + b"\0", max_value_length=1000)[0][1]) == 1000
    chap = b"CHAP_C=0x" + b"ab" * 1024 + b"\0"  # long binary values are allowed for CHAP
    assert len(parse_text(chap)[0][1]) == 2050
    with pytest.raises(TextError):
        parse_text(b"CHAP_C=0x" + b"ab" * 5000 + b"\0")
    with pytest.raises(TextError):
        parse_text(chap, long_value_keys=())


def test_key_names() -> None:
    assert valid_key_name("MaxRecvDataSegmentLength")
    assert valid_key_name("X-com.example.Key_1+v@2")
    assert valid_key_name("X#com.example")
    assert not valid_key_name("")
    assert not valid_key_name("A" * 64)
    assert not valid_key_name("A/B")


def test_encode() -> None:
    assert encode_text([("HeaderDigest", "None"), ("DataDigest", "None")]) == (
        b"HeaderDigest=None\0DataDigest=None\0"
    )
    assert encode_text([]) == b""
    assert encode_text([("TargetAlias", "café")]) == b"TargetAlias=caf\xc3\xa9\0"
    with pytest.raises(ValueError):
        encode_text([("bad key", "1")])
    with pytest.raises(ValueError):
        encode_text([("A", "x\0y")])


def test_duplicates() -> None:
    pairs = parse_text(b"A=1\0B=2\0A=3\0C=4\0B=5\0A=6\0")
    assert find_duplicates(pairs) == ["A", "B"]
    assert find_duplicates(parse_text(OPEN_ISCSI_LOGIN)) == []


keys = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-+@_", min_size=1, max_size=63
)
values = st.text(alphabet=st.characters(exclude_characters="\0", exclude_categories=["Cs"]), max_size=60)


@given(st.lists(st.tuples(keys, values), max_size=20))
def test_round_trip(pairs: list[tuple[str, str]]) -> None:
    assert parse_text(encode_text(pairs)) == pairs


def test_assembler_joins_continued_text() -> None:
    asm = TextAssembler(max_total=100)
    assert asm.add(b"InitiatorName=iqn.", cont=True) is None
    assert asm.pending
    assert asm.add(b"x\0Ses", cont=True) is None
    assert asm.add(b"sionType=Normal\0", cont=False) == b"InitiatorName=iqn.x\0SessionType=Normal\0"
    assert not asm.pending
    assert asm.size == 0
    assert asm.add(b"A=1\0", cont=False) == b"A=1\0"


def test_assembler_empty_pieces() -> None:
    asm = TextAssembler(max_total=10)
    assert asm.add(b"", cont=True) is None
    assert asm.pending
    assert asm.add(b"", cont=False) == b""
    assert asm.add(b"", cont=False) == b""


def test_assembler_bound() -> None:
    asm = TextAssembler(max_total=10)
    assert asm.add(b"12345", cont=True) is None
    with pytest.raises(TextError):
        asm.add(b"123456", cont=True)
    assert not asm.pending  # reset after the error
    assert asm.add(b"1234567890", cont=False) == b"1234567890"


def test_split_text() -> None:
    assert split_text(b"", 10) == [b""]
    assert split_text(b"abc", 10) == [b"abc"]
    assert split_text(b"abcdefghij", 5) == [b"abcde", b"fghij"]
    assert split_text(b"abcdefghijk", 5) == [b"abcde", b"fghij", b"k"]
    with pytest.raises(ValueError):
        split_text(b"abc", 0)


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=600))
def test_split_then_assemble(data: bytes, max_len: int) -> None:
    pieces = split_text(data, max_len)
    assert all(len(p) <= max_len for p in pieces)
    asm = TextAssembler(max_total=4096)
    results = [asm.add(p, cont=i < len(pieces) - 1) for i, p in enumerate(pieces)]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == data
