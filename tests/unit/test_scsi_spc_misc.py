"""REPORT SUPPORTED OPERATION CODES (all / one, options 0-3, RCTD), REPORT SUPPORTED TMFs, RESERVE/RELEASE,
LOG SENSE, sense encodings and the opcode table's CDB usage check."""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scsi_harness import N2, MemBackstore, cdb, make_dispatcher, make_lu, send, sense_of

from target.config.model import StorageObjectConfig
from target.scsi.command import ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.gates import PrClass, PrType
from target.scsi.opcodes import CommandSpec, OpcodeTable, usage
from target.scsi.sense import Asc, CheckCondition, FieldPointer, SenseKey, build_sense


def _rsoc(options, op=0, sa=0, rctd=False, alloc=0xFFFF):
    return cdb(
        0xA3,
        0x0C,
        (0x80 if rctd else 0) | options,
        op,
        *sa.to_bytes(2, "big"),
        *alloc.to_bytes(4, "big"),
        0,
        0,
    )


def _setup():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    return lu, d, m


def test_rsoc_all_lists_every_enabled_command():
    lu, d, m = _setup()
    data = bytes(send(d, m, _rsoc(0)).data_in)
    n = int.from_bytes(data[:4], "big")
    assert n == 8 * len([s for s in lu.table if s.is_enabled(lu)]) and len(data) == 4 + n
    descs = {data[i]: data[i : i + 8] for i in range(4, len(data), 8) if data[i] != 0xA3}
    assert descs[0x12] == bytes.fromhex("1200000000000006")
    rsoc = [data[i : i + 8] for i in range(4, len(data), 8) if data[i] == 0xA3]
    assert bytes.fromhex("a300000c0001000c") in rsoc and bytes.fromhex("a300000d0001000c") in rsoc


def test_rsoc_all_with_timeouts():
    _lu, d, m = _setup()
    data = bytes(send(d, m, _rsoc(0, rctd=True)).data_in)
    assert (len(data) - 4) % 20 == 0
    assert data[4:24] == bytes.fromhex("0000000000020006000a00000000000000000000")


def test_rsoc_one_command():
    _lu, d, m = _setup()
    assert bytes(send(d, m, _rsoc(1, op=0x12)).data_in) == bytes.fromhex("000300061201ffffff04")
    assert bytes(send(d, m, _rsoc(1, op=0xC7)).data_in) == bytes.fromhex("00010000")
    assert bytes(send(d, m, _rsoc(1, op=0x12, rctd=True)).data_in) == bytes.fromhex(
        "008300061201ffffff04000a00000000000000000000"
    )
    assert bytes(send(d, m, _rsoc(2, op=0xA3, sa=0x0D)).data_in) == bytes.fromhex(
        "0003000ca30d80000000ffffffff0004"
    )
    assert bytes(send(d, m, _rsoc(2, op=0xA3, sa=0x1F)).data_in) == bytes.fromhex("00010000")
    assert bytes(send(d, m, _rsoc(3, op=0x12, sa=7)).data_in)[:4] == bytes.fromhex("00030006")
    assert sense_of(send(d, m, _rsoc(1, op=0xA3))) == (5, 0x2400)  # has service actions
    assert sense_of(send(d, m, _rsoc(2, op=0x12))) == (5, 0x2400)  # has none
    assert sense_of(send(d, m, _rsoc(5))) == (5, 0x2400)


def test_report_supported_tmf():
    _lu, d, m = _setup()
    c = cdb(0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0, 0)
    assert bytes(send(d, m, c).data_in) == bytes.fromhex("fa000000")  # ATS ATSS CACAS CTSS LURS TRS
    c = cdb(0xA3, 0x0D, 0x80, 0, 0, 0, 0, 0, 0, 0xFF, 0, 0)
    assert bytes(send(d, m, c).data_in) == bytes.fromhex("fa00000c") + bytes(12)


def test_unknown_service_action_points_at_byte_1():
    _lu, d, m = _setup()
    r = send(d, m, cdb(0xA3, 0x1E, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0, 0))
    assert r.sense[12:18] == bytes.fromhex("240000cc0001")


RESERVE6 = bytes.fromhex("160000000000")
RELEASE6 = bytes.fromhex("170000000000")
RESERVE10 = bytes.fromhex("56000000000000000000")
MODE_SENSE = bytes.fromhex("1a003f00ff00")


def test_reserve_release_two_initiators():
    lu, d, m = _setup()
    assert send(d, m, RESERVE6).status == ScsiStatus.GOOD
    assert send(d, m, RESERVE6).status == ScsiStatus.GOOD  # the holder may re-reserve
    assert send(d, m, RESERVE6, nexus=N2).status == ScsiStatus.RESERVATION_CONFLICT
    assert send(d, m, RESERVE10, nexus=N2).status == ScsiStatus.RESERVATION_CONFLICT
    assert send(d, m, RELEASE6, nexus=N2).status == ScsiStatus.GOOD  # a no-op
    assert send(d, m, MODE_SENSE).status == ScsiStatus.GOOD
    assert send(d, m, MODE_SENSE, nexus=N2).status == ScsiStatus.RESERVATION_CONFLICT
    assert send(d, m, bytes.fromhex("120000002400"), nexus=N2).status == ScsiStatus.GOOD  # INQUIRY allowed
    assert send(d, m, RELEASE6).status == ScsiStatus.GOOD
    assert send(d, m, RESERVE6, nexus=N2).status == ScsiStatus.GOOD
    asyncio.run(d.nexus_gone(N2))  # I_T nexus loss releases it
    assert lu.reservations.spc2_holder is None
    assert sense_of(send(d, m, bytes.fromhex("161000000000"))) == (5, 0x2400)  # 3rdPty


def test_pr_conflict_classes_follow_the_spc4_table():
    we, ea, ro = PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
    assert PrClass.READ.allowed(we, holder=False, registered=False)
    assert not PrClass.READ.allowed(ea, holder=False, registered=True)
    assert PrClass.READ.allowed(ro, holder=False, registered=True)
    assert not PrClass.READ.allowed(ro, holder=False, registered=False)
    assert not PrClass.WRITE.allowed(we, holder=False, registered=True)
    assert PrClass.WRITE.allowed(PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, holder=False, registered=True)
    assert PrClass.WRITE.allowed(ea, holder=True, registered=True)
    assert all(PrClass.ALLOWED.allowed(t, holder=False, registered=False) for t in PrType)


def test_write_protected_medium_write_gets_data_protect():
    async def handler(ctx):
        return ctx.good()

    spec = CommandSpec(0xC1, "SCRIBBLE", 6, usage(0xC1, 0, 0, 0, 0, 0), handler, medium_write=True)
    lu = LogicalUnit(
        MemBackstore(), StorageObjectConfig(plugin="fileio", name="w"), table=OpcodeTable([spec])
    )
    d, m = make_dispatcher(lu, read_only=True)
    assert send(d, m, bytes.fromhex("c10000000000")).sense[12:14] == b"\x27\x00"
    assert sense_of(send(d, m, bytes.fromhex("c10000000000"))) == (7, 0x2700)


def test_log_sense_pages():
    _lu, d, m = _setup()
    assert bytes(send(d, m, cdb(0x4D, 0, 0x00, 0, 0, 0, 0, 0, 0xFF, 0)).data_in) == bytes.fromhex(
        "00000002000c"
    )
    data = bytes(send(d, m, cdb(0x4D, 0, 0x0C, 0, 0, 0, 0, 0, 0xFF, 0)).data_in)
    assert data == bytes.fromhex("0c000018000103080000000001000000000203080000080001000000")
    assert sense_of(send(d, m, cdb(0x4D, 0, 0x0D, 0, 0, 0, 0, 0, 0xFF, 0))) == (5, 0x2400)
    assert sense_of(send(d, m, cdb(0x4D, 1, 0x0C, 0, 0, 0, 0, 0, 0xFF, 0))) == (5, 0x2400)  # SP
    # supported pages and subpages (SPC-4 7.3.18): 00/00, 00/FF, 0C/00
    data = bytes(send(d, m, cdb(0x4D, 0, 0x00, 0xFF, 0, 0, 0, 0, 0xFF, 0)).data_in)
    assert data == bytes.fromhex("40ff0006000000ff0c00")
    # a subpage of an existing page we do not have: field pointer at the SUBPAGE CODE
    assert send(d, m, cdb(0x4D, 0, 0x0C, 0x01, 0, 0, 0, 0, 0xFF, 0)).sense[15:18] == bytes.fromhex("c00003")
    assert send(d, m, cdb(0x4D, 0, 0x0D, 0x01, 0, 0, 0, 0, 0xFF, 0)).sense[15:18] == bytes.fromhex("cd0002")


def test_sense_encodings():
    fp = FieldPointer(0x1234, 3, cd=False)
    assert fp.encode() == bytes.fromhex("8b1234")
    fixed = build_sense(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, field=FieldPointer(2, None))
    assert fixed == bytes.fromhex("700005000000000a00000000240000c00002")
    desc = build_sense(
        SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY_OPERATION, descriptor=True, information=7
    )
    assert desc == bytes.fromhex("720e1d000000000c000a80000000000000000007")
    desc = build_sense(
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, descriptor=True, field=FieldPointer(1, 4)
    )
    assert desc == bytes.fromhex("720524000000000802060000cc000100")
    fixed = build_sense(SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, information=0x10)
    assert fixed == bytes.fromhex("f00003000000100a00000000110000000000")


@given(st.binary(min_size=6, max_size=6))
def test_usage_mask_check_property(raw):
    async def handler(ctx):
        return ctx.good()

    mask = usage(0x12, 0x01, 0xFF, 0xFF, 0xFF, 0x00)
    spec = CommandSpec(0x12, "INQUIRY", 6, mask, handler)
    c = bytes((0x12,)) + raw[1:]
    allowed = spec.usage  # the spec's own mask: `usage` plus the NACA bit it allows in every control byte
    bad = [(i, c[i] & ~allowed[i] & 0xFF) for i in range(1, 6) if c[i] & ~allowed[i] & 0xFF]
    if not bad:
        spec.check_cdb(c)
        return
    with pytest.raises(CheckCondition) as exc:
        spec.check_cdb(c)
    i, bits = bad[0]
    assert exc.value.field == FieldPointer(i, bits.bit_length() - 1, cd=True)


def test_opcode_table_rejects_duplicates_and_bad_usage():
    async def handler(ctx):
        return ctx.good()

    a = CommandSpec(0xC2, "A", 6, usage(0xC2, 0, 0, 0, 0, 0), handler)
    with pytest.raises(ValueError):
        OpcodeTable([a, a])
    with pytest.raises(ValueError):
        CommandSpec(0xC2, "B", 6, usage(0xC3, 0, 0, 0, 0, 0), handler)
    with pytest.raises(ValueError):
        CommandSpec(0xA3, "C", 12, usage(0xA3, 0x01, *bytes(10)), handler, service_action=0x0C)
