"""lab/faults/libiscsi_scsi.py (runs on libiscsi nodes): READ RESERVATION parsing and the PREEMPT sequence,
with a fake session in place of libiscsi."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

from lab.faults import libiscsi_scsi as ls


def test_parse_read_reservation() -> None:
    none = struct.pack(">II", 7, 0)
    assert ls.parse_read_reservation(none + bytes(56)) == {
        "generation": 7,
        "held": False,
        "key": None,
        "scope": None,
        "type": None,
    }
    held = struct.pack(">IIQ4xBB2x", 9, 16, 0xABC, 0, 0x05)
    assert ls.parse_read_reservation(held) == {
        "generation": 9,
        "held": True,
        "key": 0xABC,
        "scope": 0,
        "type": 5,
    }


@dataclass
class FakeSession:
    reservations: list[dict[str, Any]]
    prouts: list[tuple[str, int, int, int, int]] = field(default_factory=list)

    def read_reservation(self) -> dict[str, Any]:
        return self.reservations.pop(0)

    def read_keys(self) -> list[int]:
        return [0xABC]

    def prout(self, what: str, sa: int, rtype: int, key: int, sark: int) -> None:
        self.prouts.append((what, sa, rtype, key, sark))


def held(key: int, rtype: int = 5) -> dict[str, Any]:
    return {"generation": 1, "held": True, "key": key, "scope": 0, "type": rtype}


def test_preempt_registers_then_preempts_the_holder_with_its_type() -> None:
    s = FakeSession([held(0xABC, 6), held(0x99, 6)])
    out = ls.preempt(s, {"key": 0x99, "type": None, "abort": False})  # type: ignore[arg-type]
    assert s.prouts == [
        ("PROUT REGISTER AND IGNORE EXISTING KEY", ls.PROUT_REGISTER_AND_IGNORE, 0, 0, 0x99),
        ("PROUT PREEMPT", ls.PROUT_PREEMPT, 6, 0x99, 0xABC),
    ]
    assert out["after"]["key"] == 0x99


def test_preempt_and_abort_with_an_explicit_type() -> None:
    s = FakeSession([held(0xABC), held(0x99, 1)])
    ls.preempt(s, {"key": 0x99, "type": 1, "abort": True})  # type: ignore[arg-type]
    assert s.prouts[-1] == ("PROUT PREEMPT AND ABORT", ls.PROUT_PREEMPT_AND_ABORT, 1, 0x99, 0xABC)


def test_preempt_without_reservation() -> None:
    empty = {"generation": 0, "held": False, "key": None, "scope": None, "type": None}
    with pytest.raises(OSError, match="nothing to preempt"):
        ls.preempt(FakeSession([dict(empty)]), {"key": 1})  # type: ignore[arg-type]
    s = FakeSession([dict(empty), dict(empty)])
    ls.preempt(s, {"key": 1, "require_reservation": False})  # type: ignore[arg-type]
    assert [p[1] for p in s.prouts] == [ls.PROUT_REGISTER_AND_IGNORE]


def test_cdbs_and_parameter_list() -> None:
    assert ls.prin_cdb(ls.PRIN_READ_RESERVATION, 64) == bytes.fromhex("5e010000000000004000")
    assert ls.prin_cdb(ls.PRIN_READ_KEYS, 0x1000) == bytes.fromhex("5e000000000000100000")
    assert ls.prout_cdb(ls.PROUT_PREEMPT, 5, 24) == bytes.fromhex("5f040500000000001800")
    params = ls.prout_params(0x0102030405060708, 0xA0)
    assert params == bytes.fromhex("010203040506070800000000000000a0") + bytes(8)
