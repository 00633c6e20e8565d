"""READ/WRITE/VERIFY/WRITE AND VERIFY through the opcode table and LogicalUnit, with byte-literal CDBs."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.opcodes import OpcodeTable
from target.scsi.sbc import SBC_COMMANDS
from target.scsi.sense import Asc, SenseKey, parse_sense

NEXUS = Nexus("iqn.1994-05.com.example:init", 0x23D000000001, "iqn.2003-01.org.example:tgt", 1)
BS = 512
BLOCKS = 2048


def make_lu(blocks: int = BLOCKS, **attrs: int) -> LogicalUnit:
    cfg = StorageObjectConfig(plugin="ramdisk", name="r0", size=blocks * BS, attributes=dict(attrs))
    return LogicalUnit(RamdiskBackstore(blocks * BS, name="r0"), cfg, table=OpcodeTable(SBC_COMMANDS))


def execute(lu: LogicalUnit, cdb: bytes, data: bytes = b"", expected_in: int = 0, tag: int = 1) -> ScsiResult:
    req = ScsiRequest(
        nexus=NEXUS,
        lun=0,
        cdb=cdb,
        tag=tag,
        data_out=data,
        expected_in_length=expected_in,
        expected_out_length=len(data),
    )
    return asyncio.run(lu.execute(req))


def sense_of(result: ScsiResult) -> tuple[SenseKey, int]:
    assert result.status == ScsiStatus.CHECK_CONDITION
    return parse_sense(result.sense)


def test_write10_read10_round_trip() -> None:
    lu = make_lu()
    data = bytes(range(256)) * 4  # 2 blocks
    # WRITE(10) LBA 0x10, 2 blocks
    r = execute(lu, bytes.fromhex("2a00 00000010 00 0002 00"), data)
    assert r.status == ScsiStatus.GOOD
    r = execute(lu, bytes.fromhex("2800 00000010 00 0002 00"), expected_in=1024)
    assert r.status == ScsiStatus.GOOD and bytes(r.data_in) == data
    # READ(16) of the same blocks plus one unwritten block
    r = execute(lu, bytes.fromhex("8800 0000000000000010 00000003 0000"), expected_in=1536)
    assert bytes(r.data_in) == data + bytes(512)


def test_read12_write12_write16_fua() -> None:
    lu = make_lu()
    blk = b"\xa5" * 512
    assert execute(lu, bytes.fromhex("aa08 00000005 00000001 0000"), blk).status == ScsiStatus.GOOD  # FUA
    assert execute(lu, bytes.fromhex("8a18 0000000000000006 00000001 0000"), blk).status == ScsiStatus.GOOD
    r = execute(lu, bytes.fromhex("a800 00000005 00000002 0000"), expected_in=1024)
    assert bytes(r.data_in) == blk * 2


def test_read6_write6_zero_means_256() -> None:
    lu = make_lu()
    # WRITE(6) LBA 1, 1 block
    assert execute(lu, bytes.fromhex("0a 000001 01 00"), b"\x11" * 512).status == ScsiStatus.GOOD
    r = execute(lu, bytes.fromhex("08 000000 00 00"), expected_in=256 * 512)
    assert r.status == ScsiStatus.GOOD
    assert len(r.data_in) == 256 * 512
    assert bytes(r.data_in[512:1024]) == b"\x11" * 512


def test_out_of_range() -> None:
    lu = make_lu()
    # READ(10) last block + 1 block beyond
    r = execute(lu, bytes.fromhex("2800 000007ff 00 0002 00"))
    assert sense_of(r) == (SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE)
    # 0 blocks at capacity is fine (LIO), at capacity + 1 is not
    assert execute(lu, bytes.fromhex("2800 00000800 00 0000 00")).status == ScsiStatus.GOOD
    r = execute(lu, bytes.fromhex("2800 00000801 00 0000 00"))
    assert sense_of(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    # READ(16) at LBA 2^64-1 (no wrap-around)
    r = execute(lu, bytes.fromhex("8800 ffffffffffffffff 00000001 0000"))
    assert sense_of(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    r = execute(lu, bytes.fromhex("8a00 00000000000007ff 00000002 0000"), bytes(1024))
    assert sense_of(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE


def test_read_residuals_left_to_transport() -> None:
    lu = make_lu()
    # EDTL 0 for a 1-block read: the handler still returns the block; the transport reports the overflow
    r = execute(lu, bytes.fromhex("2800 00000000 00 0001 00"), expected_in=0)
    assert r.status == ScsiStatus.GOOD and len(r.data_in) == 512


def test_write_edtl_mismatch_writes_what_fits_and_reports_residual() -> None:
    lu = make_lu()
    execute(lu, bytes.fromhex("2a00 00000000 00 0002 00"), b"a" * 1024)
    # EDTL 512 < 2 blocks: the block sent is written, the second stays; GOOD with overflow 512
    r = execute(lu, bytes.fromhex("2a00 00000000 00 0002 00"), b"b" * 512)
    assert r.status == ScsiStatus.GOOD and r.out_overflow == 512 and r.out_residual == 0
    assert bytes(execute(lu, bytes.fromhex("2800 00000000 00 0002 00")).data_in) == b"b" * 512 + b"a" * 512
    # EDTL 1536 > 2 blocks: only the CDB's two blocks are written; underflow 512
    r = execute(lu, bytes.fromhex("2a00 00000000 00 0002 00"), b"c" * 1536)
    assert r.status == ScsiStatus.GOOD and r.out_residual == 512 and r.out_overflow == 0
    assert bytes(execute(lu, bytes.fromhex("2800 00000000 00 0003 00")).data_in) == b"c" * 1024 + bytes(512)
    # EDTL 200: Data-Out ends inside a block -> INVALID FIELD IN COMMAND INFORMATION UNIT, nothing written
    r = execute(lu, bytes.fromhex("2a00 00000000 00 0001 00"), b"d" * 200)
    assert sense_of(r) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT)
    assert r.out_overflow == 312
    assert bytes(execute(lu, bytes.fromhex("2800 00000000 00 0001 00")).data_in) == b"c" * 512


def test_protect_fields_rejected() -> None:
    lu = make_lu()
    # RDPROTECT=1 without protection information -> INVALID FIELD IN CDB, byte 1
    r = execute(lu, bytes.fromhex("2820 00000000 00 0001 00"))
    assert sense_of(r) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
    assert r.sense[15:18] == bytes((0xC8 | 5, 0x00, 0x01))  # SKSV, C/D, BPV, bit 5, byte 1
    r = execute(lu, bytes.fromhex("2a20 00000000 00 0001 00"), bytes(512))
    assert sense_of(r)[1] == Asc.INVALID_FIELD_IN_CDB


def test_dpo_fua_follow_attributes() -> None:
    lu = make_lu(emulate_fua_write=0)
    r = execute(lu, bytes.fromhex("2a08 00000000 00 0001 00"), bytes(512))
    assert sense_of(r)[1] == Asc.INVALID_FIELD_IN_CDB
    assert execute(lu, bytes.fromhex("2a10 00000000 00 0001 00"), bytes(512)).status == ScsiStatus.GOOD


def test_max_transfer_length() -> None:
    lu = make_lu(blocks=40000, hw_max_sectors=128)
    r = execute(lu, bytes.fromhex("2800 00000000 00 0081 00"))
    assert sense_of(r)[1] == Asc.INVALID_FIELD_IN_CDB
    assert execute(lu, bytes.fromhex("2800 00000000 00 0080 00")).status == ScsiStatus.GOOD


def test_verify_bytchk() -> None:
    lu = make_lu()
    data = bytes(range(256)) * 8  # 4 blocks
    execute(lu, bytes.fromhex("2a00 00000020 00 0004 00"), data)
    # VERIFY(10) BYTCHK=1 (byte 1 = 02h), matching
    assert execute(lu, bytes.fromhex("2f02 00000020 00 0004 00"), data).status == ScsiStatus.GOOD
    # one byte flipped at offset 1000 -> MISCOMPARE with INFORMATION = 1000
    bad = bytearray(data)
    bad[1000] ^= 0xFF
    r = execute(lu, bytes.fromhex("2f02 00000020 00 0004 00"), bytes(bad))
    assert sense_of(r) == (SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY_OPERATION)
    assert r.sense[0] == 0xF0 and int.from_bytes(r.sense[3:7], "big") == 1000
    # BYTCHK=0: medium verification only, no data
    assert execute(lu, bytes.fromhex("2f00 00000020 00 0004 00")).status == ScsiStatus.GOOD
    # BYTCHK=3 (06h): one block compared against every block
    execute(lu, bytes.fromhex("2a00 00000040 00 0003 00"), b"\x5a" * 1536)
    assert execute(lu, bytes.fromhex("8f06 0000000000000040 00000003 0000"), b"\x5a" * 512).status == 0
    r = execute(lu, bytes.fromhex("8f06 0000000000000040 00000004 0000"), b"\x5a" * 512)
    assert sense_of(r)[0] == SenseKey.MISCOMPARE and int.from_bytes(r.sense[3:7], "big") == 1536
    # BYTCHK=2 reserved
    r = execute(lu, bytes.fromhex("af04 00000000 00000001 0000"), bytes(512))
    assert sense_of(r)[1] == Asc.INVALID_FIELD_IN_CDB
    # out of range
    r = execute(lu, bytes.fromhex("2f00 00000800 00 0001 00"))
    assert sense_of(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE


def test_write_and_verify() -> None:
    lu = make_lu()
    data = b"\x42" * 1024
    assert execute(lu, bytes.fromhex("2e02 00000007 00 0002 00"), data).status == ScsiStatus.GOOD
    assert execute(lu, bytes.fromhex("ae00 00000009 00000001 0000"), data[:512]).status == ScsiStatus.GOOD
    assert execute(lu, bytes.fromhex("8e02 0000000000000007 00000003 0000"), data + data[:512]).status == 0
    assert bytes(execute(lu, bytes.fromhex("2800 00000007 00 0003 00")).data_in) == b"\x42" * 1536


def test_read_only_lun_refuses_writes() -> None:
    lu = make_lu()
    req = ScsiRequest(
        nexus=NEXUS,
        lun=0,
        cdb=bytes.fromhex("2a00 00000000 00 0001 00"),
        tag=9,
        data_out=bytes(512),
        expected_out_length=512,
    )
    r = asyncio.run(lu.execute(req, read_only=True))
    assert sense_of(r) == (SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)


@settings(max_examples=40, deadline=None)
@given(lba=st.integers(0, BLOCKS + 10), n=st.integers(0, 20), cdb_len=st.sampled_from([10, 12, 16]))
def test_read_range_property(lba: int, n: int, cdb_len: int) -> None:
    """Any READ either returns exactly n blocks or fails with LBA OUT OF RANGE when it leaves the medium."""
    lu = make_lu()
    if cdb_len == 10:
        cdb = b"\x28\x00" + lba.to_bytes(4, "big") + b"\x00" + n.to_bytes(2, "big") + b"\x00"
    elif cdb_len == 12:
        cdb = b"\xa8\x00" + lba.to_bytes(4, "big") + n.to_bytes(4, "big") + b"\x00\x00"
    else:
        cdb = b"\x88\x00" + lba.to_bytes(8, "big") + n.to_bytes(4, "big") + b"\x00\x00"
    r = execute(lu, cdb, expected_in=n * BS)
    if lba + n > BLOCKS:
        assert sense_of(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    else:
        assert r.status == ScsiStatus.GOOD and len(r.data_in) == n * BS
