"""The recoverable lost persistent reservation condition end to end (SPC-4 5.13.5.3.2, 5.13.11.3): an APTPL file
that exists but cannot be read makes the LU start in the lost condition (the file set aside, the condition
recorded so that a restart keeps it); every command but REPLACE LOST RESERVATION and those of 5.13.5.2 ends with
DATA PROTECT / PERSISTENT RESERVATION INFORMATION LOST (44h/01h); REPLACE LOST RESERVATION ends it. Byte
vectors through LogicalUnit.execute."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from scsi_harness import N1, N2, make_lu

from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.gates import PrType
from target.scsi.opcodes import OpcodeTable
from target.scsi.pr import attach, pr_state
from target.scsi.pr.aptpl import AptplStore
from target.scsi.reservation import Reservations
from target.scsi.sense import CheckCondition

K1, K2 = 0x1111111111111111, 0x2222222222222222
_tags = itertools.count(1)

#: fixed sense data, CHECK CONDITION: DATA PROTECT (7h), ASC 44h ASCQ 01h
LOST_SENSE = bytes((0x70, 0, 0x07, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x44, 0x01, 0, 0, 0, 0))
READ_10 = bytes((0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0))
WRITE_10 = bytes((0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0))
INQUIRY = bytes((0x12, 0, 0, 0, 36, 0))
REQUEST_SENSE = bytes((0x03, 0, 0, 0, 18, 0))
TEST_UNIT_READY = bytes(6)
REPORT_CAPABILITIES = bytes((0x5E, 0x02, 0, 0, 0, 0, 0, 0, 8, 0))
READ_KEYS = bytes((0x5E, 0x00, 0, 0, 0, 0, 0, 0, 0x20, 0))
READ_RESERVATION = bytes((0x5E, 0x01, 0, 0, 0, 0, 0, 0, 0x20, 0))


def run(lu: LogicalUnit, nexus: Nexus, cdb: bytes, data: bytes = b"") -> ScsiResult:
    req = ScsiRequest(nexus=nexus, lun=0, cdb=cdb, tag=next(_tags), data_out=data, expected_in_length=8192)
    return asyncio.run(lu.execute(req))


def prout(
    lu: LogicalUnit, nexus: Nexus, sa: int, *, key: int = 0, sa_key: int = 0, pr_type: int = 0, flags: int = 0
) -> ScsiResult:
    data = key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(4) + bytes((flags, 0, 0, 0))
    cdb = bytes((0x5F, sa, pr_type, 0, 0)) + len(data).to_bytes(4, "big") + b"\x00"
    return run(lu, nexus, cdb, data)


def aptpl_path(tmp_path: Path) -> Path:
    return AptplStore(tmp_path, make_lu().serial).path


def lu_with_file(tmp_path: Path, content: bytes | None, **kw: object) -> LogicalUnit:
    """A fresh LU (a target start) over `tmp_path`, its APTPL file holding `content` (None: leave it be)."""
    if content is not None:
        path = aptpl_path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    lu = make_lu(**kw)
    attach(lu, str(tmp_path))
    return lu


def set_aside(tmp_path: Path) -> list[Path]:
    return sorted(aptpl_path(tmp_path).parent.glob("*.corrupt-*"))


def valid_doc(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "version": 1,
        "generation": 3,
        "aptpl": True,
        "registrations": [],
        "reservation": None,
    }
    doc.update(over)
    return doc


CORRUPT: dict[str, bytes] = {
    "not json": b'{"version": 1, "registrations": [',
    "not utf-8": b"\xff\xfe\x00garbage",
    "not an object": b"[1, 2, 3]",
    "unknown version": json.dumps(valid_doc(version=99)).encode(),
    "malformed registration": json.dumps(valid_doc(registrations=[{"key": 5}])).encode(),
    "unknown type": json.dumps(
        valid_doc(
            registrations=[{"key": "0x1", "initiator": "iqn.x:a", "isid": None, "target_port": None}],
            reservation={"type": 2, "scope": 0, "holder": 0},
        )
    ).encode(),
    "deeply nested": b"[" * 100_000,
}


@pytest.mark.parametrize("why", sorted(CORRUPT))
def test_corrupt_file_establishes_the_condition_and_is_kept(
    tmp_path: Path, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        lu = lu_with_file(tmp_path, CORRUPT[why])
    state = pr_state(lu)
    assert state.lost and state.registrations == [] and state.reservation is None
    # kept aside, byte for byte
    (aside,) = set_aside(tmp_path)
    assert aside.read_bytes() == CORRUPT[why]
    # the condition is recorded in a fresh APTPL file
    recorded = json.loads(aptpl_path(tmp_path).read_text())
    assert recorded["lost"] is True and recorded["registrations"] == []
    assert any("persistent reservation information lost" in r.getMessage() for r in caplog.records)
    assert run(lu, N1, READ_10).sense == LOST_SENSE


def test_read_10_terminated_inquiry_passes(tmp_path: Path) -> None:
    lu = lu_with_file(tmp_path, b"{garbage")
    for cdb in (READ_10, WRITE_10, TEST_UNIT_READY, READ_KEYS, REPORT_CAPABILITIES):
        result = run(lu, N1, cdb, bytes(512) if cdb is WRITE_10 else b"")
        assert (result.status, result.sense) == (ScsiStatus.CHECK_CONDITION, LOST_SENSE), cdb.hex()
    inq = run(lu, N1, INQUIRY)
    assert inq.status is ScsiStatus.GOOD and inq.data_in[0] == 0x00 and len(inq.data_in) == 36
    assert run(lu, N1, REQUEST_SENSE).status is ScsiStatus.GOOD
    # a PROUT other than REPLACE LOST RESERVATION gets the sense, not RESERVATION CONFLICT
    assert prout(lu, N2, 0x00, sa_key=K2).sense == LOST_SENSE
    assert pr_state(lu).registrations == []


def test_replace_lost_reservation_ends_the_condition(tmp_path: Path) -> None:
    lu = lu_with_file(tmp_path, b"{garbage")
    result = prout(lu, N1, 0x08, sa_key=K1, pr_type=PrType.EXCLUSIVE_ACCESS, flags=0x01)
    assert result.status is ScsiStatus.GOOD
    assert not pr_state(lu).lost
    # the issuer holds the new reservation (PRGENERATION 0); its reads pass, another nexus conflicts
    want = bytes((0, 0, 0, 0, 0, 0, 0, 16)) + K1.to_bytes(8, "big") + bytes(4) + bytes((0, 0x03, 0, 0))
    assert run(lu, N1, READ_RESERVATION).data_in == want
    assert run(lu, N1, READ_10).status is ScsiStatus.GOOD
    assert run(lu, N2, READ_10).status is ScsiStatus.RESERVATION_CONFLICT
    # RLR_C=1 CRH SIP_C ATP_C PTPL_C=1; TMV, ALLOW COMMANDS 001b, PTPL_A=1
    assert run(lu, N1, REPORT_CAPABILITIES).data_in == bytes((0, 8, 0x9D, 0x91, 0xEA, 0x01, 0, 0))
    # APTPL=1: the new state replaces the record of the condition and survives a restart
    again = lu_with_file(tmp_path, None)
    state = pr_state(again)
    assert not state.lost and state.is_holder(N1) and state.reservation_type() is PrType.EXCLUSIVE_ACCESS
    assert [r.key for r in state.registrations] == [K1] and state.generation == 0


def test_replace_lost_reservation_without_aptpl_removes_the_record(tmp_path: Path) -> None:
    lu = lu_with_file(tmp_path, b"{garbage")
    assert prout(lu, N1, 0x08, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE).status is ScsiStatus.GOOD
    assert not aptpl_path(tmp_path).exists()
    assert len(set_aside(tmp_path)) == 1  # the corrupt file stays for the operator
    again = lu_with_file(tmp_path, None)
    assert not pr_state(again).lost and pr_state(again).registrations == []
    assert run(again, N2, READ_10).status is ScsiStatus.GOOD


def test_a_restart_does_not_end_the_condition(tmp_path: Path) -> None:
    lu_with_file(tmp_path, b"{garbage")
    again = lu_with_file(tmp_path, None)
    assert pr_state(again).lost
    assert run(again, N1, READ_10).sense == LOST_SENSE
    assert len(set_aside(tmp_path)) == 1  # the record is a valid file: nothing more is set aside


def test_a_directory_in_place_of_the_file(tmp_path: Path) -> None:
    path = aptpl_path(tmp_path)
    path.mkdir(parents=True)
    lu = lu_with_file(tmp_path, None)
    assert pr_state(lu).lost
    (aside,) = set_aside(tmp_path)
    assert aside.is_dir()


def test_file_that_cannot_be_set_aside_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Path, target: object) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rename", refuse)
    lu = lu_with_file(tmp_path, b"{garbage")
    assert pr_state(lu).lost
    assert aptpl_path(tmp_path).read_bytes() == b"{garbage"
    assert set_aside(tmp_path) == []


def test_no_condition_when_persistent_reserve_is_off(tmp_path: Path) -> None:
    lu = lu_with_file(tmp_path, b"{garbage", attributes={"emulate_pr": 0})
    assert not pr_state(lu).lost
    assert len(set_aside(tmp_path)) == 1
    assert run(lu, N1, READ_10).status is ScsiStatus.GOOD


def test_missing_file_and_valid_file_are_no_loss(tmp_path: Path) -> None:
    assert not pr_state(lu_with_file(tmp_path, None)).lost
    lu = lu_with_file(tmp_path, json.dumps(valid_doc()).encode())
    assert not pr_state(lu).lost and pr_state(lu).generation == 3
    assert set_aside(tmp_path) == []
    # RLR_C=1 wherever APTPL is offered; the command needs the condition
    assert run(lu, N1, REPORT_CAPABILITIES).data_in[2] == 0x9D
    result = prout(lu, N1, 0x08, sa_key=K1, pr_type=PrType.WRITE_EXCLUSIVE)
    assert result.status is ScsiStatus.CHECK_CONDITION and result.sense[12:14] == bytes((0x26, 0x04))


class _Lost:
    """A PersistentReservations stand-in with the condition set and nothing else."""

    lost = True

    def reservation_type(self) -> PrType | None:
        return None

    def is_holder(self, nexus: Nexus) -> bool:
        return False

    def is_registered(self, nexus: Nexus) -> bool:
        return False

    def has_registrations(self) -> bool:
        return False


def _gate() -> Callable[[int, int | None, bytes | None], bool]:
    """check(spec, nexus, cdb) during the condition as a predicate: True = the command goes on."""
    table = {(s.opcode, s.service_action): s for s in OpcodeTable.standard()}
    res = Reservations()
    res.pr = _Lost()

    def passes(opcode: int, sa: int | None, cdb: bytes | None) -> bool:
        try:
            res.check(table[(opcode, sa)], N1, cdb)
        except CheckCondition as cc:
            assert cc.sense() == LOST_SENSE
            return False
        return True

    return passes


#: SPC-4 5.13.5.2 a-h and 5.13.5.3.2 b A, written out independently of the gate's table
SPC4_ALLOWED = {
    (0x12, None),  # INQUIRY
    (0x4D, None),  # LOG SENSE
    (0x3C, None),  # READ BUFFER
    (0xA0, None),  # REPORT LUNS
    (0xA3, 0x0A),  # REPORT TARGET PORT GROUPS
    (0x03, None),  # REQUEST SENSE
    (0x3B, None),  # WRITE BUFFER
    (0x5F, 0x08),  # PERSISTENT RESERVE OUT / REPLACE LOST RESERVATION
}


def test_every_command_of_the_table_but_the_allowed_ones_is_terminated() -> None:
    passes = _gate()
    table = list(OpcodeTable.standard())
    assert len(table) > 50
    for spec in table:
        allowed = (spec.opcode, spec.service_action) in SPC4_ALLOWED or (spec.opcode, None) in SPC4_ALLOWED
        if spec.opcode == 0x1B:
            continue  # decided by its CDB (below)
        assert passes(spec.opcode, spec.service_action, None) is allowed, spec.name
    # SPC-4 5.13.5.2 g: START STOP UNIT with START=1 and POWER CONDITION 0h only
    assert passes(0x1B, None, bytes((0x1B, 0, 0, 0, 0x01, 0)))
    assert not passes(0x1B, None, bytes((0x1B, 0, 0, 0, 0x00, 0)))  # stop
    assert not passes(0x1B, None, bytes((0x1B, 0, 0, 0, 0x11, 0)))  # POWER CONDITION ACTIVE
    assert not passes(0x1B, None, None)


def test_allowed_list_names_the_standard_commands() -> None:
    passes = _gate()
    for opcode, sa in ((0x12, None), (0xA0, None), (0x03, None), (0xA3, 0x0A), (0x5F, 0x08)):
        assert passes(opcode, sa, None), hex(opcode)
    for opcode, sa in ((0x5E, 0x00), (0x5F, 0x00), (0x00, None), (0xA3, 0x0C), (0x16, None)):
        assert not passes(opcode, sa, None), hex(opcode)
