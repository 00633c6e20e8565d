"""The configuration tree as flat, addressable objects, and the difference between two configurations.

Every object of a `Config` gets a targetcli-style path (what `sanlab target show/create/set/delete` take):

    /backstores/<plugin>/<name>                         storage object
    /iscsi/<wwn>                                        target
    /iscsi/<wwn>/tpg<tag>                               TPG (enable, attributes, parameters, auth)
    /iscsi/<wwn>/tpg<tag>/portals/<ip>:<port>           portal ([v6]:port for IPv6)
    /iscsi/<wwn>/tpg<tag>/luns/lun<n>                   TPG LUN
    /iscsi/<wwn>/tpg<tag>/acls/<initiator>              node ACL (auth, attributes)
    /iscsi/<wwn>/tpg<tag>/acls/<initiator>/mapped_lun<n>  mapped LUN
    /discovery                                          discovery authentication
    /settings                                           target-wide settings and the state directory

`flatten` turns a Config into {path: Node} (each node a copy of its object without its children), `unflatten`
builds a Config back, and `diff` lists what must be removed, added and modified to go from one to the other,
in an order that can be applied (removals deepest first, additions parents first).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from target.config.model import (
    AclConfig,
    AuthConfig,
    Config,
    LunConfig,
    MappedLunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)


class Kind(enum.Enum):
    STORAGE_OBJECT = "storage_object"
    TARGET = "target"
    TPG = "tpg"
    PORTAL = "portal"
    LUN = "lun"
    ACL = "acl"
    MAPPED_LUN = "mapped_lun"
    DISCOVERY = "discovery"
    SETTINGS = "settings"


@dataclass
class Node:
    kind: Kind
    obj: Any  # the model object, children lists emptied (a private copy)


@dataclass
class DiscoverySettings:
    auth: AuthConfig = field(default_factory=AuthConfig)
    enforced: bool = False


@dataclass
class TargetSettings:
    state_dir: str = "/var/lib/sanlab"
    settings: dict[str, int | str] = field(default_factory=dict)


class ChangeOp(enum.Enum):
    REMOVE = "-"
    ADD = "+"
    MODIFY = "~"


@dataclass
class Change:
    op: ChangeOp
    path: str
    kind: Kind
    fields: list[str] = field(default_factory=list)  # MODIFY: the fields that differ

    def __str__(self) -> str:
        extra = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.op.value} {self.path}{extra}"


def portal_key(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def so_path(so_ref: str) -> str:
    """'fileio/disk0' -> '/backstores/fileio/disk0'."""
    return f"/backstores/{so_ref}"


def target_path(wwn: str) -> str:
    return f"/iscsi/{wwn}"


def tpg_path(wwn: str, tag: int) -> str:
    return f"/iscsi/{wwn}/tpg{tag}"


def _stripped(obj: Any, **empty: Any) -> Any:
    return dataclasses.replace(copy.deepcopy(dataclasses.replace(obj, **empty)), **empty)


def flatten(cfg: Config) -> dict[str, Node]:
    """Config -> {path: Node}, in configuration order (parents before children)."""
    out: dict[str, Node] = {}
    for so in cfg.storage_objects:
        out[so_path(so.path)] = Node(Kind.STORAGE_OBJECT, copy.deepcopy(so))
    for t in cfg.targets:
        tp = target_path(t.wwn)
        out[tp] = Node(Kind.TARGET, _stripped(t, tpgs=[]))
        for tpg in t.tpgs:
            gp = f"{tp}/tpg{tpg.tag}"
            out[gp] = Node(Kind.TPG, _stripped(tpg, portals=[], luns=[], node_acls=[]))
            for p in tpg.portals:
                out[f"{gp}/portals/{portal_key(p.ip, p.port)}"] = Node(Kind.PORTAL, copy.copy(p))
            for lun in tpg.luns:
                out[f"{gp}/luns/lun{lun.index}"] = Node(Kind.LUN, copy.copy(lun))
            for acl in tpg.node_acls:
                ap = f"{gp}/acls/{acl.node_wwn}"
                out[ap] = Node(Kind.ACL, _stripped(acl, mapped_luns=[]))
                for m in acl.mapped_luns:
                    out[f"{ap}/mapped_lun{m.index}"] = Node(Kind.MAPPED_LUN, copy.copy(m))
    out["/discovery"] = Node(
        Kind.DISCOVERY, DiscoverySettings(copy.deepcopy(cfg.discovery_auth), cfg.discovery_auth_enforced)
    )
    out["/settings"] = Node(Kind.SETTINGS, TargetSettings(cfg.state_dir, dict(cfg.settings)))
    return out


def parent_path(path: str) -> str:
    """The path of the object holding `path` ("" for top-level objects). Portals/luns/acls sit in a group."""
    parts = path.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in ("portals", "luns", "acls"):
        return "/".join(parts[:-2])
    return "/".join(parts[:-1])


def unflatten(flat: dict[str, Node]) -> Config:
    """{path: Node} -> Config (objects whose parent is missing are dropped)."""
    cfg = Config()
    targets: dict[str, TargetConfig] = {}
    tpgs: dict[str, TpgConfig] = {}
    acls: dict[str, AclConfig] = {}
    for path, node in flat.items():
        # nodes are never mutated in place (changes replace them), so a shallow copy with fresh child lists
        obj = copy.copy(node.obj)
        if node.kind is Kind.TARGET:
            obj.tpgs = []
        elif node.kind is Kind.TPG:
            obj.portals, obj.luns, obj.node_acls = [], [], []
        elif node.kind is Kind.ACL:
            obj.mapped_luns = []
        parent = parent_path(path)
        if node.kind is Kind.STORAGE_OBJECT:
            cfg.storage_objects.append(obj)
        elif node.kind is Kind.TARGET:
            targets[path] = obj
            cfg.targets.append(obj)
        elif node.kind is Kind.TPG and parent in targets:
            tpgs[path] = obj
            targets[parent].tpgs.append(obj)
        elif node.kind is Kind.PORTAL and parent in tpgs:
            tpgs[parent].portals.append(obj)
        elif node.kind is Kind.LUN and parent in tpgs:
            tpgs[parent].luns.append(obj)
        elif node.kind is Kind.ACL and parent in tpgs:
            acls[path] = obj
            tpgs[parent].node_acls.append(obj)
        elif node.kind is Kind.MAPPED_LUN and parent in acls:
            acls[parent].mapped_luns.append(obj)
        elif node.kind is Kind.DISCOVERY:
            cfg.discovery_auth = obj.auth
            cfg.discovery_auth_enforced = obj.enforced
        elif node.kind is Kind.SETTINGS:
            cfg.state_dir = obj.state_dir
            cfg.settings = obj.settings
    return cfg


def _fields_differ(a: Any, b: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]


def _depth(path: str) -> int:
    return path.count("/")


def diff(running: Config | dict[str, Node], desired: Config | dict[str, Node]) -> list[Change]:
    """What turns `running` into `desired`: removals (deepest first), modifications, additions (parents
    first). Storage-object additions come before the LUNs that use them and their removals after."""
    a = running if isinstance(running, dict) else flatten(running)
    b = desired if isinstance(desired, dict) else flatten(desired)
    removed = [Change(ChangeOp.REMOVE, p, n.kind) for p, n in a.items() if p not in b]
    added = [Change(ChangeOp.ADD, p, n.kind) for p, n in b.items() if p not in a]
    modified = []
    for p, n in b.items():
        old = a.get(p)
        if old is not None and old.kind is n.kind and old.obj != n.obj:
            modified.append(Change(ChangeOp.MODIFY, p, n.kind, _fields_differ(old.obj, n.obj)))
    # storage objects: added first / removed last (LUNs refer to them)
    removed.sort(key=lambda c: (c.kind is Kind.STORAGE_OBJECT, -_depth(c.path)))
    added.sort(key=lambda c: (c.kind is not Kind.STORAGE_OBJECT, _depth(c.path)))
    return removed + modified + added


def descendants(flat: dict[str, Node], path: str) -> list[str]:
    prefix = path.rstrip("/") + "/"
    return [p for p in flat if p.startswith(prefix)]


def to_jsonable(obj: Any, *, secrets: bool = False) -> Any:
    """A node object as JSON (CHAP passwords masked unless `secrets`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if not secrets and f.name in ("password", "mutual_password") and value:
                out[f.name] = "********"
            else:
                out[f.name] = to_jsonable(value, secrets=secrets)
        return out
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, secrets=secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v, secrets=secrets) for v in obj]
    return obj


def summarize(changes: Iterable[Change]) -> list[str]:
    return [str(c) for c in changes]


__all__ = [
    "AclConfig",
    "Change",
    "ChangeOp",
    "DiscoverySettings",
    "Kind",
    "LunConfig",
    "MappedLunConfig",
    "Node",
    "PortalConfig",
    "StorageObjectConfig",
    "TargetSettings",
    "descendants",
    "diff",
    "flatten",
    "parent_path",
    "portal_key",
    "so_path",
    "summarize",
    "target_path",
    "to_jsonable",
    "tpg_path",
    "unflatten",
]
