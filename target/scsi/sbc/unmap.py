"""UNMAP: SBC-3 5.28.

Parameter list (SBC-3 5.28.2): an 8-byte header (UNMAP DATA LENGTH, UNMAP BLOCK DESCRIPTOR DATA LENGTH) and
16-byte block descriptors (LBA, NUMBER OF LOGICAL BLOCKS). Every descriptor is validated before any block is
deallocated, so a bad list changes nothing:
- PARAMETER LIST LENGTH 0: nothing to do, GOOD; 1..7: PARAMETER LIST LENGTH ERROR.
- block descriptor data longer than the parameter data that follows the header: PARAMETER LIST LENGTH ERROR;
  a trailing partial descriptor is ignored (5.28.2).
- more descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT, or a descriptor longer than MAXIMUM UNMAP LBA
  COUNT: INVALID FIELD IN PARAMETER LIST (field pointer at the header length / the descriptor's count).
- a descriptor beyond the capacity: LOGICAL BLOCK ADDRESS OUT OF RANGE.
ANCHOR is not supported (ANC_SUP=0) and is rejected by the CDB usage check. Enabled by emulate_tpu (LBPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from target.scsi.command import ScsiResult, ScsiStatus
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec, Direction
from target.scsi.sbc import common
from target.scsi.sense import CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

UNMAP = 0x42
HEADER_LEN = 8
DESCRIPTOR_LEN = 16


def parse_unmap_parameters(params: bytes, lu: Any) -> list[tuple[int, int]]:
    """Validate an UNMAP parameter list; returns [(lba, count)] with zero counts dropped."""
    if len(params) < HEADER_LEN:
        raise CheckCondition.param_list_length_error()
    bd_len = int.from_bytes(params[2:4], "big")
    if bd_len > len(params) - HEADER_LEN:
        raise CheckCondition.param_list_length_error()
    count = bd_len // DESCRIPTOR_LEN  # a trailing partial descriptor is ignored
    limits = common.block_limits(lu)
    if limits.max_unmap_block_descriptor_count and count > limits.max_unmap_block_descriptor_count:
        raise CheckCondition.invalid_param(2)
    capacity = common.num_blocks(lu)
    ranges: list[tuple[int, int]] = []
    for i in range(count):
        off = HEADER_LEN + i * DESCRIPTOR_LEN
        lba = int.from_bytes(params[off : off + 8], "big")
        nblocks = int.from_bytes(params[off + 8 : off + 12], "big")
        if limits.max_unmap_lba_count and nblocks > limits.max_unmap_lba_count:
            raise CheckCondition.invalid_param(off + 8)
        if lba + nblocks > capacity:
            common.check_lba_range(lu, lba, nblocks)
        if nblocks:
            ranges.append((lba, nblocks))
    return ranges


async def unmap(ctx: CommandContext) -> ScsiResult:
    lu = ctx.lu
    if ctx.parameter_list_length == 0:
        return ScsiResult(status=ScsiStatus.GOOD)
    ranges = parse_unmap_parameters(ctx.parameters(), lu)
    lock = common.range_lock(lu)
    for lba, nblocks in ranges:
        async with lock.hold(lba, nblocks):
            await common.medium_unmap(lu, lba, nblocks)
    if ranges and not common.write_cache_enabled(lu):
        await common.medium_flush(lu)
    return ScsiResult(status=ScsiStatus.GOOD)


def lbpu_enabled(lu: Any) -> bool:
    bs = common.backstore(lu)
    return bs.can_unmap and bool(common.attr(lu, "emulate_tpu", int(bs.can_unmap)))


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=UNMAP,
        name="UNMAP",
        cdb_length=10,
        usage=bytes((0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3F, 0xFF, 0xFF, 0x00)),
        handler=unmap,
        direction=Direction.OUT,
        medium_write=True,
        pr_class=PrClass.WRITE,
        param_len=(7, 2),
        enabled=lbpu_enabled,
    ),
]
