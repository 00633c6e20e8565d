"""LIO's saveconfig.json (as rtslib-fb's ``RTSRoot.dump()`` / targetcli ``saveconfig`` write it): import and
export.

Shape (rtslib-fb root.py, tcm.py, target.py, fabric.py)::

    {"storage_objects": [{"plugin": "fileio"|"block"|"ramdisk"|"pscsi"|"user", "name", "dev", "size",
                          "wwn", "write_back", "readonly", "aio", "exclusive", "nullio",
                          "attributes": {"block_size": 512, ...}, "alua_tpgs": [{"name", ...}]}],
     "targets": [{"fabric": "iscsi", "wwn",
                  "tpgs": [{"tag", "enable", "attributes", "parameters",
                            "portals": [{"ip_address", "port", "iser", "offload"}],
                            "luns": [{"index", "storage_object": "/backstores/fileio/disk0",
                                      "alua_tg_pt_gp_name", "alias"}],
                            "node_acls": [{"node_wwn", "tag", "attributes", "chap_userid", "chap_password",
                                           "chap_mutual_userid", "chap_mutual_password",
                                           "mapped_luns": [{"index", "tpg_lun", "write_protect", "alias"}]}],
                            "chap_userid", "chap_password", "chap_mutual_userid", "chap_mutual_password"}]}],
     "fabric_modules": [{"name": "iscsi", "discovery_enable_auth", "discovery_userid", "discovery_password",
                         "discovery_mutual_userid", "discovery_mutual_password"}]}

What this project cannot serve (other fabrics, pscsi/user backstores, iSER, non-default ALUA groups) is a
warning and is skipped, along with whatever depends on it; so are unknown keys and attributes. Real
errors (missing or mistyped fields, bad names, dangling references) are all collected and raised together
as a ConfigError, each with its JSON path.
"""

from __future__ import annotations

from typing import Any

from target.config.errors import ConfigError
from target.config.model import (
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
from target.config.native import path_sort_key
from target.config.validate import Locator, Policy, check_config

_AUTH_FIELDS = ("userid", "password", "mutual_userid", "mutual_password")
#: rtslib's plugin names; rd_mcp is the old name of ramdisk
_PLUGIN_MAP: dict[str, BackstorePlugin] = {
    "fileio": "fileio",
    "block": "block",
    "iblock": "block",
    "ramdisk": "ramdisk",
    "rd_mcp": "ramdisk",
}
_UNSUPPORTED_PLUGINS = ("pscsi", "user")
_SO_KEYS: dict[str, set[str]] = {
    "fileio": {"dev", "size", "wwn", "write_back", "buffered_mode", "aio", "exists"},
    "block": {"dev", "wwn", "readonly", "write_back", "exclusive", "exists"},
    "ramdisk": {"size", "wwn", "nullio", "exists"},
}
_SO_COMMON_KEYS = {"name", "plugin", "attributes", "alua_tpgs", "index"}
_TPG_KEYS = {"tag", "enable", "attributes", "parameters", "portals", "luns", "node_acls"}
_ACL_KEYS = {"node_wwn", "tag", "attributes", "mapped_luns"}
_DEFAULT_TG_PT_GP = "default_tg_pt_gp"


class _Reader:
    """Typed access to a parsed JSON tree that records (not raises) every problem with its path."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}")

    def warn(self, path: str, msg: str) -> None:
        self.warnings.append(f"{path}: {msg}")

    def get(
        self, d: dict[str, Any], key: str, path: str, kind: type, default: Any, required: bool = False
    ) -> Any:
        if key not in d or d[key] is None:
            if required:
                self.error(f"{path}.{key}", "missing required key")
            return default
        value = d[key]
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):  # configfs files read back as 0/1
                return bool(value)
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif isinstance(value, kind):
            return value
        self.error(f"{path}.{key}", f"expected {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}")
        return default

    def objects(self, d: dict[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for i, item in enumerate(self.get(d, key, path, list, [])):
            ipath = f"{path}.{key}[{i}]" if path else f"{key}[{i}]"
            if isinstance(item, dict):
                out.append((ipath, item))
            else:
                self.error(ipath, f"expected an object, got {item!r}")
        return out

    def scalars(self, d: dict[str, Any], key: str, path: str) -> dict[str, int | str]:
        raw = self.get(d, key, path, dict, {})
        out: dict[str, int | str] = {}
        for k, v in raw.items():
            if isinstance(v, bool):
                out[k] = int(v)
            elif isinstance(v, (int, str)):
                out[k] = v
            else:
                self.error(f"{path}.{key}.{k}", f"expected a number or string, got {v!r}")
        return out

    def unknown_keys(self, d: dict[str, Any], known: set[str], path: str) -> None:
        for k in d:
            if k not in known:
                self.warn(f"{path}.{k}", "unknown key, ignored")


_KIND_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "a list"}


def import_saveconfig(data: object) -> tuple[Config, list[str]]:
    """A parsed saveconfig.json -> (Config, warnings). Raises ConfigError listing every real problem."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): a saveconfig.json is a JSON object"])
    rd = _Reader()
    loc = Locator()
    cfg = Config()
    loc.add(cfg, "")
    rd.unknown_keys(data, {"storage_objects", "targets", "fabric_modules", "discovery_auth"}, "(top level)")

    skipped_sos: set[str] = set()
    for path, so in rd.objects(data, "storage_objects", ""):
        obj = _import_so(rd, so, path, loc, skipped_sos)
        if obj is not None:
            cfg.storage_objects.append(obj)
    for path, t in rd.objects(data, "targets", ""):
        fabric = rd.get(t, "fabric", path, str, "", required=True)
        wwn = rd.get(t, "wwn", path, str, "", required=True)
        if fabric and fabric != "iscsi":
            rd.warn(path, f"{fabric} target {wwn!r} skipped: only iSCSI targets are served")
            continue
        rd.unknown_keys(t, {"fabric", "wwn", "tpgs", "parameters"}, path)
        for key, value in rd.scalars(t, "parameters", path).items():
            # newer rtslib dumps target-level kernel knobs; cmd_completion_affinity=-1 is the default
            if not (key == "cmd_completion_affinity" and str(value) == "-1"):
                rd.warn(f"{path}.parameters.{key}", "LIO kernel target parameter ignored")
        tgt = TargetConfig(wwn=wwn)
        loc.add(tgt, path)
        tags_used = {tp["tag"] for _, tp in rd.objects(t, "tpgs", path) if isinstance(tp.get("tag"), int)}
        next_tag = 1
        for tpath, tp in rd.objects(t, "tpgs", path):
            if "tag" not in tp:
                while next_tag in tags_used:  # LIO gives an untagged TPG the lowest free tag
                    next_tag += 1
                tags_used.add(next_tag)
                tp = {**tp, "tag": next_tag}
            tgt.tpgs.append(_import_tpg(rd, tp, tpath, loc, skipped_sos))
        cfg.targets.append(tgt)
    _import_discovery(rd, data, cfg, loc)

    report = check_config(cfg, loc, Policy(short_chap_secret_is_error=False))
    errors = rd.errors + report.errors
    if errors:
        raise ConfigError(sorted(errors, key=lambda e: path_sort_key(e.split(": ", 1)[0])))
    return cfg, rd.warnings + report.warnings


def _import_so(
    rd: _Reader, so: dict[str, Any], path: str, loc: Locator, skipped: set[str]
) -> StorageObjectConfig | None:
    name = rd.get(so, "name", path, str, "", required=True)
    raw_plugin = rd.get(so, "plugin", path, str, "", required=True)
    if not raw_plugin:
        return None
    plugin = _PLUGIN_MAP.get(raw_plugin)
    if plugin is None:
        skipped.add(f"{raw_plugin}/{name}")
        why = "is not supported" if raw_plugin in _UNSUPPORTED_PLUGINS else "is not a known backstore"
        rd.warn(path, f"storage object {raw_plugin}/{name} skipped: plugin {raw_plugin!r} {why}")
        return None
    rd.unknown_keys(so, _SO_COMMON_KEYS | _SO_KEYS[plugin], path)
    attrs = rd.scalars(so, "attributes", path)
    block_size = attrs.pop("block_size", 512)
    if not isinstance(block_size, int):
        rd.error(f"{path}.attributes.block_size", f"expected an integer, got {block_size!r}")
        block_size = 512
    write_back = rd.get(so, "write_back", path, bool, False)
    if plugin == "fileio" and "write_back" not in so and "buffered_mode" in so:
        write_back = rd.get(so, "buffered_mode", path, bool, False)  # rtslib < 2.1.fb42 spelling
    size = rd.get(so, "size", path, int, 0, required=plugin == "ramdisk") if plugin != "block" else 0
    if size and block_size in (512, 4096) and size % block_size:
        rounded = size - size % block_size
        rd.warn(f"{path}.size", f"{size} is not a multiple of the block size; LIO uses {rounded} bytes")
        size = rounded
    if plugin == "ramdisk" and rd.get(so, "nullio", path, bool, False):
        rd.warn(f"{path}.nullio", "nullio ramdisk imported as a normal (data-keeping) ramdisk")
    alua_groups: list[AluaGroupConfig] = []
    for apath, group in rd.objects(so, "alua_tpgs", path):
        imported = _import_alua_group(rd, apath, group)
        if imported is not None:
            # validation messages name the entry as the file has it (alua_tpgs[i], even after a skipped one)
            loc.add(imported, apath, _ALUA_SPELLING)
            alua_groups.append(imported)
    obj = StorageObjectConfig(
        plugin=plugin,
        name=name,
        size=size,
        dev=rd.get(so, "dev", path, str, "", required=plugin != "ramdisk"),
        wwn=rd.get(so, "wwn", path, str, ""),
        write_back=write_back,
        block_size=block_size,
        readonly=rd.get(so, "readonly", path, bool, False) if plugin == "block" else False,
        attributes=attrs,
        alua_groups=alua_groups,
    )
    loc.add(obj, path, {"block_size": "attributes.block_size", "alua_groups": "alua_tpgs"})
    return obj


def _import_auth(
    rd: _Reader, d: dict[str, Any], path: str, loc: Locator, prefix: str = "chap_"
) -> AuthConfig:
    """TPG/ACL CHAP: rtslib writes chap_userid ...; its man page and old versions say userid ..."""
    values: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for f in _AUTH_FIELDS:
        key = prefix + f if prefix + f in d or f not in d else f
        spelled[f] = key
        values[f] = rd.get(d, key, path, str, "")
    auth = AuthConfig(**values)
    loc.add(auth, path, spelled)
    return auth


def _auth_keys(d: dict[str, Any], prefix: str = "chap_") -> set[str]:
    return {k for f in _AUTH_FIELDS for k in (prefix + f, f)}


def _import_tpg(rd: _Reader, tp: dict[str, Any], path: str, loc: Locator, skipped_sos: set[str]) -> TpgConfig:
    rd.unknown_keys(tp, _TPG_KEYS | _auth_keys(tp), path)
    params = {k: str(v) for k, v in rd.scalars(tp, "parameters", path).items()}
    tpg = TpgConfig(
        tag=rd.get(tp, "tag", path, int, 1),
        enable=rd.get(tp, "enable", path, bool, True),
        attributes=rd.scalars(tp, "attributes", path),
        parameters=params,
        auth=_import_auth(rd, tp, path, loc),
    )
    loc.add(tpg, path)
    for ppath, p in rd.objects(tp, "portals", path):
        rd.unknown_keys(p, {"ip_address", "port", "iser", "offload"}, ppath)
        ip = rd.get(p, "ip_address", ppath, str, "", required=True)
        if ip.startswith("[") and ip.endswith("]"):
            ip = ip[1:-1]
        portal = PortalConfig(ip=ip, port=rd.get(p, "port", ppath, int, 3260))
        for flag in ("iser", "offload"):
            if rd.get(p, flag, ppath, bool, False):
                rd.warn(f"{ppath}.{flag}", f"{flag} is not supported; the portal serves plain iSCSI over TCP")
        loc.add(portal, ppath, {"ip": "ip_address"})
        tpg.portals.append(portal)
    skipped_luns: set[int] = set()
    for lpath, lu in rd.objects(tp, "luns", path):
        rd.unknown_keys(lu, {"index", "storage_object", "alua_tg_pt_gp_name", "alias"}, lpath)
        index = rd.get(lu, "index", lpath, int, 0, required=True)
        ref = rd.get(lu, "storage_object", lpath, str, "", required=True)
        so_path = _so_ref(ref)
        if so_path is None:
            if ref:
                rd.error(f"{lpath}.storage_object", f"{ref!r} is not of the form /backstores/<plugin>/<name>")
            continue
        if so_path in skipped_sos:
            rd.warn(lpath, f"LUN {index} skipped: its storage object {ref} was skipped")
            skipped_luns.add(index)
            continue
        lun = LunConfig(
            index=index,
            storage_object=so_path,
            alua_tg_pt_gp=rd.get(lu, "alua_tg_pt_gp_name", lpath, str, _DEFAULT_TG_PT_GP)
            or _DEFAULT_TG_PT_GP,
        )
        loc.add(lun, lpath, {"alua_tg_pt_gp": "alua_tg_pt_gp_name"})
        tpg.luns.append(lun)
    for apath, a in rd.objects(tp, "node_acls", path):
        rd.unknown_keys(a, _ACL_KEYS | _auth_keys(a), apath)
        acl = AclConfig(
            node_wwn=rd.get(a, "node_wwn", apath, str, "", required=True),
            tag=rd.get(a, "tag", apath, str, ""),
            auth=_import_auth(rd, a, apath, loc),
            attributes=rd.scalars(a, "attributes", apath),
        )
        loc.add(acl, apath)
        for mpath, m in rd.objects(a, "mapped_luns", apath):
            rd.unknown_keys(m, {"index", "tpg_lun", "write_protect", "alias"}, mpath)
            mlun = MappedLunConfig(
                index=rd.get(m, "index", mpath, int, 0, required=True),
                tpg_lun=rd.get(m, "tpg_lun", mpath, int, 0, required=True),
                write_protect=rd.get(m, "write_protect", mpath, bool, False),
            )
            if mlun.tpg_lun in skipped_luns:
                rd.warn(mpath, f"mapped LUN {mlun.index} skipped: TPG LUN {mlun.tpg_lun} was skipped")
                continue
            loc.add(mlun, mpath)
            acl.mapped_luns.append(mlun)
        tpg.node_acls.append(acl)
    return tpg


def _so_ref(ref: str) -> str | None:
    """'/backstores/fileio/disk0' -> 'fileio/disk0' (rd_mcp/iblock mapped to our plugin names)."""
    parts = ref.split("/")
    if len(parts) != 4 or parts[0] != "" or parts[1] != "backstores" or not parts[2] or not parts[3]:
        return None
    plugin = _PLUGIN_MAP.get(parts[2], parts[2])
    return f"{plugin}/{parts[3]}"


def _import_discovery(rd: _Reader, data: dict[str, Any], cfg: Config, loc: Locator) -> None:
    for path, fm in rd.objects(data, "fabric_modules", ""):
        name = rd.get(fm, "name", path, str, "", required=True)
        if name != "iscsi":
            if name:
                rd.warn(path, f"settings of fabric module {name!r} ignored")
            continue
        rd.unknown_keys(
            fm, {"name", "discovery_enable_auth"} | {f"discovery_{f}" for f in _AUTH_FIELDS}, path
        )
        spelled = {f: f"discovery_{f}" for f in _AUTH_FIELDS}
        cfg.discovery_auth = AuthConfig(**{f: rd.get(fm, spelled[f], path, str, "") for f in _AUTH_FIELDS})
        cfg.discovery_auth_enforced = rd.get(fm, "discovery_enable_auth", path, bool, False)
        loc.add(cfg.discovery_auth, path, {**spelled, "enforce": "discovery_enable_auth"})
        return
    if isinstance(data.get("discovery_auth"), dict):
        # the shape targetcli's shell shows (/iscsi get discovery_auth): enable, userid, password, ...
        d = data["discovery_auth"]
        rd.unknown_keys(d, {"enable", *_AUTH_FIELDS}, "discovery_auth")
        cfg.discovery_auth = AuthConfig(**{f: rd.get(d, f, "discovery_auth", str, "") for f in _AUTH_FIELDS})
        cfg.discovery_auth_enforced = rd.get(d, "enable", "discovery_auth", bool, False)
        loc.add(cfg.discovery_auth, "discovery_auth", {"enforce": "enable"})
    else:
        loc.add(cfg.discovery_auth, "fabric_modules")


# ---------------------------------------------------------------------------------------------- export


def export_saveconfig(cfg: Config) -> dict[str, Any]:
    """Config -> saveconfig.json dict that targetcli/rtslib-fb `restoreconfig` accepts.

    Lost on the way (LIO has no place for them): thin=False, readonly on fileio, physical_block_size,
    state_dir and settings. A target alias becomes each TPG's TargetAlias parameter.
    """
    return {
        "fabric_modules": [_export_discovery(cfg)]
        if cfg.discovery_auth_enforced or cfg.discovery_auth.enabled
        else [],
        "storage_objects": [_export_so(so) for so in cfg.storage_objects],
        "targets": [_export_target(t) for t in cfg.targets],
    }


def _export_discovery(cfg: Config) -> dict[str, Any]:
    d: dict[str, Any] = {"name": "iscsi", "discovery_enable_auth": cfg.discovery_auth_enforced}
    for f in _AUTH_FIELDS:
        value = getattr(cfg.discovery_auth, f)
        if value:
            d[f"discovery_{f}"] = value
    return d


def _export_so(so: StorageObjectConfig) -> dict[str, Any]:
    d: dict[str, Any] = {"plugin": so.plugin, "name": so.name}
    if so.plugin == "fileio":
        d.update(dev=so.dev, size=so.size, write_back=so.write_back, aio=False)
    elif so.plugin == "block":
        d.update(dev=so.dev, readonly=so.readonly, write_back=so.write_back)
    else:
        d["size"] = so.size
    if so.wwn:
        d["wwn"] = so.wwn
    d["attributes"] = {**so.attributes, "block_size": so.block_size}
    d["alua_tpgs"] = [_export_alua_group(g) for g in so.alua_groups]
    return d


#: LIO's alua_access_state numbers (SPC-4 table 279) <-> the native names
_LIO_STATES = {
    0: "active_optimized",
    1: "active_non_optimized",
    2: "standby",
    3: "unavailable",
    14: "offline",
    15: "transitioning",
}
_LIO_SUPPORT = {
    "alua_support_active_optimized": "active_optimized",
    "alua_support_active_nonoptimized": "active_non_optimized",
    "alua_support_standby": "standby",
    "alua_support_unavailable": "unavailable",
    "alua_support_offline": "offline",
    "alua_support_transitioning": "transitioning",
}
_ALUA_KEYS = {
    "name",
    "tg_pt_gp_id",
    "alua_access_state",
    "alua_access_status",
    "alua_access_type",
    "alua_write_metadata",
    "alua_support_lba_dependent",
    "preferred",
    "nonop_delay_msecs",
    "trans_delay_msecs",
    "implicit_trans_secs",
    *_LIO_SUPPORT,
}

#: AluaGroupConfig field -> the `alua_tpgs` key it comes from (for the Locator)
_ALUA_SPELLING = {
    "id": "tg_pt_gp_id",
    "state": "alua_access_state",
    "implicit": "alua_access_type",
    "explicit": "alua_access_type",
    "trans_delay_ms": "trans_delay_msecs",
    "nonop_delay_ms": "nonop_delay_msecs",
}


def _import_alua_group(rd: _Reader, path: str, g: dict[str, Any]) -> AluaGroupConfig | None:
    """One `alua_tpgs` entry (rtslib ALUATargetPortGroup.dump()) -> AluaGroupConfig."""
    rd.unknown_keys(g, _ALUA_KEYS, path)
    name = rd.get(g, "name", path, str, "", required=True)
    if not name:
        return None
    gid = rd.get(g, "tg_pt_gp_id", path, int, 0)
    raw_state = rd.get(g, "alua_access_state", path, int, 0)
    state = _LIO_STATES.get(raw_state)
    if state is None:
        rd.warn(f"{path}.alua_access_state", f"state {raw_state} not supported; active/optimized used")
        state = "active_optimized"
    access_type = rd.get(g, "alua_access_type", path, int, 3)
    supported = [st for key, st in _LIO_SUPPORT.items() if rd.get(g, key, path, int, 1)]
    return AluaGroupConfig(
        name=name,
        id=gid,
        state=state,
        preferred=bool(rd.get(g, "preferred", path, int, 0)),
        supported_states=supported,
        implicit=bool(access_type & 1),
        explicit=bool(access_type & 2),
        trans_delay_ms=rd.get(g, "trans_delay_msecs", path, int, 0),
        nonop_delay_ms=rd.get(g, "nonop_delay_msecs", path, int, 100),
        implicit_trans_secs=rd.get(g, "implicit_trans_secs", path, int, 0),
    )


def _export_alua_group(g: AluaGroupConfig) -> dict[str, Any]:
    """AluaGroupConfig -> an `alua_tpgs` entry as rtslib writes it (members are LIO's per-LUN group names)."""
    states = {v: k for k, v in _LIO_STATES.items()}
    d: dict[str, Any] = {
        "name": g.name,
        "tg_pt_gp_id": g.id,
        "alua_access_state": states.get(g.state, 0),
        "alua_access_status": 0,
        "alua_access_type": (1 if g.implicit else 0) | (2 if g.explicit else 0),
        "alua_write_metadata": 0,
        "preferred": int(g.preferred),
        "nonop_delay_msecs": g.nonop_delay_ms,
        "trans_delay_msecs": g.trans_delay_ms,
        "implicit_trans_secs": g.implicit_trans_secs,
    }
    for key, st in _LIO_SUPPORT.items():
        d[key] = int(st in g.supported_states)
    return d


def _export_auth(auth: AuthConfig, d: dict[str, Any]) -> None:
    for f in _AUTH_FIELDS:
        value = getattr(auth, f)
        if value:
            d[f"chap_{f}"] = value


def _export_target(t: TargetConfig) -> dict[str, Any]:
    tpgs = []
    for tpg in t.tpgs:
        params = dict(tpg.parameters)
        if t.alias and "TargetAlias" not in params:
            params["TargetAlias"] = t.alias
        d: dict[str, Any] = {
            "tag": tpg.tag,
            "enable": tpg.enable,
            "attributes": dict(tpg.attributes),
            "parameters": params,
            "portals": [
                {"ip_address": p.ip, "port": p.port, "iser": False, "offload": False} for p in tpg.portals
            ],
            "luns": [
                {
                    "index": lun.index,
                    "storage_object": f"/backstores/{lun.storage_object}",
                    "alua_tg_pt_gp_name": lun.alua_tg_pt_gp,
                }
                for lun in tpg.luns
            ],
            "node_acls": [],
        }
        for acl in tpg.node_acls:
            a: dict[str, Any] = {"node_wwn": acl.node_wwn, "attributes": dict(acl.attributes)}
            if acl.tag:
                a["tag"] = acl.tag
            _export_auth(acl.auth, a)
            a["mapped_luns"] = [
                {"index": m.index, "tpg_lun": m.tpg_lun, "write_protect": m.write_protect}
                for m in acl.mapped_luns
            ]
            d["node_acls"].append(a)
        _export_auth(tpg.auth, d)
        tpgs.append(d)
    return {"fabric": "iscsi", "wwn": t.wwn, "tpgs": tpgs}
