"""Physical block size (512-byte logical / 4096-byte physical LUNs): READ CAPACITY(16) LBPPBE, the Block Limits
VPD page, unmap granularity, and where the physical block size comes from (native physical_block_size, LIO's
hw_block_size attribute); the PRE-FETCH cache model taken from the configuration."""

from __future__ import annotations

import asyncio

import pytest

from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.opcodes import OpcodeTable

NEXUS = Nexus("iqn.1994-05.com.example:init", 1, "iqn.2003-01.org.example:tgt", 1)
BS = 512
BLOCKS = 16384


def make_lu(*, physical: int = 0, size_blocks: int = BLOCKS, **attrs: int) -> LogicalUnit:
    bs = RamdiskBackstore(size_blocks * BS, page_size=4096, name="geo")
    cfg = StorageObjectConfig(
        plugin="ramdisk", name="geo", size=bs.size, physical_block_size=physical, attributes=dict(attrs)
    )
    return LogicalUnit(bs, cfg, table=OpcodeTable.standard())


def run(lu: LogicalUnit, cdb: bytes) -> ScsiResult:
    return asyncio.run(lu.execute(ScsiRequest(nexus=NEXUS, lun=0, cdb=cdb, tag=1)))


def rc16(lu: LogicalUnit) -> bytes:
    r = run(lu, bytes((0x9E, 0x10)) + bytes(8) + (32).to_bytes(4, "big") + bytes(2))
    assert r.status == ScsiStatus.GOOD
    return bytes(r.data_in)


def vpd_b0(lu: LogicalUnit) -> bytes:
    r = run(lu, bytes((0x12, 0x01, 0xB0, 0x00, 0xFF, 0x00)))
    assert r.status == ScsiStatus.GOOD
    return bytes(r.data_in)


@pytest.mark.parametrize(("physical", "exponent"), [(0, 0), (512, 0), (1024, 1), (4096, 3), (65536, 7)])
def test_read_capacity_16_reports_the_exponent_and_vpd_b0_agrees(physical: int, exponent: int) -> None:
    lu = make_lu(physical=physical)
    data = rc16(lu)
    assert data[8:12] == (512).to_bytes(4, "big")  # the logical block stays 512 bytes
    assert data[13] & 0x0F == exponent
    assert int.from_bytes(data[14:16], "big") & 0x3FFF == 0  # LOWEST ALIGNED LOGICAL BLOCK ADDRESS
    page = vpd_b0(lu)
    granularity = int.from_bytes(page[6:8], "big")
    optimal = int.from_bytes(page[12:16], "big")
    maximum = int.from_bytes(page[8:12], "big")
    assert granularity == 1 << exponent
    assert optimal % granularity == 0 and maximum % granularity == 0


def test_thin_4k_physical_reports_a_physical_block_as_unmap_granularity() -> None:
    lu = make_lu(physical=4096)
    assert lu.backstore.can_unmap
    page = vpd_b0(lu)
    assert int.from_bytes(page[28:32], "big") == 8  # OPTIMAL UNMAP GRANULARITY = one physical block
    assert int.from_bytes(page[20:24], "big") >= 8  # MAXIMUM UNMAP LBA COUNT >= 2^LBPPBE (libiscsi)
    # a configured granularity wins
    assert int.from_bytes(vpd_b0(make_lu(physical=4096, unmap_granularity=16))[28:32], "big") == 16


def test_unaligned_unmap_inside_a_physical_block_succeeds() -> None:
    # libiscsi WriteSame10/16.UnmapUnaligned: WRITE SAME with UNMAP of lbppb-i blocks at LBA i is GOOD
    lu = make_lu(physical=4096)
    for i in range(1, 8):
        cdb = bytes((0x41, 0x08)) + i.to_bytes(4, "big") + b"\x00" + (8 - i).to_bytes(2, "big") + b"\x00"
        r = asyncio.run(lu.execute(ScsiRequest(nexus=NEXUS, lun=0, cdb=cdb, tag=1, data_out=bytes(512))))
        assert r.status == ScsiStatus.GOOD


def test_lio_hw_block_size_attribute_sets_the_physical_block_size() -> None:
    lu = make_lu(hw_block_size=4096)
    assert lu.warnings == []
    assert rc16(lu)[13] == 3
    assert lu.attributes["physical_block_size"] == 4096


@pytest.mark.parametrize("bad", [1000, 256, 3 * 512])
def test_bad_hw_block_size_is_ignored_with_a_warning(bad: int) -> None:
    lu = make_lu(hw_block_size=bad)
    assert any("hw_block_size" in w for w in lu.warnings)
    assert rc16(lu)[13] == 0
    with pytest.raises(ValueError):
        lu.set_attribute("hw_block_size", bad)


def test_native_physical_block_size_wins_over_hw_block_size() -> None:
    lu = make_lu(physical=2048, hw_block_size=4096)
    assert rc16(lu)[13] == 2


def test_prefetch_cache_blocks_from_the_configuration() -> None:
    prefetch = bytes((0x34, 0, 0, 0, 0, 0, 0, 0, 0x10, 0))  # 16 blocks at LBA 0
    assert run(make_lu(), prefetch).status == ScsiStatus.GOOD  # default: GOOD, as LIO and libiscsi expect
    lu = make_lu(prefetch_cache_blocks=64)
    assert lu.warnings == []
    assert run(lu, prefetch).status == ScsiStatus.CONDITION_MET
