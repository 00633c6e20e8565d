"""SBC-3 block commands, one module per command family; `SBC_COMMANDS` is what the opcode table merges."""

from __future__ import annotations

from target.scsi.opcodes import CommandSpec
from target.scsi.sbc import (
    capacity,
    compare_and_write,
    lba_status,
    read_write,
    start_stop,
    sync_cache,
    unmap,
    write_same,
    xcopy,
)

SBC_COMMANDS: list[CommandSpec] = [
    *read_write.COMMANDS,
    *capacity.COMMANDS,
    *sync_cache.COMMANDS,
    *start_stop.COMMANDS,
    *compare_and_write.COMMANDS,
    *write_same.COMMANDS,
    *unmap.COMMANDS,
    *lba_status.COMMANDS,
    *xcopy.COMMANDS,
]

__all__ = ["SBC_COMMANDS"]
