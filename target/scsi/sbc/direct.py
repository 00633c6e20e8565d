"""Direct execution of a plain READ / WRITE (10 and 16): the common case without the general command path.

`LogicalUnit.execute` runs every command through task set admission, the opcode table, the unit attention, ALUA,
reservation and write-protect gates, a handler coroutine and a result object (device.py). For the commands that
make up nearly all I/O - a SIMPLE READ(10/16) or WRITE(10/16) with no flags set, to an LU with nothing pending -
every one of those steps decides "go on", and on this machine their Python cost was most of the ~36 us of CPU a
4 KiB command took (docs/performance.md). `execute` below checks, in a handful of comparisons, that each gate
would let the command through and that the backstore can serve it at once (page cache), and then does the I/O.

It answers only when the general path would have answered GOOD with exactly this data and no other effect than
the one it performs (the I/O and the ALUA group's media-command count). Whenever anything could differ it
returns None *without having changed anything*, and the caller runs the command through the general path, which
then produces the standard's answer (sense data, ordering, waiting, errors). So it returns None when:

- the CDB has any bit set in byte 1 (DPO, FUA, RDPROTECT/WRPROTECT), a group number or a control byte, or its
  direction does not match the transport's (R/W flags, data present);
- the transfer is empty, beyond the medium, above the maximum transfer length, or the expected data transfer
  length is not exactly the transfer length (residuals);
- an ACA condition exists, the task set would not enable a SIMPLE task at once (ORDERED or HEAD OF QUEUE tasks,
  blocked), or the tag is in use on the nexus (overlapped command);
- the nexus has a unit attention pending (or is not yet known to the LU);
- a reservation could make a difference: an SPC-2 reservation held by another nexus, a lost persistent
  reservation, or a persistent reservation this nexus does not hold;
- the ALUA access state of the nexus' port group is not active/optimized, or active/non-optimized without a
  delay;
- for a write: the LU or LUN is write-protected or an LBA range lock is held (a write or COMPARE AND WRITE in
  progress); with the write cache disabled the backstore is asked for a durable write (FUA), which a file
  backstore does not do on the loop;
- the backstore cannot do it without blocking (`Backstore.read_nowait` / `write_nowait`), or fails (the general
  path retries and reports the MEDIUM ERROR).

The command never enters the task set: it completes within the call, so no other task or task management
function can observe it (as a task admitted, enabled and completed in one step of the event loop).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.backstore.base import BackstoreError
from target.scsi.command import Nexus
from target.scsi.sbc import common
from target.scsi.sbc.read_write import RwOpcode, max_transfer_blocks

if TYPE_CHECKING:
    from target.scsi.device import LogicalUnit

#: opcodes taken here: True for writes
OPCODES: dict[int, bool] = {
    RwOpcode.READ_10: False,
    RwOpcode.WRITE_10: True,
    RwOpcode.READ_16: False,
    RwOpcode.WRITE_16: True,
}


def decode(cdb: bytes) -> tuple[bool, int, int] | None:
    """(write, lba, blocks) of a READ/WRITE(10/16) CDB with nothing but LBA and TRANSFER LENGTH set, else None
    (`read_write.decode_rw` decodes every form; this is the cheaper check-and-decode of the two it takes)."""
    op = cdb[0]
    write = OPCODES.get(op)
    if write is None or cdb[1]:
        return None
    if op < 0x80:  # 10-byte: bytes 6 (group) and 9 (control) zero
        if cdb[6] or cdb[9]:
            return None
        return write, int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
    if cdb[14] or cdb[15]:  # 16-byte: group, control
        return None
    return write, int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")


def execute(
    lu: LogicalUnit,
    nexus: Nexus,
    cdb: bytes,
    tag: int,
    expected_length: int,
    data_out: bytes | memoryview | None,
    *,
    read_only: bool = False,
) -> bytes | bytearray | bool | None:
    """Run a plain READ (returns the data) or WRITE with all of its data in `data_out` (returns True) directly,
    or return None, having changed nothing, when the command must take the general path (module docstring)."""
    fields = decode(cdb)
    if fields is None:
        return None
    write, lba, blocks = fields
    if write is (data_out is None) or blocks == 0:
        return None
    backstore = lu.backstore
    bs = backstore.block_size
    length = blocks * bs
    if (
        length != expected_length
        or lba + blocks > backstore.size // bs
        or blocks > max_transfer_blocks(bs, lu.attrs.hw_max_sectors)
    ):
        return None
    # the gates, each as "would let it through"
    if lu.aca.faulted is not None or not lu.task_set.enables_simple(nexus, tag) or not lu.ua.quiet(nexus):
        return None
    if not lu.reservations.unrestricted(nexus):
        return None
    group = None
    if lu.alua is not None:
        group = lu.alua.direct_group(nexus)
        if group is None:
            return None
    try:
        if write:
            assert data_out is not None
            if read_only or lu.read_only or len(data_out) != length or common.range_lock(lu).held:
                return None
            # write cache disabled: durable before GOOD, as the general path's FUA (SBC-3 4.14)
            if not backstore.write_nowait(lba * bs, data_out, fua=not lu.write_cache_enabled):
                return None
            result: bytes | bytearray | bool = True
        else:
            data = backstore.read_nowait(lba * bs, length)
            if data is None:
                return None
            result = data
    except BackstoreError:
        return None  # the general path does it again and reports the error
    if group is not None:
        group.media_commands += 1
    return result
