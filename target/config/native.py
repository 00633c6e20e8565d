"""The project's native JSON configuration format (versioned; schema in schema.json).

Reading is three passes, and every problem of every pass is reported at once with its JSON path:

1. version: a newer version is refused (we cannot know its meaning); older ones are migrated step by step
   through `MIGRATIONS` to `CURRENT_VERSION`;
2. structure: JSON Schema (draft 2020-12) -- types, required keys, unknown keys, enums, ranges;
3. meaning: `target.config.validate` -- references, duplicates, name syntax, CHAP rules, iSCSI keys.

`dump_config` writes the same shape back; ``parse_config(dump_config(c)) == c`` for every valid `c`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any, cast

import jsonschema

from target.config.errors import ConfigError
from target.config.model import (
    ALUA_STATE_NAMES,
    AclConfig,
    AluaGroupConfig,
    AuthConfig,
    BackstorePlugin,
    Config,
    LunConfig,
    MappedLunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)
from target.config.validate import Locator, Policy, check_config

VERSION_KEY = "sanlab_config_version"
CURRENT_VERSION = 1

#: version N -> function turning a version-N document into a version-(N+1) document. Empty while only
#: version 1 exists; a format change adds an entry here and bumps CURRENT_VERSION.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

_SIZE_RE = re.compile(r"^([0-9]+) *(?:([KMGTP])(?:i?B)?|B)?$")
_SIZE_SHIFT = {"K": 10, "M": 20, "G": 30, "T": 40, "P": 50}
_PLUGINS: tuple[BackstorePlugin, ...] = ("fileio", "block", "ramdisk")


@functools.cache
def load_schema() -> dict[str, Any]:
    text = resources.files("target.config").joinpath("schema.json").read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))


def json_path(parts: Iterable[str | int]) -> str:
    """('targets', 0, 'tpgs', 1) -> 'targets[0].tpgs[1]'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_size(value: object) -> int | None:
    """Bytes as an int, or '1G' / '512MiB' / '4096B' (binary multiples). None if not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        m = _SIZE_RE.match(value.strip())
        if m:
            return int(m[1]) << _SIZE_SHIFT.get(m[2] or "", 0)
    return None


# ---------------------------------------------------------------------------------------------- reading


def parse_config(data: object) -> Config:
    """A native-format document (parsed JSON) -> Config. Raises ConfigError listing every problem."""
    return parse_config_with_warnings(data)[0]


def parse_config_with_warnings(data: object) -> tuple[Config, list[str]]:
    if not isinstance(data, dict):
        raise ConfigError(["(top level): a configuration is a JSON object"])
    doc = _migrate(data)
    schema_errors = _schema_errors(doc)
    loc = Locator()
    cfg = _build(doc, loc)
    report = check_config(cfg, loc, Policy(short_chap_secret_is_error=True))
    # a field the schema already rejected was built from a default; its semantic complaint is noise
    bad_paths = {p for p, _ in schema_errors}
    # an unknown plugin makes every other check of that storage object meaningless
    bad_paths |= {p.removesuffix(".plugin") for p in bad_paths if p.endswith(".plugin")}
    semantic = [e for e in report.errors if not _under_any(e.split(": ", 1)[0], bad_paths)]
    errors = sorted(
        [f"{p}: {m}" if p else m for p, m in schema_errors] + semantic,
        key=lambda e: path_sort_key(e.split(": ", 1)[0]),
    )
    if errors:
        raise ConfigError(errors)
    return cfg, report.warnings


def _under_any(path: str, prefixes: set[str]) -> bool:
    return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in prefixes)


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    version = data.get(VERSION_KEY)
    if isinstance(version, bool) or not isinstance(version, int):
        return data  # the schema reports it
    if version > CURRENT_VERSION:
        raise ConfigError(
            [
                f"{VERSION_KEY}: version {version} is newer than this sanlab understands "
                f"(it reads versions up to {CURRENT_VERSION}); upgrade sanlab to use this file"
            ]
        )
    if version == CURRENT_VERSION:
        return data
    doc = copy.deepcopy(data)
    while doc[VERSION_KEY] < CURRENT_VERSION:
        step = MIGRATIONS.get(doc[VERSION_KEY])
        if step is None:
            raise ConfigError(
                [
                    f"{VERSION_KEY}: version {doc[VERSION_KEY]} is not supported (the oldest readable version is 1)"
                ]
            )
        old = doc[VERSION_KEY]
        doc = step(doc)
        doc[VERSION_KEY] = old + 1
    return doc


def _schema_errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    validator = jsonschema.Draft202012Validator(load_schema())
    found: list[tuple[tuple[Any, ...], str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in validator.iter_errors(doc):
        parts = list(err.absolute_path)
        for path_parts, message in _explain(err, parts):
            path = json_path(path_parts)
            if (path, message) not in seen:
                seen.add((path, message))
                found.append((_sort_key(path_parts), path, message))
    found.sort(key=lambda t: t[0])
    return [(p, m) for _, p, m in found]


def _explain(err: jsonschema.ValidationError, parts: list[Any]) -> list[tuple[list[Any], str]]:
    """Turn a jsonschema error into (path, message) pairs phrased for people."""
    inst = err.instance
    required = err.validator_value
    if err.validator == "required" and isinstance(inst, dict) and isinstance(required, list):
        return [([*parts, k], "missing required key") for k in required if k not in inst]
    if err.validator == "additionalProperties" and isinstance(inst, dict):
        known = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        return [([*parts, k], "unknown key") for k in inst if k not in known]
    if (
        err.validator == "oneOf"
        and isinstance(err.schema, dict)
        and "bytes" in err.schema.get("description", "")
    ):
        return [(parts, f"{inst!r} is not a size (bytes, or a number with a K/M/G/T/P suffix)")]
    if err.validator == "pattern" and parts and parts[-1] == "storage_object":
        return [
            (parts, f"{inst!r} is not a storage object path (plugin/name, plugin fileio, block or ramdisk)")
        ]
    return [(parts, err.message)]


def _sort_key(parts: list[Any]) -> tuple[Any, ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in parts)


_PATH_TOKEN_RE = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def path_sort_key(path: str) -> tuple[Any, ...]:
    """Sort key putting 'a[2].b' before 'a[10]' (document order of list items)."""
    parts: list[Any] = [int(m[1]) if m[1] is not None else m[2] for m in _PATH_TOKEN_RE.finditer(path)]
    return _sort_key(parts)


# Tolerant getters: a wrong type yields the default (the schema pass has reported it already).


def _get(d: object, key: str, typ: type | tuple[type, ...], default: Any) -> Any:
    if not isinstance(d, dict):
        return default
    value = d.get(key, default)
    if isinstance(value, bool) and typ is int:
        return default
    return value if isinstance(value, typ) else default


def _items(d: object, key: str) -> list[tuple[int, dict[str, Any]]]:
    values = _get(d, key, list, [])
    return [(i, v) for i, v in enumerate(values) if isinstance(v, dict)]


def _str_dict(d: object, key: str) -> dict[str, int | str]:
    raw = _get(d, key, dict, {})
    return {k: v for k, v in raw.items() if isinstance(v, (int, str)) and not isinstance(v, bool)}


def _settings(raw: dict[str, Any]) -> dict[str, int | str]:
    """Numbers stay numbers; a fractional one (0.5 seconds) is kept as its text, which float() reads back."""
    out: dict[str, int | str] = {}
    for k, v in raw.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, float):
            out[k] = int(v) if v.is_integer() else repr(v)
        elif isinstance(v, (int, str)):
            out[k] = v
    return out


def _build_auth(d: object, path: str, loc: Locator) -> AuthConfig:
    auth = AuthConfig(
        userid=_get(d, "userid", str, ""),
        password=_get(d, "password", str, ""),
        mutual_userid=_get(d, "mutual_userid", str, ""),
        mutual_password=_get(d, "mutual_password", str, ""),
    )
    loc.add(auth, path)
    return auth


def _build(doc: dict[str, Any], loc: Locator) -> Config:
    cfg = Config()
    loc.add(cfg, "")
    for i, so in _items(doc, "storage_objects"):
        cfg.storage_objects.append(_build_so(so, f"storage_objects[{i}]", loc))
    for i, t in _items(doc, "targets"):
        cfg.targets.append(_build_target(t, f"targets[{i}]", loc))
    disc = _get(doc, "discovery_auth", dict, {})
    cfg.discovery_auth = _build_auth(disc, "discovery_auth", loc)
    cfg.discovery_auth_enforced = _get(disc, "enforce", bool, False)
    cfg.state_dir = _get(doc, "state_dir", str, cfg.state_dir)
    cfg.settings = _settings(_get(doc, "settings", dict, {}))
    return cfg


def _build_so(d: dict[str, Any], path: str, loc: Locator) -> StorageObjectConfig:
    plugin = d.get("plugin")
    size = parse_size(d.get("size", 0))
    so = StorageObjectConfig(
        plugin=plugin if plugin in _PLUGINS else "fileio",
        name=_get(d, "name", str, ""),
        size=size if size is not None else 0,
        dev=_get(d, "dev", str, ""),
        wwn=_get(d, "wwn", str, ""),
        write_back=_get(d, "write_back", bool, True),
        block_size=_get(d, "block_size", int, 512),
        physical_block_size=_get(d, "physical_block_size", int, 0),
        readonly=_get(d, "readonly", bool, False),
        thin=_get(d, "thin", bool, True),
        attributes=_str_dict(d, "attributes"),
    )
    loc.add(so, path)
    for i, g in _items(d, "alua_groups"):
        group = AluaGroupConfig(
            name=_get(g, "name", str, ""),
            id=_get(g, "id", int, 0),
            state=_get(g, "state", str, "active_optimized"),
            preferred=_get(g, "preferred", bool, False),
            supported_states=[
                s for s in _get(g, "supported_states", list, list(ALUA_STATE_NAMES)) if isinstance(s, str)
            ],
            implicit=_get(g, "implicit", bool, True),
            explicit=_get(g, "explicit", bool, True),
            trans_delay_ms=_get(g, "trans_delay_ms", int, 0),
            nonop_delay_ms=_get(g, "nonop_delay_ms", int, 100),
            implicit_trans_secs=_get(g, "implicit_trans_secs", int, 0),
            members=[m for m in _get(g, "members", list, []) if isinstance(m, str)],
        )
        loc.add(group, f"{path}.alua_groups[{i}]")
        so.alua_groups.append(group)
    return so


def _build_target(d: dict[str, Any], path: str, loc: Locator) -> TargetConfig:
    tgt = TargetConfig(wwn=_get(d, "wwn", str, ""), alias=_get(d, "alias", str, ""))
    loc.add(tgt, path)
    for i, tpg in _items(d, "tpgs"):
        tgt.tpgs.append(_build_tpg(tpg, f"{path}.tpgs[{i}]", i, loc))
    return tgt


def _build_tpg(d: dict[str, Any], path: str, index: int, loc: Locator) -> TpgConfig:
    tpg = TpgConfig(
        tag=_get(d, "tag", int, index + 1),
        enable=_get(d, "enable", bool, True),
        attributes=_str_dict(d, "attributes"),
        parameters={k: str(v) for k, v in _str_dict(d, "parameters").items()},
        auth=_build_auth(_get(d, "auth", dict, {}), f"{path}.auth", loc),
    )
    loc.add(tpg, path)
    for i, p in _items(d, "portals"):
        portal = PortalConfig(ip=_get(p, "ip", str, ""), port=_get(p, "port", int, 3260))
        loc.add(portal, f"{path}.portals[{i}]")
        tpg.portals.append(portal)
    for i, lu in _items(d, "luns"):
        lun = LunConfig(
            index=_get(lu, "index", int, 0),
            storage_object=_get(lu, "storage_object", str, ""),
            alua_tg_pt_gp=_get(lu, "alua_tg_pt_gp", str, "default_tg_pt_gp"),
        )
        loc.add(lun, f"{path}.luns[{i}]")
        tpg.luns.append(lun)
    for i, a in _items(d, "node_acls"):
        apath = f"{path}.node_acls[{i}]"
        acl = AclConfig(
            node_wwn=_get(a, "node_wwn", str, ""),
            tag=_get(a, "tag", str, ""),
            auth=_build_auth(_get(a, "auth", dict, {}), f"{apath}.auth", loc),
            attributes=_str_dict(a, "attributes"),
        )
        loc.add(acl, apath)
        for j, m in _items(a, "mapped_luns"):
            mlun = MappedLunConfig(
                index=_get(m, "index", int, 0),
                tpg_lun=_get(m, "tpg_lun", int, 0),
                write_protect=_get(m, "write_protect", bool, False),
            )
            loc.add(mlun, f"{apath}.mapped_luns[{j}]")
            acl.mapped_luns.append(mlun)
        tpg.node_acls.append(acl)
    return tpg


# ---------------------------------------------------------------------------------------------- writing


def _dump_auth(auth: AuthConfig) -> dict[str, str]:
    fields = ("userid", "password", "mutual_userid", "mutual_password")
    return {f: getattr(auth, f) for f in fields if getattr(auth, f)}


def dump_config(cfg: Config) -> dict[str, Any]:
    """Config -> a native-format document (JSON-ready dict, current version)."""
    disc: dict[str, Any] = {"enforce": cfg.discovery_auth_enforced, **_dump_auth(cfg.discovery_auth)}
    return {
        VERSION_KEY: CURRENT_VERSION,
        "state_dir": cfg.state_dir,
        "settings": dict(cfg.settings),
        "discovery_auth": disc,
        "storage_objects": [_dump_so(so) for so in cfg.storage_objects],
        "targets": [_dump_target(t) for t in cfg.targets],
    }


def _dump_so(so: StorageObjectConfig) -> dict[str, Any]:
    d: dict[str, Any] = {"plugin": so.plugin, "name": so.name, "size": so.size}
    if so.dev:
        d["dev"] = so.dev
    if so.wwn:
        d["wwn"] = so.wwn
    d["write_back"] = so.write_back
    d["block_size"] = so.block_size
    if so.physical_block_size:
        d["physical_block_size"] = so.physical_block_size
    d["readonly"] = so.readonly
    d["thin"] = so.thin
    d["attributes"] = dict(so.attributes)
    if so.alua_groups:
        d["alua_groups"] = [dataclasses.asdict(g) for g in so.alua_groups]
    return d


def _dump_target(t: TargetConfig) -> dict[str, Any]:
    d: dict[str, Any] = {"wwn": t.wwn}
    if t.alias:
        d["alias"] = t.alias
    d["tpgs"] = [_dump_tpg(tpg) for tpg in t.tpgs]
    return d


def _dump_tpg(tpg: TpgConfig) -> dict[str, Any]:
    return {
        "tag": tpg.tag,
        "enable": tpg.enable,
        "portals": [{"ip": p.ip, "port": p.port} for p in tpg.portals],
        "luns": [
            {"index": lun.index, "storage_object": lun.storage_object, "alua_tg_pt_gp": lun.alua_tg_pt_gp}
            for lun in tpg.luns
        ],
        "node_acls": [_dump_acl(a) for a in tpg.node_acls],
        "attributes": dict(tpg.attributes),
        "parameters": dict(tpg.parameters),
        "auth": _dump_auth(tpg.auth),
    }


def _dump_acl(acl: AclConfig) -> dict[str, Any]:
    d: dict[str, Any] = {"node_wwn": acl.node_wwn}
    if acl.tag:
        d["tag"] = acl.tag
    d["auth"] = _dump_auth(acl.auth)
    d["attributes"] = dict(acl.attributes)
    d["mapped_luns"] = [
        {"index": m.index, "tpg_lun": m.tpg_lun, "write_protect": m.write_protect} for m in acl.mapped_luns
    ]
    return d
