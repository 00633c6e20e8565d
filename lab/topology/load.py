"""Reading a topology file: YAML -> JSON Schema (structure) -> semantic checks (meaning) -> `Topology`.

Like the target's config reader (`target.config.native`), every problem of both passes is reported at once,
each prefixed with its path in the document (`initiators[2].paths[1]: ...`), in document order, by raising
`TopologyError` (a `ConfigError`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lab.topology.model import (
    LAB_SUPERNET,
    Chap,
    InitiatorKind,
    InitiatorNode,
    Lun,
    Network,
    NetworkRole,
    Release,
    TargetKind,
    TargetNode,
    Topology,
    max_hosts_needed,
)
from target.config.errors import ConfigError
from target.config.model import ALUA_STATE_NAMES
from target.config.names import check_iscsi_name
from target.config.native import json_path, parse_size, path_sort_key
from target.config.validate import MIN_CHAP_SECRET_LEN

IQN_PREFIX = "iqn.2026-11.org.sanlab.lab"
#: ALUA states a topology may give a portal's group at start (transitioning is a transient state, not a setting)
ALUA_STATES = tuple(s for s in ALUA_STATE_NAMES if s != "transitioning")
MAX_NODES = 64  # per topology: bounds containers and VMs one file can ask for
_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,30}$"}
_SIZE = {
    "description": "bytes, or a number with a K/M/G/T suffix",
    "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+ *[KMGT]?(i?B)?$"}],
}
_CHAP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["userid", "password"],
    "properties": {
        "userid": {"type": "string", "minLength": 1, "maxLength": 255},
        "password": {"type": "string", "minLength": 1, "maxLength": 255},
        "mutual_userid": {"type": "string", "maxLength": 255},
        "mutual_password": {"type": "string", "maxLength": 255},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "networks", "targets", "initiators"],
    "properties": {
        "name": _NAME,
        "description": {"type": "string"},
        "chap": _CHAP,
        "networks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "role", "subnet"],
                "properties": {
                    "name": _NAME,
                    "role": {"enum": [r.value for r in NetworkRole]},
                    "subnet": {"type": "string"},
                },
            },
        },
        "targets": {
            "type": "array",
            "minItems": 1,
            "maxItems": 8,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "kind", "portals"],
                "properties": {
                    "name": _NAME,
                    "kind": {"enum": [k.value for k in TargetKind]},
                    "iqn": {"type": "string"},
                    "replica_of": {"type": "string"},
                    "alua": {
                        "type": "object",
                        "maxProperties": 2,
                        "additionalProperties": {"enum": list(ALUA_STATES)},
                    },
                    "portals": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "chap": {"type": "boolean"},
                    "luns": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 16,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["index", "size"],
                            "properties": {
                                "index": {"type": "integer", "minimum": 0, "maximum": 255},
                                "size": _SIZE,
                                "name": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"},
                            },
                        },
                    },
                },
            },
        },
        "initiators": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_NODES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "kind", "target", "paths"],
                "properties": {
                    "name": _NAME,
                    "kind": {"enum": [k.value for k in InitiatorKind]},
                    "release": {"enum": [r.value for r in Release]},
                    "target": {"type": "string"},
                    "paths": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                    "iqn": {"type": "string"},
                    "lun": {"type": "integer", "minimum": 0, "maximum": 255},
                    "chap": {"type": "boolean"},
                },
            },
        },
    },
}

_SAN_ROLES = (NetworkRole.SAN_A, NetworkRole.SAN_B)


class TopologyError(ConfigError):
    """The topology is invalid; `errors` lists every problem as 'path: message' in document order."""


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology YAML file. Raises TopologyError (every problem) or OSError."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TopologyError([f"(file): not valid YAML: {e}"], source=str(p)) from e
    try:
        return parse_topology(data)
    except TopologyError as e:
        raise TopologyError(e.errors, source=str(p)) from None


def parse_topology(data: object) -> Topology:
    """A parsed topology document -> Topology. Raises TopologyError listing every problem."""
    if not isinstance(data, dict):
        raise TopologyError(["(top level): a topology is a mapping (name, networks, targets, initiators)"])
    errors = _schema_errors(data)
    bad = {p for p, _ in errors}
    if not errors:
        topo, semantic = _build(data)
        errors += [(p, m) for p, m in semantic if not any(p.startswith(b) for b in bad)]
        if not errors:
            return topo
    errors.sort(key=lambda e: path_sort_key(e[0]))
    raise TopologyError([f"{p}: {m}" if p else m for p, m in errors])


def _schema_errors(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    out: list[tuple[str, str]] = []
    for err in validator.iter_errors(doc):
        parts = list(err.absolute_path)
        inst = err.instance
        if err.validator == "required" and isinstance(inst, dict):
            out += [
                (json_path([*parts, k]), "missing required key") for k in err.validator_value if k not in inst
            ]
        elif err.validator == "additionalProperties" and isinstance(inst, dict):
            known = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
            out += [(json_path([*parts, k]), "unknown key") for k in inst if k not in known]
        elif err.validator == "oneOf" and parts and parts[-1] == "size":
            out.append(
                (json_path(parts), f"{inst!r} is not a size (bytes, or a number with a K/M/G/T suffix)")
            )
        elif err.validator == "pattern" and parts and parts[-1] == "name":
            out.append((json_path(parts), f"{inst!r} is not a name (lower case letters, digits, '-'; 1-31)"))
        else:
            out.append((json_path(parts), err.message))
    return sorted(set(out), key=lambda e: path_sort_key(e[0]))


def _build(doc: dict[str, Any]) -> tuple[Topology, list[tuple[str, str]]]:
    """Build the model from a schema-valid document and collect every semantic problem with its path."""
    errs: list[tuple[str, str]] = []
    name: str = doc["name"]

    # -- networks: inside 198.18.0.0/15, no overlaps, one per role, unique names
    networks: list[Network] = []
    seen_net: dict[str, int] = {}
    seen_role: dict[str, int] = {}
    checked: list[tuple[int, ipaddress.IPv4Network]] = []
    for i, n in enumerate(doc["networks"]):
        where = f"networks[{i}]"
        if n["name"] in seen_net:
            errs.append(
                (
                    f"{where}.name",
                    f"duplicate network name {n['name']!r} (first: networks[{seen_net[n['name']]}])",
                )
            )
        seen_net.setdefault(n["name"], i)
        if n["role"] in seen_role:
            errs.append(
                (f"{where}.role", f"a second {n['role']} network (first: networks[{seen_role[n['role']]}])")
            )
        seen_role.setdefault(n["role"], i)
        try:
            subnet = ipaddress.IPv4Network(n["subnet"], strict=True)
        except ValueError:
            errs.append(
                (f"{where}.subnet", f"{n['subnet']!r} is not an IPv4 subnet (a.b.c.d/len, host bits zero)")
            )
            subnet = None
        if subnet is not None and not subnet.subnet_of(LAB_SUPERNET):
            errs.append((f"{where}.subnet", f"{subnet} is outside the lab range {LAB_SUPERNET} (RFC 2544)"))
            subnet = None
        if subnet is not None:
            for k, other in checked:
                if subnet.overlaps(other):
                    errs.append((f"{where}.subnet", f"{subnet} overlaps networks[{k}] ({other})"))
                    break
            checked.append((i, subnet))
        # a bad subnet is reported once; the network still exists for the references to it
        networks.append(Network(n["name"], NetworkRole(n["role"]), subnet or LAB_SUPERNET))
    net_by_name = {n.name: n for n in networks}

    # -- CHAP credentials
    chap: Chap | None = None
    if "chap" in doc:
        c = doc["chap"]
        chap = Chap(c["userid"], c["password"], c.get("mutual_userid", ""), c.get("mutual_password", ""))
        for fld in ("password", "mutual_password"):
            secret = getattr(chap, fld)
            if secret and len(secret) < MIN_CHAP_SECRET_LEN:
                errs.append(
                    (
                        f"chap.{fld}",
                        f"CHAP secret is shorter than {MIN_CHAP_SECRET_LEN} characters (RFC 7143 12.1.3)",
                    )
                )
        if bool(chap.mutual_userid) != bool(chap.mutual_password):
            errs.append(("chap", "mutual CHAP needs both mutual_userid and mutual_password"))
        if chap.mutual_password and chap.mutual_password == chap.password:
            errs.append(
                ("chap.mutual_password", "the mutual CHAP secret must differ from the initiator's secret")
            )

    node_names: dict[str, str] = {}

    def claim(node: str, where: str) -> None:
        if node in node_names:
            errs.append((f"{where}.name", f"duplicate node name {node!r} (first: {node_names[node]})"))
        else:
            node_names[node] = where

    def san_ref(net: str, where: str) -> bool:
        if net not in net_by_name:
            errs.append((where, f"no network named {net!r}"))
            return False
        if net_by_name[net].role not in _SAN_ROLES:
            errs.append(
                (where, f"network {net!r} is a {net_by_name[net].role} network, not a SAN (san-a, san-b)")
            )
            return False
        return True

    # -- targets
    targets: list[TargetNode] = []
    tgt_where: dict[str, str] = {}
    docs_by_name = {t["name"]: t for t in doc["targets"]}
    for i, t in enumerate(doc["targets"]):
        where = f"targets[{i}]"
        claim(t["name"], where)
        tgt_where.setdefault(t["name"], where)
        replica_of: str | None = t.get("replica_of")
        primary_doc: dict[str, Any] | None = None
        if replica_of is not None:
            primary_doc = docs_by_name.get(replica_of)
            if primary_doc is None or replica_of == t["name"]:
                errs.append((f"{where}.replica_of", f"no other target named {replica_of!r}"))
                primary_doc = None
            elif "replica_of" in primary_doc:
                errs.append(
                    (f"{where}.replica_of", f"{replica_of!r} is itself a replica: name the primary node")
                )
                primary_doc = None
            elif primary_doc["kind"] != t["kind"]:
                errs.append(
                    (
                        f"{where}.kind",
                        f"a replica runs the same target as its primary ({primary_doc['kind']})",
                    )
                )
            if "luns" in t:
                errs.append(
                    (f"{where}.luns", "a replica serves its primary's LUNs (same backing files): remove it")
                )
        elif "luns" not in t:
            errs.append((f"{where}.luns", "missing required key"))
        src = primary_doc if primary_doc is not None else t
        iqn = src.get("iqn", f"{IQN_PREFIX}:{name}-{src['name']}")
        if primary_doc is not None and t.get("iqn", iqn) != iqn:
            errs.append(
                (f"{where}.iqn", f"a replica has its primary's IQN ({iqn}): remove it or make it equal")
            )
        if (problem := check_iscsi_name(iqn)) is not None:
            errs.append((f"{where}.iqn", problem))
        for k, p in enumerate(t["portals"]):
            san_ref(p, f"{where}.portals[{k}]")
            if p in t["portals"][:k]:
                errs.append((f"{where}.portals[{k}]", f"network {p!r} listed twice"))
        alua: dict[str, str] = dict(t.get("alua", {}))
        for net in alua:
            if net not in t["portals"]:
                errs.append((f"{where}.alua.{net}", f"the node has no portal on network {net!r}"))
        if alua and t["kind"] == TargetKind.TGT.value:
            errs.append((f"{where}.alua", "tgtd has no ALUA target port groups (kind tgt)"))
        if alua and set(alua) != set(t["portals"]):
            missing = [p for p in t["portals"] if p not in alua]
            if missing:
                errs.append((f"{where}.alua", f"give every portal a state (missing: {', '.join(missing)})"))
        luns: list[Lun] = []
        own = src is t  # a replica's LUNs are its primary's (checked there)
        for k, lu in enumerate(src.get("luns", []) if own or "luns" not in t else []):
            if own and any(x.index == lu["index"] for x in luns):
                errs.append((f"{where}.luns[{k}].index", f"duplicate LUN {lu['index']}"))
            size = parse_size(lu["size"]) or 0
            if own and size < 1 << 20:
                errs.append((f"{where}.luns[{k}].size", "a LUN needs at least 1 MiB"))
            luns.append(Lun(lu["index"], size, lu.get("name", f"lun{lu['index']}")))
        chap_on = bool(t.get("chap", True))
        if chap_on and chap is None:
            errs.append(
                (f"{where}.chap", "CHAP is on (the default) but the topology has no chap credentials")
            )
        targets.append(
            TargetNode(
                t["name"],
                TargetKind(t["kind"]),
                iqn,
                list(t["portals"]),
                luns,
                t.get("port", src.get("port", 3260)),
                chap_on,
                replica_of if primary_doc is not None else None,
                alua,
            )
        )
    tgt_by_name = {t.name: t for t in targets}
    # an HA set (a primary and its replicas): every network leads to one node of the set
    for node in targets:
        if node.replica_of is None:
            continue
        for k, p in enumerate(node.portals):
            primary_node = tgt_by_name[node.replica_of]
            if p in primary_node.portals or any(
                r.name != node.name and r.replica_of == node.replica_of and p in r.portals for r in targets
            ):
                errs.append(
                    (
                        f"{tgt_where[node.name]}.portals[{k}]",
                        f"network {p!r} already leads to another node of {node.replica_of!r}'s HA set",
                    )
                )

    # -- initiators
    initiators: list[InitiatorNode] = []
    for i, d in enumerate(doc["initiators"]):
        where = f"initiators[{i}]"
        claim(d["name"], where)
        kind = InitiatorKind(d["kind"])
        release = Release(d["release"]) if "release" in d else None
        if kind is InitiatorKind.LINUX_VM and release is None:
            errs.append((f"{where}.release", "a linux-vm needs a release (debian11, debian12 or debian13)"))
        if kind is not InitiatorKind.LINUX_VM and release is not None:
            errs.append((f"{where}.release", f"only linux-vm initiators have a release (this one is {kind})"))
        if kind is InitiatorKind.LINUX_VM and NetworkRole.MGMT not in {n.role for n in networks}:
            errs.append((where, "a linux-vm needs a mgmt network (Ansible reaches the VM over SSH there)"))
        if kind is not InitiatorKind.LINUX_VM and len(d["paths"]) > 1:
            errs.append((f"{where}.paths", f"a {kind} initiator uses one path (multipath is for linux-vm)"))
        tgt = tgt_by_name.get(d["target"])
        if tgt is None:
            errs.append((f"{where}.target", f"no target named {d['target']!r}"))
        elif tgt.replica_of is not None:
            errs.append(
                (f"{where}.target", f"{tgt.name!r} is a replica of {tgt.replica_of!r}: name the primary node")
            )
            tgt = None
        ha_portals = {p for x in targets if tgt is not None and x.primary == tgt.name for p in x.portals}
        for k, p in enumerate(d["paths"]):
            if not san_ref(p, f"{where}.paths[{k}]"):
                continue
            if p in d["paths"][:k]:
                errs.append((f"{where}.paths[{k}]", f"network {p!r} listed twice"))
            elif tgt is not None and p not in ha_portals:
                errs.append((f"{where}.paths[{k}]", f"target {tgt.name!r} has no portal on network {p!r}"))
        lun = d.get("lun", 0)
        if tgt is not None and all(x.index != lun for x in tgt.luns):
            errs.append((f"{where}.lun", f"target {tgt.name!r} has no LUN {lun}"))
        iqn = d.get("iqn", f"{IQN_PREFIX}:{name}-{d['name']}")
        if (problem := check_iscsi_name(iqn)) is not None:
            errs.append((f"{where}.iqn", problem))
        chap_on = bool(d.get("chap", True))  # the target's check reports missing credentials
        initiators.append(
            InitiatorNode(d["name"], kind, d["target"], list(d["paths"]), iqn, release, lun, chap_on)
        )

    # -- address plan fits every subnet
    need = max_hosts_needed(len(targets), len(initiators))
    for i, n in enumerate(networks):
        if n.subnet != LAB_SUPERNET and n.subnet.num_addresses - 2 < need:
            errs.append(
                (
                    f"networks[{i}].subnet",
                    f"{n.subnet} is too small: the address plan needs host .{need} (use /24 or larger)",
                )
            )

    topo = Topology(name, networks, targets, initiators, chap, doc.get("description", ""))
    return topo, errs
