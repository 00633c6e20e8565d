"""LUN field encoding (SAM-5 4.7): peripheral and flat space addressing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target.pdu.lun import MAX_LUN, decode_lun, encode_lun, lun_bytes


@pytest.mark.parametrize(
    ("n", "wire"),
    [
        (0, "0000000000000000"),
        (1, "0001000000000000"),
        (255, "00ff000000000000"),
        (256, "4100000000000000"),
        (0x1234, "5234000000000000"),
        (16383, "7fff000000000000"),
    ],
)
def test_encode_vectors(n: int, wire: str) -> None:
    assert lun_bytes(n) == bytes.fromhex(wire)
    assert encode_lun(n) == int(wire, 16)
    assert decode_lun(int(wire, 16)) == n


@pytest.mark.parametrize("n", [-1, 16384, 1 << 20])
def test_encode_out_of_range(n: int) -> None:
    with pytest.raises(ValueError):
        encode_lun(n)


def test_linux_peripheral_form_above_255() -> None:
    # Linux int_to_scsilun(256) puts 01 00 in the first level (peripheral method, bus 1).
    assert decode_lun(0x0100_0000_0000_0000) == 256
    assert decode_lun(0x3FFF_0000_0000_0000) == 16383


def test_other_forms_never_alias_a_valid_lun() -> None:
    assert decode_lun(0x8001_0000_0000_0000) > MAX_LUN  # logical unit addressing
    assert decode_lun(0xD200_0000_0000_0000) > MAX_LUN  # extended addressing
    assert decode_lun(0x0001_0002_0000_0000) > MAX_LUN  # second level present
    assert decode_lun(0xFFFF_FFFF_FFFF_FFFF) > MAX_LUN  # the "reserved" LUN value
    assert decode_lun(1 << 70) == 0  # masked to 64 bits


@given(st.integers(min_value=0, max_value=MAX_LUN))
def test_round_trip(n: int) -> None:
    assert decode_lun(encode_lun(n)) == n
    assert 0 <= encode_lun(n) < 1 << 64


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_decode_never_fails(field: int) -> None:
    assert decode_lun(field) >= 0
