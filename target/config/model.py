"""The configuration object tree (rtslib's shape): storage objects; targets -> TPGs -> LUNs, portals, node ACLs
-> mapped LUNs. Plain dataclasses: `target.config.native` reads/writes the project's JSON format,
`target.config.lio` imports LIO's saveconfig.json; the runtime (`target.runtime`) realises a `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BackstorePlugin = Literal["fileio", "block", "ramdisk"]


@dataclass
class AuthConfig:
    """CHAP credentials; empty userid means no CHAP at this level. mutual_* is the target's own secret."""

    userid: str = ""
    password: str = ""
    mutual_userid: str = ""
    mutual_password: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.userid)


#: ALUA access state names in the config (LIO's configfs spelling is the number, see target.config.lio)
ALUA_STATE_NAMES = (
    "active_optimized",
    "active_non_optimized",
    "standby",
    "unavailable",
    "offline",
    "transitioning",
)


@dataclass
class AluaGroupConfig:
    """One ALUA target port group of a storage object (LIO's `alua/<name>` of a device, SPC-4 5.15).

    Which target ports belong to it: every TPG whose LUN of this storage object names it (`LunConfig.alua_tg_pt_gp`)
    plus the TPGs listed in `members` ("<target wwn>/<tpg tag>", e.g. "iqn.2026-11.org.example:t/2").
    """

    name: str
    id: int  # TARGET PORT GROUP (0-65535), unique per storage object
    state: str = "active_optimized"  # one of ALUA_STATE_NAMES
    preferred: bool = False  # PREF bit of REPORT TARGET PORT GROUPS
    #: supported states (the *_SUP bits of REPORT TARGET PORT GROUPS); LIO's defaults: all but LBA dependent
    supported_states: list[str] = field(default_factory=lambda: list(ALUA_STATE_NAMES))
    implicit: bool = True  # the target changes states itself (management API, config): TPGS bit 01b
    explicit: bool = True  # SET TARGET PORT GROUPS accepted: TPGS bit 10b
    trans_delay_ms: int = 0  # time spent in TRANSITIONING before a new state takes effect (LIO, max 30000)
    nonop_delay_ms: int = (
        100  # added to media-access commands on an active/non-optimized port (LIO, max 10000)
    )
    implicit_trans_secs: int = 0  # IMPLICIT TRANSITION TIME of the extended RTPG header (0-255)
    members: list[str] = field(default_factory=list)


@dataclass
class StorageObjectConfig:
    plugin: BackstorePlugin
    name: str
    size: int = 0  # bytes; 0 = take the device's/file's size
    dev: str = ""  # file path (fileio) or device node (block)
    wwn: str = ""  # VPD unit serial (T10 WWN); stable across restarts. Empty = derived from name
    write_back: bool = True  # fileio: write-back cache (WCE=1) or write-through
    block_size: int = 512
    physical_block_size: int = 0  # 0 = same as block_size
    readonly: bool = False
    thin: bool = True  # fileio: sparse file; False = allocate all blocks at creation
    attributes: dict[str, int | str] = field(default_factory=dict)  # LIO attrib names (emulate_tpu, ...)
    #: ALUA target port groups; empty = one group per TPG exporting the LU, all active/optimized
    alua_groups: list[AluaGroupConfig] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{self.plugin}/{self.name}"


@dataclass
class PortalConfig:
    ip: str  # IPv4 or IPv6 literal (no brackets); "0.0.0.0" / "::" listen on every address
    port: int = 3260


@dataclass
class LunConfig:
    index: int
    storage_object: str  # "plugin/name", e.g. "fileio/disk0"
    alua_tg_pt_gp: str = "default_tg_pt_gp"


@dataclass
class MappedLunConfig:
    index: int  # the LUN number this initiator sees
    tpg_lun: int  # the TPG's LUN index it maps to
    write_protect: bool = False


@dataclass
class AclConfig:
    node_wwn: str  # initiator name
    auth: AuthConfig = field(default_factory=AuthConfig)
    mapped_luns: list[MappedLunConfig] = field(default_factory=list)
    attributes: dict[str, int | str] = field(default_factory=dict)
    tag: str = ""


@dataclass
class TpgConfig:
    tag: int = 1
    enable: bool = True
    portals: list[PortalConfig] = field(default_factory=list)
    luns: list[LunConfig] = field(default_factory=list)
    node_acls: list[AclConfig] = field(default_factory=list)
    #: LIO TPG attributes: authentication, generate_node_acls, demo_mode_write_protect, cache_dynamic_acls,
    #: default_cmdsn_depth, login_timeout, netif_timeout, ...
    attributes: dict[str, int | str] = field(default_factory=dict)
    #: iSCSI login keys the target offers/accepts (RFC 7143 names): MaxRecvDataSegmentLength, InitialR2T, ...
    parameters: dict[str, str] = field(default_factory=dict)
    auth: AuthConfig = field(default_factory=AuthConfig)


@dataclass
class TargetConfig:
    wwn: str  # iqn./eui./naa. name
    tpgs: list[TpgConfig] = field(default_factory=list)
    alias: str = ""


@dataclass
class Config:
    storage_objects: list[StorageObjectConfig] = field(default_factory=list)
    targets: list[TargetConfig] = field(default_factory=list)
    discovery_auth: AuthConfig = field(default_factory=AuthConfig)
    discovery_auth_enforced: bool = False
    #: where APTPL data and saved configs live (created on first use)
    state_dir: str = "/var/lib/sanlab"
    #: target-wide settings: nopin_interval_s, nopin_timeout_s, max_connections, ... (native format only)
    settings: dict[str, int | str] = field(default_factory=dict)


#: dynamic ACL mappings per TPG: (the TPG, its LUN indexes, write protect, the mappings), by id of the TPG
_DYNAMIC_MAPPINGS: dict[int, tuple[TpgConfig, tuple[int, ...], bool, list[MappedLunConfig]]] = {}
_DYNAMIC_MAPPINGS_MAX = 256


def dynamic_acl(tpg: TpgConfig, initiator: str, write_protect: bool) -> AclConfig:
    """The demo-mode (generate_node_acls=1) ACL of `initiator`: every LUN of the TPG at its own index.

    Every login to such a TPG gets one, so with 1,000 LUNs building 1,000 mappings per login was a large part
    of the login time: the mappings are kept per TPG (checked against the TPG's LUN indexes and the write
    protect flag, so a changed TPG gets new ones) and shared by the dynamic ACLs of that TPG, which never
    modify them (a copy of the list is handed out).
    """
    indexes = tuple(lun.index for lun in tpg.luns)
    hit = _DYNAMIC_MAPPINGS.get(id(tpg))
    if hit is None or hit[0] is not tpg or hit[1] != indexes or hit[2] != write_protect:
        mappings = [MappedLunConfig(index=i, tpg_lun=i, write_protect=write_protect) for i in indexes]
        if len(_DYNAMIC_MAPPINGS) >= _DYNAMIC_MAPPINGS_MAX:
            _DYNAMIC_MAPPINGS.clear()
        _DYNAMIC_MAPPINGS[id(tpg)] = (tpg, indexes, write_protect, mappings)
    else:
        mappings = hit[3]
    return AclConfig(node_wwn=initiator, mapped_luns=list(mappings), tag="dynamic")
