"""WRITE SAME, UNMAP, GET LBA STATUS, READ CAPACITY(16) LBPME/LBPRZ on ramdisk and fileio LUs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from target.backstore.base import Backstore
from target.backstore.fileio import FileioBackstore
from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.opcodes import OpcodeTable
from target.scsi.sbc import SBC_COMMANDS
from target.scsi.sbc.common import block_limits
from target.scsi.sense import Asc, SenseKey, parse_sense

NEXUS = Nexus("iqn.1994-05.com.example:init", 1, "iqn.2003-01.org.example:tgt", 1)
BS = 512
BLOCKS = 16384  # 8 MiB


def make_lu(bs: Backstore | None = None, **attrs: int) -> LogicalUnit:
    bs = bs or RamdiskBackstore(BLOCKS * BS, page_size=4096, name="thin")
    cfg = StorageObjectConfig(plugin="ramdisk", name="thin", size=bs.size, attributes=dict(attrs))
    return LogicalUnit(bs, cfg, table=OpcodeTable(SBC_COMMANDS))


def run(lu: LogicalUnit, cdb: bytes, data: bytes = b"", alloc: int = 0) -> ScsiResult:
    req = ScsiRequest(
        nexus=NEXUS,
        lun=0,
        cdb=cdb,
        tag=1,
        data_out=data,
        expected_out_length=len(data),
        expected_in_length=alloc,
    )
    return asyncio.run(lu.execute(req))


def sense(r: ScsiResult) -> tuple[SenseKey, int]:
    assert r.status == ScsiStatus.CHECK_CONDITION
    return parse_sense(r.sense)


def read(lu: LogicalUnit, lba: int, n: int) -> bytes:
    r = run(lu, b"\x88\x00" + lba.to_bytes(8, "big") + n.to_bytes(4, "big") + b"\x00\x00")
    assert r.status == ScsiStatus.GOOD
    return bytes(r.data_in)


def write(lu: LogicalUnit, lba: int, data: bytes) -> None:
    cdb = b"\x8a\x00" + lba.to_bytes(8, "big") + (len(data) // BS).to_bytes(4, "big") + b"\x00\x00"
    assert run(lu, cdb, data).status == ScsiStatus.GOOD


def ws16(lba: int, n: int, byte1: int = 0) -> bytes:
    return bytes((0x93, byte1)) + lba.to_bytes(8, "big") + n.to_bytes(4, "big") + b"\x00\x00"


def unmap_params(*ranges: tuple[int, int]) -> bytes:
    descs = b"".join(lba.to_bytes(8, "big") + n.to_bytes(4, "big") + bytes(4) for lba, n in ranges)
    return (len(descs) + 6).to_bytes(2, "big") + len(descs).to_bytes(2, "big") + bytes(4) + descs


def unmap_cdb(length: int) -> bytes:
    return bytes.fromhex("4200 00000000 00") + length.to_bytes(2, "big") + b"\x00"


def lba_status(lu: LogicalUnit, lba: int, alloc: int = 1024) -> list[tuple[int, int, int]]:
    r = run(lu, bytes.fromhex("9e12") + lba.to_bytes(8, "big") + alloc.to_bytes(4, "big") + b"\x00\x00")
    assert r.status == ScsiStatus.GOOD
    data = bytes(r.data_in)
    n = int.from_bytes(data[0:4], "big") + 4
    out = []
    for off in range(8, n, 16):
        out.append(
            (
                int.from_bytes(data[off : off + 8], "big"),
                int.from_bytes(data[off + 8 : off + 12], "big"),
                data[off + 12],
            )
        )
    return out


def test_read_capacity_16_reports_thin_provisioning() -> None:
    lu = make_lu()
    r = run(lu, bytes.fromhex("9e10 0000000000000000 00000020 0000"), alloc=32)
    data = bytes(r.data_in)
    assert data[:12] == (BLOCKS - 1).to_bytes(8, "big") + BS.to_bytes(4, "big")
    assert data[14] & 0xC0 == 0x80  # LBPME; LBPRZ is off by default, as LIO's unmap_zeroes_data=0
    assert (
        bytes(
            run(
                make_lu(unmap_zeroes_data=1), bytes.fromhex("9e10 0000000000000000 00000020 0000"), alloc=32
            ).data_in
        )[14]
        & 0xC0
        == 0xC0
    )
    r = run(lu, bytes.fromhex("25000000000000000000"))
    assert bytes(r.data_in) == (BLOCKS - 1).to_bytes(4, "big") + BS.to_bytes(4, "big")
    # allocation length truncates
    assert len(run(lu, bytes.fromhex("9e10 0000000000000000 00000008 0000")).data_in) == 8
    # PMI=0 with an LBA is invalid
    assert sense(run(lu, bytes.fromhex("2500 00000001 0000 00 00")))[1] == Asc.INVALID_FIELD_IN_CDB


def test_physical_block_exponent() -> None:
    bs = RamdiskBackstore(BLOCKS * BS, name="p")
    cfg = StorageObjectConfig(plugin="ramdisk", name="p", size=bs.size, physical_block_size=4096)
    lu = LogicalUnit(bs, cfg, table=OpcodeTable(SBC_COMMANDS))
    data = bytes(run(lu, bytes.fromhex("9e10 0000000000000000 00000020 0000")).data_in)
    assert data[13] & 0x0F == 3


def test_write_same_writes_pattern() -> None:
    lu = make_lu()
    blk = bytes(range(256)) * 2
    assert run(lu, ws16(10, 100), blk).status == ScsiStatus.GOOD
    assert read(lu, 10, 100) == blk * 100
    assert read(lu, 110, 1) == bytes(BS)
    # WRITE SAME(10)
    assert run(lu, bytes.fromhex("4100 00000200 00 0003 00"), b"\x77" * BS).status == ScsiStatus.GOOD
    assert read(lu, 0x200, 3) == b"\x77" * (3 * BS)


def test_write_same_unmap_deallocates() -> None:
    # LBPRZ=1: unmap only when the block is zeros; UNMAP=1 with non-zero data writes the data (SBC-3 4.7.3.4)
    lu = make_lu(unmap_zeroes_data=1)
    write(lu, 0, b"\xff" * (64 * BS))
    assert lba_status(lu, 0)[0] == (0, 64, 0)
    assert run(lu, ws16(0, 64, 0x08), bytes(BS)).status == ScsiStatus.GOOD
    assert read(lu, 0, 64) == bytes(64 * BS)
    assert lba_status(lu, 0)[0] == (0, BLOCKS, 1)
    assert run(lu, ws16(0, 8, 0x08), b"\x01" * BS).status == ScsiStatus.GOOD
    assert read(lu, 0, 8) == b"\x01" * (8 * BS)


def test_write_same_unmap_without_lbprz_deallocates_whatever_the_data() -> None:
    # LBPRZ=0: unmapped content is indeterminate, so UNMAP=1 deallocates even for a non-zero block (as LIO)
    lu = make_lu()
    write(lu, 0, b"\xff" * (16 * BS))
    assert run(lu, ws16(0, 16, 0x08), b"\xff" * BS).status == ScsiStatus.GOOD
    assert lba_status(lu, 0)[0] == (0, BLOCKS, 1)


def test_write_same_checks() -> None:
    lu = make_lu()
    # ANCHOR is not supported
    assert sense(run(lu, ws16(0, 1, 0x10), bytes(BS)))[1] == Asc.INVALID_FIELD_IN_CDB
    assert sense(run(lu, ws16(0, 1, 0x18), bytes(BS)))[1] == Asc.INVALID_FIELD_IN_CDB
    # Data-Out must be exactly one block
    assert run(lu, ws16(0, 1, 0x08), bytes(BS // 2)).status == ScsiStatus.CHECK_CONDITION
    assert run(lu, ws16(0, 1, 0x08), bytes(BS * 2)).status == ScsiStatus.CHECK_CONDITION
    # longer than MAXIMUM WRITE SAME LENGTH (0x1000 by default)
    limit = block_limits(lu).max_write_same_length
    assert limit == 0x1000
    assert sense(run(lu, ws16(0, limit + 1), bytes(BS)))[1] == Asc.INVALID_FIELD_IN_CDB
    assert run(lu, ws16(BLOCKS - limit, limit), bytes(BS)).status == ScsiStatus.GOOD
    # 0 blocks = to the end of the medium, which here is more than the limit
    assert sense(run(lu, ws16(0, 0), bytes(BS)))[1] == Asc.INVALID_FIELD_IN_CDB
    assert run(lu, ws16(BLOCKS - 5, 0), b"\x09" * BS).status == ScsiStatus.GOOD
    assert read(lu, BLOCKS - 5, 5) == b"\x09" * (5 * BS)
    # beyond the end
    for lba in (BLOCKS + 1, 1 << 63, (1 << 64) - 1):
        assert sense(run(lu, ws16(lba, 0), bytes(BS)))[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    # NDOB: no Data-Out, zeros written
    write(lu, 3, b"\xee" * BS)
    assert run(lu, ws16(3, 1, 0x01)).status == ScsiStatus.GOOD
    assert read(lu, 3, 1) == bytes(BS)


def test_write_same_unmap_needs_lbpws() -> None:
    lu = make_lu(emulate_tpws=0, emulate_tpu=0)
    assert sense(run(lu, ws16(0, 1, 0x08), bytes(BS))) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)


def test_unmap_then_get_lba_status() -> None:
    lu = make_lu()
    write(lu, 0, b"\xab" * (256 * BS))
    params = unmap_params((8, 8), (64, 64))
    assert run(lu, unmap_cdb(len(params)), params).status == ScsiStatus.GOOD
    assert read(lu, 8, 8) == bytes(8 * BS)
    assert read(lu, 0, 8) == b"\xab" * (8 * BS)
    assert lba_status(lu, 0)[:5] == [(0, 8, 0), (8, 8, 1), (16, 48, 0), (64, 64, 1), (128, 128, 0)]
    # the first descriptor starts at the requested LBA
    assert lba_status(lu, 70)[0] == (70, 58, 1)
    # allocation length limits the descriptors
    assert len(lba_status(lu, 0, alloc=8 + 32)) == 2


def test_get_lba_status_beyond_end() -> None:
    lu = make_lu()
    r = run(lu, bytes.fromhex("9e12") + BLOCKS.to_bytes(8, "big") + (24).to_bytes(4, "big") + b"\x00\x00")
    assert sense(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    assert lba_status(lu, BLOCKS - 1) == [(BLOCKS - 1, 1, 1)]


def test_unmap_parameter_validation() -> None:
    lu = make_lu()
    write(lu, 0, b"\x01" * (16 * BS))
    # parameter list length 0: nothing happens
    assert run(lu, unmap_cdb(0)).status == ScsiStatus.GOOD
    # shorter than the header
    assert sense(run(lu, unmap_cdb(4), bytes(4)))[1] == Asc.PARAMETER_LIST_LENGTH_ERROR
    # block descriptor data length beyond the data sent
    bad = bytes.fromhex("0016 0020 00000000") + bytes(16)
    assert sense(run(lu, unmap_cdb(len(bad)), bad))[1] == Asc.PARAMETER_LIST_LENGTH_ERROR
    # beyond the end: nothing unmapped, not even the valid first descriptor
    params = unmap_params((0, 4), (BLOCKS - 1, 2))
    assert sense(run(lu, unmap_cdb(len(params)), params))[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    assert read(lu, 0, 4) == b"\x01" * (4 * BS)
    # too many LBAs in one descriptor: field pointer at the second descriptor's count (byte 8 + 16 + 8)
    big = block_limits(lu).max_unmap_lba_count + 1
    params = unmap_params((0, 1), (0, big))
    r = run(lu, unmap_cdb(len(params)), params)
    assert sense(r)[1] == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert r.sense[15:18] == bytes((0x80, 0x00, 32))
    # too many descriptors
    n = block_limits(lu).max_unmap_block_descriptor_count + 1
    params = unmap_params(*[(i, 1) for i in range(n)])
    r = run(lu, unmap_cdb(len(params)), params)
    assert sense(r)[1] == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert r.sense[15:18] == bytes((0x80, 0x00, 0x02))
    # parameter list length larger than what arrived
    params = unmap_params((0, 1))
    assert sense(run(lu, unmap_cdb(len(params) + 16), params))[1] == Asc.PARAMETER_LIST_LENGTH_ERROR
    # a zero-length descriptor and a trailing partial descriptor are ignored
    params = unmap_params((2, 0), (3, 1)) + bytes(7)
    params = params[:2] + (len(params) - 8).to_bytes(2, "big") + params[4:]
    assert run(lu, unmap_cdb(len(params)), params).status == ScsiStatus.GOOD
    assert read(lu, 2, 2) == b"\x01" * BS + bytes(BS)


def test_unmap_disabled_without_tpu(tmp_path: Path) -> None:
    bs = FileioBackstore(str(tmp_path / "thick"), size=BLOCKS * BS, thin=False)
    try:
        lu = make_lu(bs)
        params = unmap_params((0, 1))
        r = run(lu, unmap_cdb(len(params)), params)
        assert sense(r) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE)
        data = bytes(run(lu, bytes.fromhex("9e10 0000000000000000 00000020 0000")).data_in)
        assert data[14] & 0xC0 == 0  # no LBPME / LBPRZ
        assert lba_status(lu, 0) == [(0, BLOCKS, 0)]
    finally:
        bs.close()


@pytest.mark.parametrize("thin", [True])
def test_fileio_unmap_and_lba_status(tmp_path: Path, thin: bool) -> None:
    bs = FileioBackstore(str(tmp_path / "thin"), size=BLOCKS * BS, thin=thin)
    try:
        lu = make_lu(bs)
        write(lu, 0, b"\x5a" * (4096 * BS))  # 2 MiB
        params = unmap_params((1024, 2048))  # 1 MiB hole in the middle
        assert run(lu, unmap_cdb(len(params)), params).status == ScsiStatus.GOOD
        assert read(lu, 1024, 8) == bytes(8 * BS)
        assert lba_status(lu, 0)[:4] == [
            (0, 1024, 0),
            (1024, 2048, 1),
            (3072, 1024, 0),
            (4096, BLOCKS - 4096, 1),
        ]
    finally:
        bs.close()


def test_sync_cache_prefetch_start_stop() -> None:
    lu = make_lu()
    assert run(lu, bytes.fromhex("3500 00000000 00 0000 00")).status == ScsiStatus.GOOD
    assert run(lu, bytes.fromhex("9102 0000000000000000 00000010 0000")).status == ScsiStatus.GOOD
    r = run(lu, bytes.fromhex("3500") + BLOCKS.to_bytes(4, "big") + bytes.fromhex("00 0001 00"))
    assert sense(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    # PRE-FETCH: GOOD by default, CONDITION MET when a modelled cache holds the range
    assert run(lu, bytes.fromhex("3400 00000000 00 0010 00")).status == ScsiStatus.GOOD
    assert run(lu, bytes.fromhex("9002 0000000000000000 00000010 0000")).status == ScsiStatus.GOOD
    lu.attributes["prefetch_cache_blocks"] = 64
    assert run(lu, bytes.fromhex("3400 00000000 00 0010 00")).status == ScsiStatus.CONDITION_MET
    assert run(lu, bytes.fromhex("3400 00000000 00 0100 00")).status == ScsiStatus.GOOD
    r = run(lu, bytes.fromhex("9000") + (BLOCKS - 1).to_bytes(8, "big") + bytes.fromhex("00000002 0000"))
    assert sense(r)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    # START STOP UNIT: start, stop (flushes), power condition, bad power condition
    assert run(lu, bytes.fromhex("1b 00 00 00 01 00")).status == ScsiStatus.GOOD
    assert run(lu, bytes.fromhex("1b 01 00 00 00 00")).status == ScsiStatus.GOOD
    assert run(lu, bytes.fromhex("1b 00 00 00 30 00")).status == ScsiStatus.GOOD
    assert sense(run(lu, bytes.fromhex("1b 00 00 00 50 00")))[1] == Asc.INVALID_FIELD_IN_CDB
    # PREVENT ALLOW MEDIUM REMOVAL: prevention blocks an eject
    assert run(lu, bytes.fromhex("1e 00 00 00 01 00")).status == ScsiStatus.GOOD
    r = run(lu, bytes.fromhex("1b 00 00 00 02 00"))
    assert sense(r) == (SenseKey.ILLEGAL_REQUEST, 0x5302)
    assert run(lu, bytes.fromhex("1e 00 00 00 00 00")).status == ScsiStatus.GOOD
    assert run(lu, bytes.fromhex("1b 00 00 00 02 00")).status == ScsiStatus.GOOD
    assert sense(run(lu, bytes.fromhex("1e 00 00 00 02 00")))[1] == Asc.INVALID_FIELD_IN_CDB
