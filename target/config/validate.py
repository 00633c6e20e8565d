"""Semantic checks of a configuration tree: everything a JSON Schema cannot say.

Both readers (native JSON, LIO saveconfig.json) build a `Config` and then run `check_config` on it. Each
model object is registered in a `Locator` with the JSON path it came from and how model field names are
spelled in that format, so a problem is reported where the user wrote it, e.g.
``targets[0].tpgs[1].luns[2].storage_object: 'fileio/nope' is not a storage object``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from target.config import attributes, names, parameters
from target.config.model import (
    ALUA_STATE_NAMES,
    AclConfig,
    AluaGroupConfig,
    AuthConfig,
    Config,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)

VALID_BLOCK_SIZES = (512, 4096)
MAX_LUN_INDEX = 16383  # flat space addressing (SAM-5 4.7.7.4) is the largest LUN our codec encodes
MAX_TPG_TAG = 65535  # RFC 7143 11.12.5 (Target Portal Group Tag, 16 bits); 0 is reserved in LIO
#: RFC 7143 12.1.3 (CHAP considerations): secrets with fewer than 96 random bits need IPsec; LIO and most
#: initiators (Microsoft requires 12-16 characters) therefore ask for at least 12 characters.
MIN_CHAP_SECRET_LEN = 12
MAX_PHYSICAL_BLOCK_SIZE = 65536
#: ALUA (SPC-4 6.37; LIO target_core_alua.h): TARGET PORT GROUP is 16 bits; LIO gives id 0 to default_tg_pt_gp
#: only, other groups get 1-65535
MAX_TG_PT_GP_ID = 65535
DEFAULT_TG_PT_GP = "default_tg_pt_gp"
MAX_TRANS_DELAY_MS = 30000  # LIO ALUA_MAX_TRANS_DELAY_MSECS
MAX_NONOP_DELAY_MS = 10000  # LIO ALUA_MAX_NONOP_DELAY_MSECS
MAX_IMPLICIT_TRANS_SECS = 255  # one byte in the extended REPORT TARGET PORT GROUPS header


@dataclass
class Locator:
    """Maps model objects to the JSON path they were read from, and model field names to the format's."""

    _where: dict[int, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    _keep: list[object] = field(default_factory=list)

    def add(self, obj: object, path: str, rename: Mapping[str, str] | None = None) -> None:
        self._where[id(obj)] = (path, rename or {})
        self._keep.append(obj)  # ids are only unique while the object lives

    def __call__(self, obj: object, fld: str = "") -> str:
        path, rename = self._where.get(id(obj), ("?", {}))
        if not fld:
            return path
        spelled = rename.get(fld, fld)
        return f"{path}.{spelled}" if path else spelled


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")


@dataclass
class Policy:
    """Differences between the formats: LIO accepts short CHAP secrets, so an import only warns."""

    short_chap_secret_is_error: bool = True


def check_config(cfg: Config, loc: Locator, policy: Policy | None = None) -> Report:
    policy = policy or Policy()
    rep = Report()
    so_paths = _check_storage_objects(cfg.storage_objects, loc, rep)
    seen_targets: set[str] = set()
    for tgt in cfg.targets:
        if tgt.wwn in seen_targets:
            rep.error(loc(tgt, "wwn"), f"duplicate target {tgt.wwn!r}")
        seen_targets.add(tgt.wwn)
        _check_target(tgt, so_paths, loc, rep, policy)
    _check_auth(cfg.discovery_auth, loc, rep, policy)
    if cfg.discovery_auth_enforced and not cfg.discovery_auth.enabled:
        rep.error(
            loc(cfg.discovery_auth, "enforce"), "discovery authentication is enforced but no userid is set"
        )
    if not cfg.state_dir.startswith("/"):
        rep.error(loc(cfg, "state_dir"), f"{cfg.state_dir!r} is not an absolute path")
    _check_settings(cfg.settings, loc(cfg, "settings"), rep)
    _check_alua(cfg, loc, rep)
    return rep


def _check_alua(cfg: Config, loc: Locator, rep: Report) -> None:
    """ALUA target port groups of every storage object: names and ids unique per LU, ids in range, states
    known, delays in LIO's ranges, members naming TPGs of this configuration and in one group only; a LUN
    naming a group its storage object does not define is a warning (the port joins default_tg_pt_gp)."""
    tpgs = {(t.wwn.lower(), tpg.tag) for t in cfg.targets for tpg in t.tpgs}
    for so in cfg.storage_objects:
        names_seen: set[str] = set()
        ids_seen: dict[int, str] = {}
        member_of: dict[str, str] = {}
        for i, g in enumerate(so.alua_groups):
            where = loc(g)
            if where == "?":
                where = f"{loc(so, 'alua_groups')}[{i}]"
            problem = names.check_tg_pt_gp_name(g.name)
            if problem:
                rep.error(f"{where}.name", problem)
            elif g.name in names_seen:
                rep.error(f"{where}.name", f"duplicate ALUA target port group {g.name!r}")
            names_seen.add(g.name)
            _check_alua_group(g, where, ids_seen, rep)
            for m in g.members:
                wwn, sep, tag_text = m.rpartition("/")
                if not sep or not wwn or not tag_text.isdigit():
                    rep.error(f"{where}.members", f"{m!r} is not <target wwn>/<tpg tag>")
                elif (wwn.lower(), int(tag_text)) not in tpgs:
                    rep.error(f"{where}.members", f"{m!r} is not a TPG of this configuration")
                elif m.lower() in member_of and member_of[m.lower()] != g.name:
                    rep.error(
                        f"{where}.members", f"{m!r} is already a member of group {member_of[m.lower()]!r}"
                    )
                else:
                    member_of[m.lower()] = g.name
        if not so.alua_groups:
            continue
        for t in cfg.targets:
            for tpg in t.tpgs:
                for lun in tpg.luns:
                    if (
                        lun.storage_object == so.path
                        and lun.alua_tg_pt_gp != DEFAULT_TG_PT_GP
                        and lun.alua_tg_pt_gp not in names_seen
                    ):
                        rep.warn(
                            loc(lun, "alua_tg_pt_gp"),
                            f"{so.path} has no ALUA group {lun.alua_tg_pt_gp!r}; the port joins {DEFAULT_TG_PT_GP}",
                        )


def _check_alua_group(g: AluaGroupConfig, where: str, ids_seen: dict[int, str], rep: Report) -> None:
    lowest = 0 if g.name == DEFAULT_TG_PT_GP else 1
    if not lowest <= g.id <= MAX_TG_PT_GP_ID:
        rep.error(
            f"{where}.id",
            f"{g.id} is not a target port group id (1-{MAX_TG_PT_GP_ID}; 0 is {DEFAULT_TG_PT_GP}'s)",
        )
    elif g.id in ids_seen:
        rep.error(f"{where}.id", f"duplicate target port group id {g.id} (group {ids_seen[g.id]!r} has it)")
    else:
        ids_seen[g.id] = g.name
    valid = ", ".join(ALUA_STATE_NAMES)
    if g.state not in ALUA_STATE_NAMES:
        rep.error(f"{where}.state", f"{g.state!r} is not an ALUA access state ({valid})")
    for st in g.supported_states:
        if st not in ALUA_STATE_NAMES:
            rep.error(f"{where}.supported_states", f"{st!r} is not an ALUA access state ({valid})")
    for fld, top in (
        ("trans_delay_ms", MAX_TRANS_DELAY_MS),
        ("nonop_delay_ms", MAX_NONOP_DELAY_MS),
        ("implicit_trans_secs", MAX_IMPLICIT_TRANS_SECS),
    ):
        value = getattr(g, fld)
        if not 0 <= value <= top:
            rep.error(f"{where}.{fld}", f"{value} is not in the range 0-{top}")


def _check_storage_objects(objs: list[StorageObjectConfig], loc: Locator, rep: Report) -> set[str]:
    paths: set[str] = set()
    for so in objs:
        problem = names.check_storage_object_name(so.name)
        if problem:
            rep.error(loc(so, "name"), problem)
        if so.path in paths:
            rep.error(loc(so, "name"), f"duplicate storage object {so.path!r}")
        paths.add(so.path)
        if so.block_size not in VALID_BLOCK_SIZES:
            rep.error(loc(so, "block_size"), f"{so.block_size} is not a supported block size (512 or 4096)")
        pbs = so.physical_block_size
        if pbs and (
            pbs < so.block_size or pbs > MAX_PHYSICAL_BLOCK_SIZE or pbs & (pbs - 1) or pbs % so.block_size
        ):
            rep.error(
                loc(so, "physical_block_size"),
                f"{pbs} is not a power of two between block_size ({so.block_size}) and {MAX_PHYSICAL_BLOCK_SIZE}",
            )
        if so.size < 0:
            rep.error(loc(so, "size"), "size may not be negative")
        elif so.block_size in VALID_BLOCK_SIZES and so.size % so.block_size:
            rep.error(loc(so, "size"), f"{so.size} is not a multiple of the block size {so.block_size}")
        if so.plugin == "ramdisk":
            if so.size == 0:
                rep.error(loc(so, "size"), "a ramdisk needs a size")
            if so.dev:
                rep.error(loc(so, "dev"), "a ramdisk has no backing file or device")
        elif not so.dev:
            rep.error(
                loc(so, "dev"),
                f"a {so.plugin} storage object needs a {'file' if so.plugin == 'fileio' else 'device'} path",
            )
        elif not so.dev.startswith("/"):
            rep.error(loc(so, "dev"), f"{so.dev!r} is not an absolute path")
        if so.plugin == "block" and so.size:
            rep.error(loc(so, "size"), "a block storage object takes its size from the device")
        problem = names.check_unit_serial(so.wwn)
        if problem:
            rep.error(loc(so, "wwn"), problem)
        if "block_size" in so.attributes:
            rep.error(
                loc(so, "attributes") + ".block_size",
                "set block_size on the storage object, not as an attribute",
            )
        _check_int_table(
            {k: v for k, v in so.attributes.items() if k != "block_size"},
            attributes.STORAGE_OBJECT_ATTRIBUTES,
            loc(so, "attributes"),
            "storage object attribute",
            rep,
        )
    return paths


def _check_target(tgt: TargetConfig, so_paths: set[str], loc: Locator, rep: Report, policy: Policy) -> None:
    problem = names.check_iscsi_name(tgt.wwn)
    if problem:
        rep.error(loc(tgt, "wwn"), problem)
    if tgt.alias:
        problem = names.check_alias(tgt.alias)
        if problem:
            rep.error(loc(tgt, "alias"), problem)
    tags: set[int] = set()
    portal_owner: dict[tuple[str, int], int] = {}
    for tpg in tgt.tpgs:
        if not 1 <= tpg.tag <= MAX_TPG_TAG:
            rep.error(loc(tpg, "tag"), f"{tpg.tag} is not a TPG tag (1-{MAX_TPG_TAG})")
        elif tpg.tag in tags:
            rep.error(loc(tpg, "tag"), f"duplicate TPG tag {tpg.tag}")
        tags.add(tpg.tag)
        for portal in tpg.portals:
            key = _check_portal(portal.ip, portal.port, loc, portal, rep)
            if key is None:
                continue
            owner = portal_owner.get(key)
            shown = _portal_text(*key)
            if owner == tpg.tag:
                rep.error(loc(portal), f"duplicate portal {shown}")
            elif owner is not None:
                # RFC 7143 4.4.1: a network portal belongs to exactly one portal group of a target
                rep.error(loc(portal), f"portal {shown} is already in TPG {owner} of this target")
            else:
                portal_owner[key] = tpg.tag
        _check_tpg(tpg, so_paths, loc, rep, policy)


def _check_portal(ip: str, port: int, loc: Locator, portal: object, rep: Report) -> tuple[str, int] | None:
    ok = True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        rep.error(loc(portal, "ip"), f"{ip!r} is not an IPv4 or IPv6 address")
        ok = False
    if not 1 <= port <= 65535:
        rep.error(loc(portal, "port"), f"{port} is not a TCP port (1-65535)")
        ok = False
    return (str(addr), port) if ok else None


def _portal_text(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _check_tpg(tpg: TpgConfig, so_paths: set[str], loc: Locator, rep: Report, policy: Policy) -> None:
    lun_indexes: set[int] = set()
    for lun in tpg.luns:
        if not 0 <= lun.index <= MAX_LUN_INDEX:
            rep.error(loc(lun, "index"), f"{lun.index} is not a LUN index (0-{MAX_LUN_INDEX})")
        elif lun.index in lun_indexes:
            rep.error(loc(lun, "index"), f"duplicate LUN index {lun.index}")
        lun_indexes.add(lun.index)
        if lun.storage_object not in so_paths:
            rep.error(loc(lun, "storage_object"), f"{lun.storage_object!r} is not a storage object")
        problem = names.check_tg_pt_gp_name(lun.alua_tg_pt_gp)
        if problem:
            rep.error(loc(lun, "alua_tg_pt_gp"), problem)
    acl_names: set[str] = set()
    for acl in tpg.node_acls:
        _check_acl(acl, lun_indexes, acl_names, loc, rep, policy)
    _check_auth(tpg.auth, loc, rep, policy)
    _check_int_table(tpg.attributes, attributes.TPG_ATTRIBUTES, loc(tpg, "attributes"), "TPG attribute", rep)
    valid_params: dict[str, str] = {}
    for key, value in tpg.parameters.items():
        problem = parameters.check_parameter(key, value)
        if problem:
            rep.error(f"{loc(tpg, 'parameters')}.{key}", problem)
        else:
            valid_params[key] = value
    for key, problem in parameters.check_parameter_set(valid_params):
        rep.error(f"{loc(tpg, 'parameters')}.{key}", problem)
    no_creds = not tpg.auth.enabled and not any(a.auth.enabled for a in tpg.node_acls)
    if attributes.coerce_int(tpg.attributes.get("authentication", 0)) == 1 and no_creds:
        rep.warn(loc(tpg, "attributes") + ".authentication", "CHAP is required but no credentials are set")


def _check_acl(
    acl: AclConfig, lun_indexes: set[int], seen: set[str], loc: Locator, rep: Report, policy: Policy
) -> None:
    problem = names.check_initiator_name(acl.node_wwn)
    if problem:
        rep.error(loc(acl, "node_wwn"), problem)
    elif acl.node_wwn in seen:
        rep.error(loc(acl, "node_wwn"), f"duplicate ACL for {acl.node_wwn!r}")
    seen.add(acl.node_wwn)
    mapped: set[int] = set()
    for mlun in acl.mapped_luns:
        if not 0 <= mlun.index <= MAX_LUN_INDEX:
            rep.error(loc(mlun, "index"), f"{mlun.index} is not a LUN number (0-{MAX_LUN_INDEX})")
        elif mlun.index in mapped:
            rep.error(loc(mlun, "index"), f"duplicate mapped LUN {mlun.index}")
        mapped.add(mlun.index)
        if mlun.tpg_lun not in lun_indexes:
            rep.error(loc(mlun, "tpg_lun"), f"the TPG has no LUN {mlun.tpg_lun}")
    _check_auth(acl.auth, loc, rep, policy)
    _check_int_table(acl.attributes, attributes.ACL_ATTRIBUTES, loc(acl, "attributes"), "ACL attribute", rep)


def _check_auth(auth: AuthConfig, loc: Locator, rep: Report, policy: Policy) -> None:
    for fld in ("userid", "password", "mutual_userid", "mutual_password"):
        value: str = getattr(auth, fld)
        if len(value.encode("utf-8")) > names.MAX_CHAP_FIELD_LEN:
            rep.error(loc(auth, fld), f"longer than {names.MAX_CHAP_FIELD_LEN} bytes")
        if any(ord(ch) < 0x20 or ch == "\x7f" for ch in value):
            rep.error(loc(auth, fld), "contains control characters")
    if auth.userid and not auth.password:
        rep.error(loc(auth, "password"), "a CHAP userid needs a password")
    if auth.password and not auth.userid:
        rep.error(loc(auth, "userid"), "a CHAP password needs a userid")
    if auth.mutual_userid and not auth.mutual_password:
        rep.error(loc(auth, "mutual_password"), "a mutual CHAP userid needs a password")
    if auth.mutual_password and not auth.mutual_userid:
        rep.error(loc(auth, "mutual_userid"), "a mutual CHAP password needs a userid")
    if auth.mutual_userid and not auth.userid:
        rep.error(loc(auth, "mutual_userid"), "mutual CHAP needs one-way CHAP (userid/password) too")
    for fld in ("password", "mutual_password"):
        secret: str = getattr(auth, fld)
        if secret and len(secret) < MIN_CHAP_SECRET_LEN:
            msg = f"CHAP secret is shorter than {MIN_CHAP_SECRET_LEN} characters (RFC 7143 12.1.3)"
            if policy.short_chap_secret_is_error:
                rep.error(loc(auth, fld), msg)
            else:
                rep.warn(loc(auth, fld), msg + "; many initiators will refuse it")
    if auth.password and auth.password == auth.mutual_password:
        # RFC 7143 12.1.3: a secret for initiator authentication MUST NOT be used to authenticate the target
        rep.error(
            loc(auth, "mutual_password"), "the mutual CHAP secret must differ from the initiator's secret"
        )


def _check_settings(values: Mapping[str, int | str], base: str, rep: Report) -> None:
    for key, raw in values.items():
        rng = attributes.SETTINGS.get(key)
        if rng is None:
            rep.warn(f"{base}.{key}", "unknown setting (kept, but nothing uses it)")
            continue
        lo, hi = rng
        if key in attributes.FRACTIONAL_SETTINGS:
            x = attributes.coerce_number(raw)
            if x is None or x != x:  # NaN
                rep.error(f"{base}.{key}", f"{raw!r} is not a number")
            elif not lo <= x <= hi:
                rep.error(f"{base}.{key}", f"{raw} is not in the range {lo}-{hi}")
            continue
        n = attributes.coerce_int(raw)
        if n is None:
            rep.error(f"{base}.{key}", f"{raw!r} is not an integer")
        elif not lo <= n <= hi:
            rep.error(f"{base}.{key}", f"{n} is not in the range {lo}-{hi}")


def _check_int_table(
    values: Mapping[str, int | str], table: Mapping[str, attributes.Range], base: str, what: str, rep: Report
) -> None:
    for key, raw in values.items():
        rng = table.get(key)
        if rng is None:
            rep.warn(f"{base}.{key}", f"unknown {what} (kept, but nothing uses it)")
            continue
        n = attributes.coerce_int(raw)
        lo, hi = rng
        if n is None:
            rep.error(f"{base}.{key}", f"{raw!r} is not an integer")
        elif not lo <= n <= hi:
            rep.error(f"{base}.{key}", f"{n} is not in the range {lo}-{hi}")
