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
