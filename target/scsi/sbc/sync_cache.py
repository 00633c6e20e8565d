"""SYNCHRONIZE CACHE (10/16) and PRE-FETCH (10/16): SBC-3 5.22, 5.23, 5.13, 5.14.

SYNCHRONIZE CACHE makes every cached write durable (the backstore's flush covers the whole medium, which is
allowed: SBC-3 5.22 lets the device server synchronize more than the range asked for). NUMBER OF LOGICAL BLOCKS
0 means "to the end of the medium". IMMED is accepted; the flush still completes before status (a stricter
answer than the bit requires).

PRE-FETCH: SBC-3 5.13 answers CONDITION MET when the whole range fits the cache and GOOD when it does not. We
keep GOOD by default on purpose: libiscsi's test-tool (1.19 and its current master) sends every PRE-FETCH in
test_prefetch10/16_simple, _flags and _0blocks with EXPECT_STATUS_GOOD, and its check_result() fails any status
other than GOOD when GOOD is expected (CONDITION MET included); LIO answers GOOD as well, and our media have no
cache we could pin blocks in. The LU attribute `prefetch_cache_blocks` (> 0, a sanlab extension, default 0)
models a cache of that many blocks: then a range that fits gets CONDITION MET, as SBC-3 describes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult, ScsiStatus
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec
from target.scsi.sbc import common

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

SYNCHRONIZE_CACHE_10 = 0x35
SYNCHRONIZE_CACHE_16 = 0x91
PRE_FETCH_10 = 0x34
PRE_FETCH_16 = 0x90


def _lba_count(cdb: bytes) -> tuple[int, int]:
    if cdb[0] in (SYNCHRONIZE_CACHE_10, PRE_FETCH_10):
        return int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
    return int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")


async def synchronize_cache(ctx: CommandContext) -> ScsiResult:
    lba, count = _lba_count(ctx.cdb)
    common.check_lba_range(ctx.lu, lba, count)
    await common.medium_flush(ctx.lu)
    return ScsiResult(status=ScsiStatus.GOOD)


async def pre_fetch(ctx: CommandContext) -> ScsiResult:
    lba, count = _lba_count(ctx.cdb)
    common.check_lba_range(ctx.lu, lba, count)
    if count == 0:
        count = common.num_blocks(ctx.lu) - lba  # 0 = to the end of the medium
    cache = common.attr(ctx.lu, "prefetch_cache_blocks", 0)
    if cache > 0 and count <= cache:
        return ScsiResult(status=ScsiStatus.CONDITION_MET)
    return ScsiResult(status=ScsiStatus.GOOD)


# byte 1: SYNC_NV (bit 2, obsolete in SBC-3 but harmless), IMMED (bit 1); PRE-FETCH: IMMED
COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=SYNCHRONIZE_CACHE_10,
        name="SYNCHRONIZE CACHE(10)",
        cdb_length=10,
        usage=bytes((0x35, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x00)),
        handler=synchronize_cache,
        pr_class=PrClass.WRITE,
    ),
    CommandSpec(
        opcode=SYNCHRONIZE_CACHE_16,
        name="SYNCHRONIZE CACHE(16)",
        cdb_length=16,
        usage=bytes((0x91, 0x06, *[0xFF] * 12, 0x3F, 0x00)),
        handler=synchronize_cache,
        pr_class=PrClass.WRITE,
    ),
    CommandSpec(
        opcode=PRE_FETCH_10,
        name="PRE-FETCH(10)",
        cdb_length=10,
        usage=bytes((0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x00)),
        handler=pre_fetch,
        pr_class=PrClass.READ,
    ),
    CommandSpec(
        opcode=PRE_FETCH_16,
        name="PRE-FETCH(16)",
        cdb_length=16,
        usage=bytes((0x90, 0x02, *[0xFF] * 12, 0x3F, 0x00)),
        handler=pre_fetch,
        pr_class=PrClass.READ,
    ),
]
