"""GET LBA STATUS: SBC-3 5.6.

Returns LBA status descriptors from the STARTING LOGICAL BLOCK ADDRESS onward, each a run of blocks with one
provisioning status (0 mapped, 1 deallocated), answered from the backstore's `is_mapped()` (SEEK_DATA/SEEK_HOLE
for fileio, the page map for ramdisk). The first descriptor starts at the requested LBA (5.6.2). The scanned
range is bounded so a huge sparse medium cannot make one command walk all of it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from target.backstore.base import BackstoreError
from target.scsi.command import ScsiResult
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec, Direction
from target.scsi.sbc import common
from target.scsi.sense import Asc, CheckCondition, SenseKey

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

SERVICE_ACTION_IN_16 = 0x9E
SA_GET_LBA_STATUS = 0x12
#: bytes of medium one GET LBA STATUS looks at, at most
MAX_SCAN_BYTES = 4 << 30


class ProvisioningStatus(enum.IntEnum):
    """SBC-3 5.6.3, table 49."""

    MAPPED = 0x0
    DEALLOCATED = 0x1
    ANCHORED = 0x2


async def lba_extents(lu: object, lba: int, nblocks: int) -> list[tuple[int, int, ProvisioningStatus]]:
    """[(lba, count, status)] covering [lba, lba+nblocks), block-granular, adjacent runs merged.

    A block that straddles two byte extents (only when the backstore's granularity is finer than a block) takes
    the status of the first one, so the runs never overlap and leave no gap."""
    bs = common.block_size(lu)
    if not common.thin_provisioned(lu):
        return [(lba, nblocks, ProvisioningStatus.MAPPED)]
    try:
        extents = await common.backstore(lu).is_mapped(lba * bs, nblocks * bs)
    except BackstoreError as exc:
        raise CheckCondition(SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, message=str(exc)) from exc
    out: list[tuple[int, int, ProvisioningStatus]] = []
    pos = lba
    end_lba = lba + nblocks
    for off, length, mapped in extents:
        stop = min(-(-(off + length) // bs), end_lba)
        if stop <= pos:
            continue
        status = ProvisioningStatus.MAPPED if mapped else ProvisioningStatus.DEALLOCATED
        if out and out[-1][2] == status:
            out[-1] = (out[-1][0], out[-1][1] + stop - pos, status)
        else:
            out.append((pos, stop - pos, status))
        pos = stop
    if pos < end_lba:  # the backstore left the tail unreported: call it mapped
        out.append((pos, end_lba - pos, ProvisioningStatus.MAPPED))
    return out


async def get_lba_status(ctx: CommandContext) -> ScsiResult:
    lu = ctx.lu
    lba = int.from_bytes(ctx.cdb[2:10], "big")
    capacity = common.num_blocks(lu)
    if lba >= capacity:
        raise CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE)
    alloc = ctx.allocation_length
    max_desc = max(1, (alloc - 8) // 16) if alloc > 8 else 1
    bs = common.block_size(lu)
    nblocks = min(capacity - lba, max(1, MAX_SCAN_BYTES // bs))
    extents = (await lba_extents(lu, lba, nblocks))[:max_desc]
    body = bytearray()
    for start, count, status in extents:
        # NUMBER OF LOGICAL BLOCKS is 32 bits: split runs that do not fit
        while count > 0:
            n = min(count, 0xFFFFFFFF)
            body += start.to_bytes(8, "big") + n.to_bytes(4, "big") + bytes((int(status), 0, 0, 0))
            start += n
            count -= n
    header = (len(body) + 4).to_bytes(4, "big") + bytes(4)  # PARAMETER DATA LENGTH = n - 3
    return ctx.respond(header + body)


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=SERVICE_ACTION_IN_16,
        service_action=SA_GET_LBA_STATUS,
        name="GET LBA STATUS",
        cdb_length=16,
        usage=bytes((0x9E, 0x12, *[0xFF] * 8, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00)),
        handler=get_lba_status,
        direction=Direction.IN,
        pr_class=PrClass.READ,
        alloc_len=(10, 4),
    ),
]
