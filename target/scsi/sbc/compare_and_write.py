"""COMPARE AND WRITE: SBC-3 5.2.

Data-Out holds NUMBER OF LOGICAL BLOCKS of verify data followed by as many blocks of write data. Under the LBA
range lock (so no other write can slip between the read and the write) the device server reads the blocks,
compares them with the verify data, and only when they match writes the write data. A mismatch ends the command
with MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION and INFORMATION = offset of the first differing byte in the
verify data; nothing is written. Up to the Block Limits MAXIMUM COMPARE AND WRITE LENGTH blocks (255 by default);
more is INVALID FIELD IN CDB. NUMBER OF LOGICAL BLOCKS = 0 is not an error and does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from target.scsi.command import ScsiResult, ScsiStatus
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec, Direction
from target.scsi.sbc import common
from target.scsi.sbc.read_write import data_out_length
from target.scsi.sense import CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

COMPARE_AND_WRITE = 0x89


async def compare_and_write(ctx: CommandContext) -> ScsiResult:
    lu = ctx.lu
    cdb = ctx.cdb
    lba = int.from_bytes(cdb[2:10], "big")
    nblocks = cdb[13]
    fua = bool(cdb[1] & 0x08)
    common.check_dpofua(lu, cdb)
    if nblocks > common.block_limits(lu).max_compare_and_write:
        raise CheckCondition.invalid_cdb(13)
    common.check_lba_range(lu, lba, nblocks)
    bs = common.block_size(lu)
    needed = 2 * nblocks * bs
    edtl = data_out_length(ctx)
    if edtl != needed or len(ctx.data_out) < needed:
        # the Data-Out disagrees with NUMBER OF LOGICAL BLOCKS: that CDB field is what is wrong (this is also
        # how an initiator whose 8-bit NoLB wrapped to 0 for 256 blocks learns the limit)
        cc = CheckCondition.invalid_cdb(13)
        return common.set_residual(cc.result(descriptor=ctx.descriptor_sense), edtl, needed)
    if nblocks == 0:
        return ScsiResult(status=ScsiStatus.GOOD)
    data = memoryview(ctx.data_out).cast("B")
    verify_data = data[: nblocks * bs]
    write_data = data[nblocks * bs : needed]
    async with common.range_lock(lu).hold(lba, nblocks):
        current = await common.medium_read(lu, lba, nblocks)
        diff = common.first_difference(current, verify_data)
        if diff >= 0:
            raise common.miscompare(diff)
        await common.medium_write(lu, lba, write_data, fua=fua)
    return ScsiResult(status=ScsiStatus.GOOD)


def _enabled(lu: Any) -> bool:
    return bool(common.attr(lu, "emulate_caw", 1))


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=COMPARE_AND_WRITE,
        name="COMPARE AND WRITE",
        cdb_length=16,
        # byte 1: DPO FUA FUA_NV (no WRPROTECT); bytes 10-12 reserved; 13 NUMBER OF LOGICAL BLOCKS; 14 GROUP
        usage=bytes((0x89, 0x1A, *[0xFF] * 8, 0x00, 0x00, 0x00, 0xFF, 0x3F, 0x00)),
        handler=compare_and_write,
        direction=Direction.OUT,
        medium_write=True,
        pr_class=PrClass.WRITE,
        enabled=_enabled,
    ),
]
