"""SPC-4 commands (one module per command family); `SPC_COMMANDS` is merged into the opcode table."""

from __future__ import annotations

from target.scsi import pr
from target.scsi.opcodes import CommandSpec
from target.scsi.spc import (
    inquiry,
    log_sense,
    mode,
    report_luns,
    report_supported_opcodes,
    report_tmf,
    request_sense,
    reserve_release,
    target_port_groups,
    test_unit_ready,
)

SPC_COMMANDS: list[CommandSpec] = [
    *inquiry.COMMANDS,
    *report_luns.COMMANDS,
    *request_sense.COMMANDS,
    *test_unit_ready.COMMANDS,
    *mode.COMMANDS,
    *report_supported_opcodes.COMMANDS,
    *report_tmf.COMMANDS,
    *log_sense.COMMANDS,
    *reserve_release.COMMANDS,
    *target_port_groups.COMMANDS,
    *pr.COMMANDS,
]
