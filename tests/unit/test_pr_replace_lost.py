"""PERSISTENT RESERVE OUT REPLACE LOST RESERVATION (SA 08h, SPC-4 5.13.11.3, 6.16) and RLR_C (6.15.4): byte
vectors through LogicalUnit.execute. By default the device server never establishes a lost persistent
reservation condition, so RLR_C is zero and 08h is an unsupported service action; with `rlr_capable` the
command's checks and its effect are exercised."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path

from scsi_harness import N1, N2, make_lu

from target.scsi.command import ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.gates import PrType
from target.scsi.pr import attach, pr_state
from target.scsi.sense import Asc, SenseKey, parse_sense

K1, K2, K3 = 0x1111111111111111, 0x2222222222222222, 0x3333333333333333
_tags = itertools.count(1)


def run(lu: LogicalUnit, nexus, cdb: bytes, data: bytes = b"") -> ScsiResult:
    req = ScsiRequest(nexus=nexus, lun=0, cdb=cdb, tag=next(_tags), data_out=data, expected_in_length=8192)
    return asyncio.run(lu.execute(req))


def prin(sa: int) -> bytes:
    return bytes((0x5E, sa, 0, 0, 0, 0, 0, 0x20, 0x00, 0))


def prout(lu, nexus, sa, *, key=0, sa_key=0, pr_type=0, scope=0, flags=0, length=24) -> ScsiResult:
    data = key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(4) + bytes((flags, 0, 0, 0))
    data = (data + bytes(max(0, length - 24)))[:length]
    cdb = bytes((0x5F, sa, (scope << 4) | pr_type, 0, 0)) + len(data).to_bytes(4, "big") + b"\x00"
    return run(lu, nexus, cdb, data)


def rlr(lu, nexus, **kw) -> ScsiResult:
    return prout(lu, nexus, 0x08, **kw)


@dataclass
class Sense:
    key: SenseKey
    asc: int
    sks: bytes  # the sense-key-specific bytes (field pointer) of fixed sense data


def sense(result: ScsiResult) -> Sense:
    assert result.status is ScsiStatus.CHECK_CONDITION
    key, asc = parse_sense(result.sense)
    return Sense(key, asc, bytes(result.sense[15:18]))


def cdb_field(byte: int, bit: int) -> bytes:
    """SKSV=1, C/D=1 (the CDB), BPV=1 and the bit."""
    return bytes((0xC8 | bit, byte >> 8, byte & 0xFF))


def param_field(byte: int, bit: int | None = None) -> bytes:
    """SKSV=1, C/D=0 (the parameter list), with BPV and the bit when given."""
    return bytes((0x80 | (0x08 | bit if bit is not None else 0), byte >> 8, byte & 0xFF))


def capable_lu(*, lost: bool = False) -> LogicalUnit:
    lu = make_lu()
    state = pr_state(lu)
    state.rlr_capable = True
    state.lost = lost
    return lu


def test_report_capabilities_rlr_c_zero_by_default_and_08h_unsupported() -> None:
    lu = make_lu()
    # LENGTH 8; RLR_C=0 CRH SIP_C ATP_C, PTPL_C=0 (no state dir); TMV, ALLOW COMMANDS 001b; type mask
    assert run(lu, N1, prin(2)).data_in == bytes((0x00, 0x08, 0x1C, 0x90, 0xEA, 0x01, 0x00, 0x00))
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE))
    assert (s.key, s.asc) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
    assert s.sks == cdb_field(1, 4)  # the SERVICE ACTION field


def test_report_capabilities_rlr_c_when_capable() -> None:
    assert run(capable_lu(), N1, prin(2)).data_in == bytes((0x00, 0x08, 0x9C, 0x90, 0xEA, 0x01, 0x00, 0x00))


def test_without_lost_condition_invalid_release() -> None:
    lu = capable_lu()
    assert prout(lu, N2, 0x00, sa_key=K2).status is ScsiStatus.GOOD
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE))
    assert (s.key, s.asc) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
    assert [r.key for r in pr_state(lu).registrations] == [K2]


def test_parameter_checks_before_the_lost_condition() -> None:
    lu = capable_lu(lost=True)
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE, length=23))
    assert s.asc == Asc.PARAMETER_LIST_LENGTH_ERROR
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE, length=28))
    assert s.asc == Asc.PARAMETER_LIST_LENGTH_ERROR
    # RESERVATION KEY shall be zero (6.16.3)
    s = sense(rlr(lu, N1, key=K3, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE))
    assert (s.asc, s.sks) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST, param_field(0))
    # SPEC_I_PT is for REGISTER only
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE, flags=0x08, length=28))
    assert (s.asc, s.sks) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST, param_field(20, 3))
    # APTPL without PTPL_C
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE, flags=0x01))
    assert (s.asc, s.sks) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST, param_field(20, 0))
    # TYPE and SCOPE
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=0x2))
    assert (s.asc, s.sks[1:]) == (Asc.INVALID_FIELD_IN_CDB, bytes((0, 2)))
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE, scope=2))
    assert (s.asc, s.sks[1:]) == (Asc.INVALID_FIELD_IN_CDB, bytes((0, 2)))
    # a new key of zero would be no registration
    s = sense(rlr(lu, N1, sa_key=0, pr_type=PrType.WRITE_EXCLUSIVE))
    assert (s.asc, s.sks) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST, param_field(8))
    assert pr_state(lu).lost


def test_replace_lost_reservation_effect_vectors() -> None:
    lu = capable_lu()
    for nexus in (N1, N2):
        lu.ua.register(nexus)
    assert prout(lu, N2, 0x00, sa_key=K2).status is ScsiStatus.GOOD
    assert prout(lu, N2, 0x01, key=K2, pr_type=PrType.EXCLUSIVE_ACCESS).status is ScsiStatus.GOOD
    before = list(lu.ua.pending(N2))
    pr_state(lu).lost = True
    # ALL_TG_PT is ignored for this service action
    result = rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, flags=0x04)
    assert result.status is ScsiStatus.GOOD
    # READ KEYS: PRGENERATION 0, only the issuer's new key
    assert run(lu, N1, prin(0)).data_in == bytes((0, 0, 0, 0, 0, 0, 0, 8)) + K1.to_bytes(8, "big")
    # READ RESERVATION: the issuer holds WE-RO
    want = bytes((0, 0, 0, 0, 0, 0, 0, 16)) + K1.to_bytes(8, "big") + bytes(4) + bytes((0, 0x05, 0, 0))
    assert run(lu, N1, prin(1)).data_in == want
    # prior registrations go without unit attentions
    assert lu.ua.pending(N2) == before
    state = pr_state(lu)
    assert not state.lost
    assert state.registrations[0].target_port == ("iqn.2003-01.org.example:t1", 1)
    s = sense(rlr(lu, N1, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE))
    assert s.asc == Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION


def test_replace_lost_all_registrants_and_aptpl(tmp_path: Path) -> None:
    lu = make_lu()
    state = attach(lu, str(tmp_path))
    state.rlr_capable = True
    state.lost = True
    assert rlr(lu, N1, sa_key=K1, pr_type=PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, flags=0x01).status is (
        ScsiStatus.GOOD
    )
    assert state.reservation is not None and state.reservation.holder is None
    assert state.aptpl
    assert state.store is not None
    saved = state.store.load()
    assert saved is not None and saved["generation"] == 0 and len(saved["registrations"]) == 1
