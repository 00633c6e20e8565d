"""WRITE SAME (10) and (16): SBC-3 5.41, 5.42 (and the thin-provisioning rules of 4.7.3.4).

One block of Data-Out (none with NDOB=1: a block of zeros) is written to every block of the range. NUMBER OF
LOGICAL BLOCKS 0 means "to the end of the medium" (we report WSNZ=0). A range longer than the Block Limits
MAXIMUM WRITE SAME LENGTH is INVALID FIELD IN CDB. UNMAP=1 (needs LBPWS, the emulate_tpws attribute) deallocates
the range when that keeps the data readable as sent: the block is all zeros and unmapped blocks read as zeros
(LBPRZ); otherwise the data is written. ANCHOR is not supported (ANC_SUP=0), so it is rejected by the CDB usage
check (INVALID FIELD IN CDB, byte 1 bit 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult, ScsiStatus
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec, Direction
from target.scsi.sbc import common
from target.scsi.sbc.read_write import data_out_length
from target.scsi.sense import CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

WRITE_SAME_10 = 0x41
WRITE_SAME_16 = 0x93


def lbpws_enabled(lu: object) -> bool:
    bs = common.backstore(lu)
    return bs.can_unmap and bool(common.attr(lu, "emulate_tpws", int(bs.can_unmap)))


async def write_same(ctx: CommandContext) -> ScsiResult:
    lu = ctx.lu
    cdb = ctx.cdb
    if cdb[0] == WRITE_SAME_10:
        lba, nblocks, nlb_byte = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big"), 7
        ndob = False
    else:
        lba, nblocks, nlb_byte = int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big"), 10
        ndob = bool(cdb[1] & 0x01)
    unmap = bool(cdb[1] & 0x08)
    capacity = common.num_blocks(lu)
    if lba > capacity:
        common.check_lba_range(lu, lba, 0)
    if nblocks == 0:
        nblocks = capacity - lba  # WSNZ=0: to the end of the medium
    limit = common.block_limits(lu).max_write_same_length
    if limit and nblocks > limit:
        raise CheckCondition.invalid_cdb(nlb_byte)
    common.check_lba_range(lu, lba, nblocks)
    if unmap and not lbpws_enabled(lu):
        raise CheckCondition.invalid_cdb(1, 3)
    bs = common.block_size(lu)
    needed = 0 if ndob else bs
    edtl = data_out_length(ctx)
    if edtl != needed or len(ctx.data_out) < needed:
        return common.residual_mismatch(edtl, needed, descriptor=ctx.descriptor_sense)
    block = bytes(bs) if ndob else bytes(memoryview(ctx.data_out).cast("B")[:bs])
    if nblocks == 0:
        return ScsiResult(status=ScsiStatus.GOOD)
    async with common.range_lock(lu).hold(lba, nblocks):
        # SBC-3 4.7.3.4: with UNMAP the device server may deallocate when an unmapped block reads back as the
        # Data-Out block would: always with LBPRZ=0 (unmapped content is indeterminate), only for a zero block
        # with LBPRZ=1 (anything else is written)
        if unmap and (not common.lbprz(lu) or not any(block)):
            await common.medium_unmap(lu, lba, nblocks)
            if not common.write_cache_enabled(lu):
                await common.medium_flush(lu)
            return ScsiResult(status=ScsiStatus.GOOD)
        per_chunk = max(1, common.CHUNK_BYTES // bs)
        pattern = block * min(per_chunk, nblocks)
        done = 0
        while done < nblocks:
            n = min(per_chunk, nblocks - done)
            await common.medium_write(lu, lba + done, memoryview(pattern)[: n * bs])
            done += n
    return ScsiResult(status=ScsiStatus.GOOD)


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=WRITE_SAME_10,
        name="WRITE SAME(10)",
        cdb_length=10,
        # byte 1: UNMAP (no WRPROTECT, no ANCHOR)
        usage=bytes((0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x00)),
        handler=write_same,
        direction=Direction.OUT,
        medium_write=True,
        pr_class=PrClass.WRITE,
    ),
    CommandSpec(
        opcode=WRITE_SAME_16,
        name="WRITE SAME(16)",
        cdb_length=16,
        # byte 1: UNMAP, NDOB
        usage=bytes((0x93, 0x09, *[0xFF] * 12, 0x3F, 0x00)),
        handler=write_same,
        direction=Direction.OUT,
        medium_write=True,
        pr_class=PrClass.WRITE,
    ),
]
