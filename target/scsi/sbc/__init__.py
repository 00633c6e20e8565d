"""SBC-3 block commands, one module per command family; `SBC_COMMANDS` is what the opcode table merges.

Importing the package also registers the SBC state a logical unit reset or an I_T nexus loss must drop
(`target.scsi.device.register_reset_hook`): medium removal prevention (SPC-4 6.13: ends on LU reset and, for
the nexus, on I_T nexus loss) and held EXTENDED COPY results (SPC-4 6.18: discarded likewise).
"""

from __future__ import annotations

from target.scsi.device import register_reset_hook
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

register_reset_hook(start_stop.clear_prevention)
register_reset_hook(xcopy.forget_copy_results)

__all__ = ["SBC_COMMANDS"]
