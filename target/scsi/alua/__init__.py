"""Asymmetric logical unit access (SPC-4 5.15): target port groups, their access states, transitions.

`target.scsi.alua.groups` holds the state (one `LuAlua` per logical unit, attached by the runtime);
REPORT/SET TARGET PORT GROUPS live in `target.scsi.spc.target_port_groups`; the device's gate reads
`LuAlua.access_state()` for every command (`target.scsi.gates.AluaClass` says which commands each state allows).
"""

from target.scsi.alua.groups import (
    AccessType,
    AluaError,
    LuAlua,
    StatusCode,
    TargetPortGroup,
    attach_alua,
    media_access,
    parse_state,
    state_name,
)

__all__ = [
    "AccessType",
    "AluaError",
    "LuAlua",
    "StatusCode",
    "TargetPortGroup",
    "attach_alua",
    "media_access",
    "parse_state",
    "state_name",
]
