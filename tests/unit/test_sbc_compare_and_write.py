"""COMPARE AND WRITE: match, miscompare offset, limits, and atomicity against concurrent writers."""

from __future__ import annotations

import asyncio

from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.opcodes import OpcodeTable
from target.scsi.sbc import SBC_COMMANDS
from target.scsi.sbc.range_lock import RangeLock
from target.scsi.sense import Asc, SenseKey, parse_sense

NEXUS = Nexus("iqn.1994-05.com.example:init", 1, "iqn.2003-01.org.example:tgt", 1)
BS = 512


class SlowRamdisk(RamdiskBackstore):
    """Yields to the loop inside every read and write, so unlocked read-modify-write sequences would interleave."""

    async def read(self, offset: int, length: int) -> bytearray:
        await asyncio.sleep(0)
        data = await super().read(offset, length)
        await asyncio.sleep(0)
        return data

    async def write(self, offset: int, data: bytes | bytearray | memoryview, fua: bool = False) -> None:
        await asyncio.sleep(0)
        await super().write(offset, data, fua)


def make_lu(slow: bool = False, **attrs: int) -> LogicalUnit:
    cls = SlowRamdisk if slow else RamdiskBackstore
    cfg = StorageObjectConfig(plugin="ramdisk", name="caw", size=1024 * BS, attributes=dict(attrs))
    return LogicalUnit(cls(1024 * BS, name="caw"), cfg, table=OpcodeTable(SBC_COMMANDS))


def req(cdb: bytes, data: bytes = b"", tag: int = 1) -> ScsiRequest:
    return ScsiRequest(nexus=NEXUS, lun=0, cdb=cdb, tag=tag, data_out=data, expected_out_length=len(data))


def caw_cdb(lba: int, n: int, byte1: int = 0) -> bytes:
    return bytes((0x89, byte1)) + lba.to_bytes(8, "big") + b"\x00\x00\x00" + bytes((n, 0, 0))


def run(lu: LogicalUnit, r: ScsiRequest) -> ScsiResult:
    return asyncio.run(lu.execute(r))


def write10(lba: int, data: bytes) -> bytes:
    return b"\x2a\x00" + lba.to_bytes(4, "big") + b"\x00" + (len(data) // BS).to_bytes(2, "big") + b"\x00"


def test_byte_literal_cdb_layout() -> None:
    assert caw_cdb(0x10, 2) == bytes.fromhex("8900 0000000000000010 000000 02 00 00")


def test_match_writes_multi_block() -> None:
    lu = make_lu()
    old, new = b"A" * (3 * BS), b"B" * (3 * BS)
    assert run(lu, req(write10(5, old), old)).status == ScsiStatus.GOOD
    r = run(lu, req(caw_cdb(5, 3), old + new))
    assert r.status == ScsiStatus.GOOD
    got = run(lu, req(bytes.fromhex("2800 00000005 00 0003 00")))
    assert bytes(got.data_in) == new


def test_miscompare_reports_first_differing_offset_and_writes_nothing() -> None:
    lu = make_lu()
    old = b"A" * (2 * BS)
    run(lu, req(write10(0, old), old))
    verify = bytearray(old)
    verify[2 * BS - 27] = ord("C")
    r = run(lu, req(caw_cdb(0, 2), bytes(verify) + b"B" * (2 * BS)))
    assert r.status == ScsiStatus.CHECK_CONDITION
    assert parse_sense(r.sense) == (SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY_OPERATION)
    assert r.sense[0] & 0x80  # VALID
    assert int.from_bytes(r.sense[3:7], "big") == 2 * BS - 27
    assert bytes(run(lu, req(bytes.fromhex("2800 00000000 00 0002 00"))).data_in) == old


def test_limits_and_sizes() -> None:
    lu = make_lu()
    # not a LIO attribute: the Block Limits value is read from the LU's attribute dict when present
    lu.attributes["max_compare_and_write_len"] = 4
    r = run(lu, req(caw_cdb(0, 5), bytes(10 * BS)))
    assert parse_sense(r.sense) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
    # Data-Out of 4 blocks for NUMBER OF LOGICAL BLOCKS 1 / 3: refused
    assert run(lu, req(caw_cdb(0, 1), bytes(4 * BS))).status == ScsiStatus.CHECK_CONDITION
    assert run(lu, req(caw_cdb(0, 3), bytes(4 * BS))).status == ScsiStatus.CHECK_CONDITION
    # zero blocks: nothing happens
    assert run(lu, req(caw_cdb(0, 0))).status == ScsiStatus.GOOD
    # beyond the end
    r = run(lu, req(caw_cdb(1023, 2), bytes(4 * BS)))
    assert parse_sense(r.sense)[1] == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    # WRPROTECT is not supported
    assert parse_sense(run(lu, req(caw_cdb(0, 1, 0x20), bytes(2 * BS))).sense)[1] == Asc.INVALID_FIELD_IN_CDB
    # FUA is accepted
    assert run(lu, req(caw_cdb(0, 1, 0x08), bytes(2 * BS))).status == ScsiStatus.GOOD


def test_disabled_by_emulate_caw() -> None:
    lu = make_lu(emulate_caw=0)
    r = run(lu, req(caw_cdb(0, 1), bytes(2 * BS)))
    assert parse_sense(r.sense) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE)


def test_atomic_counter_under_concurrency() -> None:
    """Workers increment a counter in block 7 with read + COMPARE AND WRITE, retrying on MISCOMPARE, while plain
    writers hammer the neighbouring blocks 6 and 8 of the same CAW range. No increment may be lost."""
    lu = make_lu(slow=True)
    workers, rounds = 6, 8
    tags = iter(range(1, 1_000_000))

    def block(v: int) -> bytes:
        return v.to_bytes(8, "big") * (BS // 8)

    async def worker() -> None:
        done = 0
        while done < rounds:
            r = await lu.execute(req(bytes.fromhex("2800 00000007 00 0001 00"), tag=next(tags)))
            cur = int.from_bytes(bytes(r.data_in[:8]), "big")
            r = await lu.execute(req(caw_cdb(7, 1), block(cur) + block(cur + 1), tag=next(tags)))
            if r.status == ScsiStatus.GOOD:
                done += 1
            else:
                assert parse_sense(r.sense)[0] == SenseKey.MISCOMPARE

    async def writer() -> None:
        for i in range(20):
            r = await lu.execute(req(write10(6, b"\x01" * BS), b"\x01" * BS, tag=next(tags)))
            assert r.status == ScsiStatus.GOOD, i

    async def main() -> int:
        await lu.execute(req(write10(7, block(0)), block(0), tag=next(tags)))
        await asyncio.gather(*(worker() for _ in range(workers)), writer())
        r = await lu.execute(req(bytes.fromhex("2800 00000007 00 0001 00"), tag=next(tags)))
        return int.from_bytes(bytes(r.data_in[:8]), "big")

    assert asyncio.run(main()) == workers * rounds


def test_range_lock_orders_overlaps_only() -> None:
    async def main() -> list[str]:
        lock = RangeLock()
        events: list[str] = []
        gate = asyncio.Event()

        async def hold(name: str, start: int, count: int, wait: bool) -> None:
            async with lock.hold(start, count):
                events.append(f"{name}+")
                if wait:
                    await gate.wait()
                events.append(f"{name}-")

        a = asyncio.create_task(hold("a", 0, 10, True))
        await asyncio.sleep(0)
        b = asyncio.create_task(hold("b", 5, 10, False))  # overlaps a: waits
        c = asyncio.create_task(hold("c", 10, 10, False))  # disjoint from a, overlaps b: waits for b (FIFO)
        d = asyncio.create_task(hold("d", 100, 1, False))  # disjoint: runs at once
        await asyncio.sleep(0.01)
        assert lock.held == 3
        gate.set()
        await asyncio.gather(a, b, c, d)
        assert lock.held == 0
        return events

    events = asyncio.run(main())
    assert events.index("d-") < events.index("a-")
    assert events.index("a-") < events.index("b+") < events.index("b-") < events.index("c+")
