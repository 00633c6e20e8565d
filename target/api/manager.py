"""Live configuration of a running target: every change is "edit a copy of the flat config tree, then apply
the difference" (target.config.diff), so create/set/delete, `apply FILE`, restoreconfig and SIGHUP share one
engine.

Apply is all-or-nothing (unless `partial`):
  1. validate the desired Config (target.config.validate; errors are mapped back to object paths);
  2. prepare everything that can fail: open new/replaced backstores, resize, bind new portal listeners;
  3. on any failure undo step 2 and report every object that could not be applied, with the reason
     (`partial`: revert the failed objects and what depends on them to their running state, and retry);
  4. commit (nothing here can fail): swap the config, update the LU registry, close exactly the sessions a
     removed/disabled TPG, removed ACL or removed portal must close, recompute every other session's LUN map
     and give the nexuses whose map changed REPORTED LUNS DATA HAS CHANGED (SPC-4 6.33 / SAM-5 5.14, 3Fh/0Eh);
     a resized LU reports CAPACITY DATA HAS CHANGED (2Ah/09h) to every nexus; close what went away;
     persist the running config when enabled.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from target.config import diff as cdiff
from target.config.diff import Change, ChangeOp, Kind, Node
from target.config.load import load_config, save_config
from target.config.model import (
    ALUA_STATE_NAMES,
    AclConfig,
    AluaGroupConfig,
    AuthConfig,
    Config,
    LunConfig,
    MappedLunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
    dynamic_acl,
)
from target.config.validate import Locator, check_config
from target.runtime import Runtime

log = logging.getLogger("target.api")

MAX_PARTIAL_ROUNDS = 8
#: storage object fields a running LU takes without reopening its backstore (ALUA groups: the LU's ALUA provider
#: re-reads them when the runtime's Config is replaced)
LIVE_SO_FIELDS = frozenset({"size", "attributes", "alua_groups"})
#: state names a user may type (LIO's configfs spelling and short forms) -> the config's names
_ALUA_STATE_ALIASES = {
    "ao": "active_optimized",
    "optimized": "active_optimized",
    "an": "active_non_optimized",
    "ano": "active_non_optimized",
    "nonoptimized": "active_non_optimized",
    "non_optimized": "active_non_optimized",
    "active_nonoptimized": "active_non_optimized",
    "s": "standby",
    "u": "unavailable",
    "o": "offline",
    "t": "transitioning",
    # LIO's alua_access_state numbers (SPC-4 6.37 table 279)
    "0": "active_optimized",
    "1": "active_non_optimized",
    "2": "standby",
    "3": "unavailable",
    "14": "offline",
    "15": "transitioning",
}
WILDCARDS = ("0.0.0.0", "::", "")


class ManagementError(Exception):
    """A request the API refuses (bad path, missing parent, unknown field): HTTP 400/404 with this text."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class ApplyReport:
    changes: list[str] = field(default_factory=list)
    applied: bool = True
    partial: bool = False
    dry_run: bool = False
    failed: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # changes not applied (partial mode)
    closed_sessions: int = 0
    unit_attentions: int = 0
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.applied and not self.failed

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        return d


@dataclass
class _Prepared:
    new_lus: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # so path -> (backstore, lu)
    resized: dict[str, tuple[int, int]] = field(default_factory=dict)  # so path -> (old size, new size)
    listeners: list[tuple[str, int]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- node factory

_KIND_BY_GROUP = {"portals": Kind.PORTAL, "luns": Kind.LUN, "acls": Kind.ACL}


def kind_of(path: str) -> Kind:
    """The kind of object a path names (ManagementError if it names none)."""
    parts = [p for p in path.split("/") if p]
    if path in ("/discovery",):
        return Kind.DISCOVERY
    if path == "/settings":
        return Kind.SETTINGS
    if len(parts) == 3 and parts[0] == "backstores":
        return Kind.STORAGE_OBJECT
    if parts and parts[0] == "iscsi":
        if len(parts) == 2:
            return Kind.TARGET
        if len(parts) == 3 and parts[2].startswith("tpg"):
            return Kind.TPG
        if len(parts) == 5 and parts[3] in _KIND_BY_GROUP:
            return _KIND_BY_GROUP[parts[3]]
        if len(parts) == 6 and parts[3] == "acls" and parts[5].startswith("mapped_lun"):
            return Kind.MAPPED_LUN
    raise ManagementError(f"{path}: not an object path", 404)


def _int_suffix(text: str, prefix: str, path: str) -> int:
    try:
        return int(text[len(prefix) :])
    except ValueError:
        raise ManagementError(f"{path}: {text!r} is not {prefix}<number>") from None


_BOOL_TEXT = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False}


def _coerce(current: Any, value: Any, name: str) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in _BOOL_TEXT:
            return _BOOL_TEXT[str(value).lower()]
        raise ManagementError(f"{name}: {value!r} is not a boolean")
    if isinstance(current, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ManagementError(f"{name}: {value!r} is not a number") from None
    if isinstance(current, str):
        return str(value)
    return value


def _update(obj: Any, props: dict[str, Any], path: str) -> Any:
    """A copy of dataclass `obj` with `props` set (dict fields are merged; values coerced to the field type)."""
    changes: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in props.items():
        if key not in names:
            raise ManagementError(f"{path}: no property {key!r} (have: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if isinstance(current, AuthConfig):
            if not isinstance(value, dict):
                raise ManagementError(f"{path}: {key} takes userid/password/mutual_userid/mutual_password")
            changes[key] = _update(current, value, f"{path}.{key}")
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise ManagementError(f"{path}: {key} takes name=value pairs")
            merged = dict(current)
            for k, v in value.items():
                if v is None or v == "":
                    merged.pop(k, None)
                elif key == "parameters":
                    merged[k] = str(v)
                else:
                    merged[k] = int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v
            changes[key] = merged
        else:
            changes[key] = _coerce(current, value, f"{path}.{key}")
    return dataclasses.replace(copy.deepcopy(obj), **changes)


def new_node(path: str, props: dict[str, Any]) -> Node:
    """The object `path` names, built from its path and `props` (what `create` does)."""
    kind = kind_of(path)
    parts = [p for p in path.split("/") if p]
    obj: Any
    if kind is Kind.STORAGE_OBJECT:
        if parts[1] not in ("fileio", "block", "ramdisk"):
            raise ManagementError(f"{path}: unknown backstore plugin {parts[1]!r}")
        obj = StorageObjectConfig(plugin=parts[1], name=parts[2])  # type: ignore[arg-type]
        if isinstance(props.get("size"), str):
            from target.config.native import parse_size

            size = parse_size(props["size"])
            if size is None:
                raise ManagementError(f"{path}: {props['size']!r} is not a size")
            props = {**props, "size": size}
    elif kind is Kind.TARGET:
        obj = TargetConfig(wwn=parts[1])
    elif kind is Kind.TPG:
        obj = TpgConfig(tag=_int_suffix(parts[2], "tpg", path))
    elif kind is Kind.PORTAL:
        text = parts[4]
        ip, _, port = text.rpartition(":")
        try:
            obj = PortalConfig(ip=ip.strip("[]"), port=int(port))
        except ValueError:
            raise ManagementError(f"{path}: {text!r} is not <ip>:<port>") from None
    elif kind is Kind.LUN:
        obj = LunConfig(index=_int_suffix(parts[4], "lun", path), storage_object="")
        so = props.get("storage_object")
        if isinstance(so, str) and so.startswith("/backstores/"):
            props = {**props, "storage_object": so[len("/backstores/") :]}
    elif kind is Kind.ACL:
        obj = AclConfig(node_wwn=parts[4])
    elif kind is Kind.MAPPED_LUN:
        obj = MappedLunConfig(index=_int_suffix(parts[5], "mapped_lun", path), tpg_lun=0)
        if isinstance(props.get("tpg_lun"), str) and str(props["tpg_lun"]).startswith("lun"):
            props = {**props, "tpg_lun": props["tpg_lun"][3:]}
    else:
        raise ManagementError(f"{path}: cannot be created (it always exists)")
    return Node(kind, _update(obj, props, path))


# --------------------------------------------------------------------------------------------- manager


class Manager:
    """The live configuration of one running target (runtime + optional server edge)."""

    def __init__(
        self,
        runtime: Runtime,
        server: Any = None,
        *,
        config_path: str | None = None,
        save_path: str | None = None,
        keep: int = 3,
    ) -> None:
        self.rt = runtime
        self.server = server  # target.server.TargetServer (listeners, connections); None in unit tests
        self.config_path = config_path
        self.save_path = save_path
        self.keep = keep
        self._flat = cdiff.flatten(runtime.config)
        self._lock = asyncio.Lock()
        self.last_report: ApplyReport | None = None
        self.listeners: list[Callable[[ApplyReport], None]] = []
        self._background: set[asyncio.Future[None]] = set()

    @property
    def config(self) -> Config:
        return self.rt.config

    # ------------------------------------------------------------------------------------ read side

    def show(self, path: str = "/", *, secrets: bool = False) -> dict[str, Any]:
        """The object at `path` with its subtree: {path, kind, properties, children: [...]}."""
        path = "/" + path.strip("/") if path.strip("/") else "/"
        flat = self._flat
        children: dict[str, list[str]] = {}
        folders: set[str] = {"/"}
        for p in flat:
            child = p
            container = p.rsplit("/", 1)[0] or "/"
            children.setdefault(container, []).append(child)
            # grouping folders ("/backstores/fileio", ".../luns") are virtual nodes up to a real object
            while container not in flat and container not in folders:
                folders.add(container)
                child, container = container, container.rsplit("/", 1)[0] or "/"
                children.setdefault(container, []).append(child)
        if path not in flat and path not in folders:
            raise ManagementError(f"{path}: no such object", 404)

        def build(p: str) -> dict[str, Any]:
            node = flat.get(p)
            out: dict[str, Any] = {
                "path": p,
                "kind": node.kind.value if node else "group",
            }
            if node is not None:
                out["properties"] = cdiff.to_jsonable(node.obj, secrets=secrets)
            kids = children.get(p, [])
            if kids:
                out["children"] = [build(c) for c in kids]
            return out

        return build(path)

    def list_paths(self, prefix: str = "/") -> list[str]:
        return [p for p in self._flat if p.startswith(prefix.rstrip("/") + "/") or p == prefix]

    def sessions(self) -> list[dict[str, Any]]:
        out = []
        for s in self.rt.sessions:
            out.append(
                {
                    "tsih": s.tsih,
                    "initiator": s.nexus.initiator_name,
                    "isid": f"0x{s.nexus.isid:012x}",
                    "target": s.nexus.target_name,
                    "tpg": s.nexus.tpg_tag,
                    "discovery": s.discovery,
                    "luns": sorted(s.lun_map),
                    "connections": sorted(s.cids),
                }
            )
        return out

    # ------------------------------------------------------------------------------------ verbs

    async def create(self, path: str, props: dict[str, Any] | None = None) -> ApplyReport:
        node = new_node(path, dict(props or {}))
        path = path.rstrip("/")
        if path in self._flat:
            raise ManagementError(f"{path}: already exists", 409)
        parent = cdiff.parent_path(path)
        if node.kind not in (Kind.STORAGE_OBJECT, Kind.TARGET) and parent not in self._flat:
            raise ManagementError(f"{path}: parent {parent} does not exist", 404)
        flat = dict(self._flat)
        flat[path] = node
        return await self.apply_flat(flat)

    async def set(self, path: str, props: dict[str, Any]) -> ApplyReport:
        path = path.rstrip("/") or "/"
        node = self._flat.get(path)
        if node is None:
            raise ManagementError(f"{path}: no such object", 404)
        if node.kind is Kind.STORAGE_OBJECT and isinstance(props.get("size"), str):
            from target.config.native import parse_size

            size = parse_size(props["size"])
            if size is None:
                raise ManagementError(f"{path}: {props['size']!r} is not a size")
            props = {**props, "size": size}
        flat = dict(self._flat)
        flat[path] = Node(node.kind, _update(node.obj, props, path))
        return await self.apply_flat(flat)

    async def delete(self, path: str) -> ApplyReport:
        path = path.rstrip("/")
        node = self._flat.get(path)
        if node is None or node.kind in (Kind.DISCOVERY, Kind.SETTINGS):
            raise ManagementError(f"{path}: no such object", 404)
        flat = dict(self._flat)
        _remove_with_dependents(flat, path)
        return await self.apply_flat(flat)

    async def apply(self, desired: Config, *, partial: bool = False, dry_run: bool = False) -> ApplyReport:
        return await self.apply_flat(cdiff.flatten(desired), partial=partial, dry_run=dry_run)

    async def reload(self, *, partial: bool = False) -> ApplyReport:
        """SIGHUP: read the file the target was started with again and apply only the difference."""
        if not self.config_path:
            raise ManagementError("the target was not started from a file")
        desired, warnings = load_config(self.config_path)
        for w in warnings:
            log.warning("reload: %s", w)
        report = await self.apply(desired, partial=partial)
        log.info("reload of %s: %s", self.config_path, "; ".join(report.changes) or "no changes")
        return report

    # ------------------------------------------------------------------------------------ ALUA and PR

    def _so_ref(self, storage_object: str) -> str:
        """'plugin/name' of a storage object named as /backstores/plugin/name, plugin/name or a unique name."""
        ref = storage_object.strip().strip("/")
        if ref.startswith("backstores/"):
            ref = ref[len("backstores/") :]
        known = [so.path for so in self.config.storage_objects]
        if ref in known:
            return ref
        by_name = [p for p in known if p.split("/", 1)[1] == ref]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            raise ManagementError(f"{storage_object}: ambiguous, name the plugin ({', '.join(by_name)})")
        raise ManagementError(f"{storage_object or '(none)'}: no such storage object", 404)

    def _lu(self, ref: str) -> Any:
        lu = self.rt.lus.get(ref)
        if lu is None:
            raise ManagementError(f"{ref}: the storage object has no logical unit (not open)", 404)
        return lu

    def alua_show(self, storage_object: str | None = None) -> list[dict[str, Any]]:
        """Per storage object: its target port groups (name, id, state, members, relative port ids, preferred,
        delays, implicit/explicit, counters), or `alua: false` when the LU has ALUA turned off."""
        refs = (
            [self._so_ref(storage_object)]
            if storage_object
            else [so.path for so in self.config.storage_objects]
        )
        out: list[dict[str, Any]] = []
        for ref in refs:
            try:
                groups = self.rt.alua_groups(ref)
            except KeyError:
                out.append({"storage_object": ref, "alua": False, "groups": []})
                continue
            out.append({"storage_object": ref, "alua": True, "groups": groups})
        return out

    async def alua_set(self, storage_object: str, group: str, state: str) -> dict[str, Any]:
        """Implicit ALUA transition of one target port group (Runtime.set_alua_state: ASYMMETRIC ACCESS STATE
        CHANGED to every I_T nexus), then record the state in the running configuration (the storage object's
        alua_groups, LIO's alua_access_state) so saveconfig and the autosave keep it."""
        from target.scsi.alua import AluaError

        ref = self._so_ref(storage_object)
        state_name = alua_state_name(state)
        try:
            groups = self.rt.alua_groups(ref)
        except KeyError:
            raise ManagementError(
                f"{ref}: ALUA is turned off for this storage object (alua_support=0)", 409
            ) from None
        current = _find_group(groups, group)
        if current is None:
            have = ", ".join(f"{g['name']} ({g['id']})" for g in groups) or "none"
            raise ManagementError(f"{ref}: no ALUA target port group {group!r} (have: {have})", 404)
        try:
            result = await self.rt.set_alua_state(ref, current["name"], state_name)
        except KeyError:
            raise ManagementError(f"{ref}: no such logical unit", 404) from None
        except AluaError as exc:
            raise ManagementError(str(exc), 409) from None
        report = await self._record_alua_state(ref, current, state_name)
        return {
            "storage_object": ref,
            "group": result,
            "previous_state": current["state"],
            "saved": report.ok,
            "changes": report.changes,
            "failed": [dataclasses.asdict(f) for f in report.failed],
        }

    async def _record_alua_state(self, ref: str, group: dict[str, Any], state_name: str) -> ApplyReport:
        path = cdiff.so_path(ref)
        node = self._flat.get(path)
        if node is None:  # removed meanwhile
            return ApplyReport(applied=False, failed=[Failure(path, "the storage object went away")])
        so: StorageObjectConfig = copy.deepcopy(node.obj)
        named = next((g for g in so.alua_groups if g.name == group["name"]), None)
        if named is not None:
            named.state = state_name
        elif so.alua_groups:
            # a group the runtime made up (default_tg_pt_gp): record it as LIO would
            so.alua_groups.append(AluaGroupConfig(name=group["name"], id=int(group["id"]), state=state_name))
        flat = dict(self._flat)
        if not so.alua_groups:
            # one group per target port, made up by the runtime: write them all down as LIO has them (a group
            # per port, the port's LUN naming it), so the ports keep their groups and ids (= relative port
            # ids) once the configuration names groups, and an LIO export maps them the same way
            so.alua_groups, lun_groups = _materialize_groups(
                self.rt.alua_groups(ref), group["name"], state_name
            )
            for p, n in self._flat.items():
                if n.kind is not Kind.LUN or n.obj.storage_object != ref:
                    continue
                parts = p.split("/")  # "", iscsi, wwn, tpgN, luns, lunM
                name = lun_groups.get((parts[2].lower(), int(parts[3][3:])))
                if name is not None and n.obj.alua_tg_pt_gp != name:
                    flat[p] = Node(Kind.LUN, dataclasses.replace(n.obj, alua_tg_pt_gp=name))
        flat[path] = Node(Kind.STORAGE_OBJECT, so)
        return await self.apply_flat(flat)

    def pr_show(self, storage_object: str) -> dict[str, Any]:
        from target.scsi.pr.admin import describe

        return describe(self._lu(self._so_ref(storage_object)))

    async def pr_clear(self, storage_object: str) -> dict[str, Any]:
        """Release the reservation and drop every registration (PROUT CLEAR semantics, RESERVATIONS PREEMPTED to
        the registrants), APTPL file updated atomically first."""
        from target.scsi.pr.admin import AdminError, admin_clear

        ref = self._so_ref(storage_object)
        lu = self._lu(ref)
        try:
            result = admin_clear(lu)
        except AdminError as exc:
            raise ManagementError(f"{ref}: persistent reservations not cleared: {exc}", 500) from None
        log.info(
            "%s: persistent reservations cleared by the administrator (%d registrations, reservation %s)",
            ref,
            result["registrations_removed"],
            "released" if result["reservation_released"] else "none",
        )
        return {"storage_object": ref, **result}

    def saveconfig(self, path: str | None = None, *, fmt: str = "native") -> str:
        target = path or self.save_path or str(Path(self.config.state_dir) / "saveconfig.json")
        ensure_state_dir(str(Path(target).parent))
        rotate_and_save(self.config, target, keep=self.keep, fmt=fmt)
        return target

    # ------------------------------------------------------------------------------------ engine

    async def apply_flat(
        self, desired: dict[str, Node], *, partial: bool = False, dry_run: bool = False
    ) -> ApplyReport:
        async with self._lock:
            started = time.perf_counter()
            report = await self._apply_locked(dict(desired), partial=partial, dry_run=dry_run)
            report.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            self.last_report = report
            if report.changes:
                log.info(
                    "configuration change%s: %s%s",
                    " (dry run)" if dry_run else "",
                    "; ".join(report.changes[:20]),
                    f" (+{len(report.changes) - 20} more)" if len(report.changes) > 20 else "",
                )
            for f in report.failed:
                log.warning("not applied: %s: %s", f.path, f.reason)
            for cb in self.listeners:
                cb(report)
            return report

    async def _apply_locked(self, desired: dict[str, Node], *, partial: bool, dry_run: bool) -> ApplyReport:
        report = ApplyReport(partial=partial, dry_run=dry_run)
        wanted_changes = cdiff.diff(self._flat, desired)
        failures: dict[str, str] = {}
        prepared = _Prepared()
        for _ in range(MAX_PARTIAL_ROUNDS):
            cfg = cdiff.unflatten(desired)
            round_failures = self._validate(cfg, desired)
            changes = cdiff.diff(self._flat, desired)
            if not round_failures and not dry_run:
                prepared = _Prepared()
                round_failures = await self._prepare(changes, desired, prepared)
            if not round_failures:
                break
            failures.update(round_failures)
            if not dry_run:
                await self._unprepare(prepared)
                prepared = _Prepared()
            if not partial:
                report.applied = False
                report.changes = cdiff.summarize(wanted_changes)
                report.failed = [Failure(p, r) for p, r in failures.items()]
                return report
            for p in round_failures:
                self._revert(desired, p)
        else:  # pragma: no cover - a revert always converges to the running state
            report.applied = False
            report.failed = [Failure(p, r) for p, r in failures.items()]
            return report
        applied = {str(c) for c in changes}
        report.changes = cdiff.summarize(changes)
        report.skipped = [str(c) for c in wanted_changes if str(c) not in applied]
        report.failed = [Failure(p, r) for p, r in failures.items()]
        if dry_run or not changes:
            return report
        self._commit(changes, cfg, desired, prepared, report)
        self._persist()
        return report

    def _revert(self, desired: dict[str, Node], path: str) -> None:
        """Partial apply: `path` goes back to its running state (or away when it is new)."""
        old = self._flat.get(path)
        if old is not None:
            desired[path] = old
            return
        _remove_with_dependents(desired, path)

    def _validate(self, cfg: Config, flat: dict[str, Node]) -> dict[str, str]:
        loc = Locator()
        by_obj: list[tuple[Any, str]] = []
        for so in cfg.storage_objects:
            by_obj.append((so, cdiff.so_path(so.path)))
        for t in cfg.targets:
            tp = cdiff.target_path(t.wwn)
            by_obj.append((t, tp))
            for tpg in t.tpgs:
                gp = f"{tp}/tpg{tpg.tag}"
                by_obj.append((tpg, gp))
                by_obj.extend((p, f"{gp}/portals/{cdiff.portal_key(p.ip, p.port)}") for p in tpg.portals)
                by_obj.extend((lun, f"{gp}/luns/lun{lun.index}") for lun in tpg.luns)
                for acl in tpg.node_acls:
                    ap = f"{gp}/acls/{acl.node_wwn}"
                    by_obj.append((acl, ap))
                    by_obj.extend((m, f"{ap}/mapped_lun{m.index}") for m in acl.mapped_luns)
        by_obj.append((cfg.discovery_auth, "/discovery"))
        by_obj.append((cfg, "/settings"))
        for obj, p in by_obj:
            loc.add(obj, p)
        rep = check_config(cfg, loc)
        out: dict[str, str] = {}
        known = sorted((p for _, p in by_obj), key=len, reverse=True)
        for err in rep.errors:
            where = next(
                (p for p in known if err.startswith(p) and err[len(p) : len(p) + 1] in (".", ":")), "/"
            )
            reason = err[len(where) :].lstrip(".")
            out.setdefault(where, reason)
        return out

    async def _prepare(
        self, changes: list[Change], desired: dict[str, Node], prep: _Prepared
    ) -> dict[str, str]:
        failures: dict[str, str] = {}
        for c in changes:
            if c.kind is not Kind.STORAGE_OBJECT or c.op is ChangeOp.REMOVE:
                continue
            so: StorageObjectConfig = desired[c.path].obj
            if c.op is ChangeOp.MODIFY and set(c.fields) <= LIVE_SO_FIELDS:
                if "size" in c.fields:
                    bs = self.rt.backstores.get(so.path)
                    old_size = bs.size if bs is not None else 0
                    try:
                        if bs is None:
                            raise RuntimeError("backstore is not open")
                        if so.size <= 0:
                            raise ValueError("a live resize needs an explicit size")
                        await bs.resize(so.size)
                    except Exception as exc:
                        failures[c.path] = f"cannot resize: {exc}"
                        continue
                    prep.resized[so.path] = (old_size, so.size)
                continue
            try:
                bs, lu = _open(so)
            except Exception as exc:
                failures[c.path] = f"cannot open: {exc}"
                continue
            prep.new_lus[so.path] = (bs, lu)
        if self.server is not None:
            want = _listen_set(cdiff.unflatten(desired))
            have = set(self.server.listening())
            for ip, port in want - have:
                try:
                    await self.server.open_listener(ip, port)
                except OSError as exc:
                    for p, n in desired.items():
                        if n.kind is Kind.PORTAL and (n.obj.ip, n.obj.port) == (ip, port):
                            failures[p] = (
                                f"cannot listen on {cdiff.portal_key(ip, port)}: {exc.strerror or exc}"
                            )
                    continue
                prep.listeners.append((ip, port))
        return failures

    async def _unprepare(self, prep: _Prepared) -> None:
        for bs, _lu in prep.new_lus.values():
            try:
                bs.close()
            except Exception:
                log.exception("closing a prepared backstore failed")
        for name, (old_size, _new) in prep.resized.items():
            bs = self.rt.backstores.get(name)
            if bs is not None:
                try:
                    await bs.resize(old_size)
                except Exception:
                    log.exception("%s: rolling back the resize failed", name)
        if self.server is not None:
            for ip, port in prep.listeners:
                await self.server.close_listener(ip, port)

    def _commit(
        self,
        changes: list[Change],
        cfg: Config,
        desired: dict[str, Node],
        prep: _Prepared,
        report: ApplyReport,
    ) -> None:
        rt = self.rt
        old_cfg = rt.config
        old_flat = self._flat
        rt.config = cfg
        self._flat = desired
        if self.server is not None:
            self.server.config_changed()
        # relative port ids: existing ones stay, new TPGs get fresh numbers
        next_id = max(rt.port_ids.values(), default=0) + 1
        for t in cfg.targets:
            for tpg in t.tpgs:
                key = (t.wwn.lower(), tpg.tag)
                if key not in rt.port_ids:
                    rt.port_ids[key] = next_id
                    next_id += 1
        # storage objects: remove replaced/removed LUs, add new ones, apply attribute changes and resizes
        retired: list[Any] = []
        for c in changes:
            if c.kind is not Kind.STORAGE_OBJECT:
                continue
            name = c.path[len("/backstores/") :]
            if (c.op is ChangeOp.REMOVE or name in prep.new_lus) and name in rt.lus:
                rt.registry.remove(name)
                retired.append(rt.backstores.pop(name, None))
                rt.lus.pop(name, None)
            if c.op is ChangeOp.MODIFY and name not in prep.new_lus:
                lu = rt.lus.get(name)
                so: StorageObjectConfig = desired[c.path].obj
                if lu is not None:
                    lu.config = so
                    if "attributes" in c.fields:
                        old_attrs = old_flat[c.path].obj.attributes
                        for attr_name, value in so.attributes.items():
                            if old_attrs.get(attr_name) != value:
                                try:
                                    lu.set_attribute(attr_name, int(value))
                                except (KeyError, ValueError, TypeError) as exc:
                                    log.warning("%s: attribute %s not changed live: %s", name, attr_name, exc)
                    if name in prep.resized:
                        lu.capacity_changed()
                        report.unit_attentions += len(lu.ua.nexuses)
        live_nexuses = [s.nexus for s in rt.sessions if not s.discovery and not s.closed]
        for name, (bs, lu) in prep.new_lus.items():
            rt.backstores[name] = bs
            rt.lus[name] = lu
            rt.registry.add(lu)
            # the same per-LU state a start-up LU gets: ALUA groups, persistent reservations (APTPL reload)
            rt.attach_alua(lu)
            rt.attach_pr(lu)
            for nexus in live_nexuses:
                lu.nexus_created(nexus)
        # sessions: close what must go, remap the rest
        closing = self._sessions_to_close(changes, cfg, old_cfg)
        for s, why in closing:
            s.close(why)
            report.closed_sessions += 1
        # only sessions of TPGs whose LUNs, ACLs or attributes changed (or of every TPG when a storage object
        # behind LUNs was replaced or removed) can see a different LUN map
        everything = any(
            c.kind is Kind.STORAGE_OBJECT
            and (c.op is ChangeOp.REMOVE or c.path[len("/backstores/") :] in prep.new_lus)
            for c in changes
        )
        touched = {
            "/".join(c.path.split("/")[:4])
            for c in changes
            if c.kind in (Kind.TPG, Kind.LUN, Kind.ACL, Kind.MAPPED_LUN)
        }
        for s in rt.sessions:
            if s.discovery or s.closed:
                continue
            if not everything and cdiff.tpg_path(s.nexus.target_name, s.nexus.tpg_tag) not in touched:
                continue
            s_tpg = _find_tpg(cfg, s.nexus.target_name, s.nexus.tpg_tag)
            acl = _acl_for(s_tpg, s.nexus.initiator_name) if s_tpg is not None else None
            new_map = rt.lun_map(s_tpg, acl)
            if _map_key(new_map) != _map_key(s.lun_map):
                s.lun_map = new_map
                # SPC-4 / SAM-5: the nexus learns through a unit attention on its LUNs (LIO: every LUN of it)
                seen: set[int] = set()
                for access in new_map.values():
                    target_lu: Any = access.lu
                    if id(target_lu) not in seen:
                        seen.add(id(target_lu))
                        target_lu.ua.establish(_reported_luns_changed(), only=[s.nexus])
                        report.unit_attentions += 1
        for bs in retired:
            if bs is not None:
                try:
                    bs.close()
                except Exception:
                    log.exception("closing a removed backstore failed")
        if self.server is not None:
            gone = set(self.server.listening()) - _listen_set(cfg)
            for ip, port in gone:
                task = asyncio.ensure_future(self.server.close_listener(ip, port))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _sessions_to_close(
        self, changes: list[Change], cfg: Config, old_cfg: Config
    ) -> list[tuple[Any, str]]:
        out: list[tuple[Any, str]] = []
        removed_portals: list[tuple[str, int, str, int]] = []
        for c in changes:
            if c.kind is Kind.PORTAL and c.op is ChangeOp.REMOVE:
                parts = c.path.split("/")
                wwn, tag = parts[2], int(parts[3][3:])
                ip_text, _, port_text = parts[5].rpartition(":")
                removed_portals.append((ip_text.strip("[]"), int(port_text), wwn, tag))
        local_of = self.server.session_locals() if self.server is not None else {}
        for s in self.rt.sessions:
            if s.closed:
                continue
            n = s.nexus
            for ip, port, wwn, tag in removed_portals:
                if (s.discovery or (n.target_name, n.tpg_tag) == (wwn, tag)) and any(
                    _addr_matches(ip, port, local) for local in local_of.get(id(s), [])
                ):
                    out.append((s, f"portal {cdiff.portal_key(ip, port)} removed"))
                    break
            else:
                if s.discovery:
                    continue
                tpg = _find_tpg(cfg, n.target_name, n.tpg_tag)
                if tpg is None:
                    out.append((s, "target portal group removed"))
                elif not tpg.enable:
                    out.append((s, "target portal group disabled"))
                else:
                    old_tpg = _find_tpg(old_cfg, n.target_name, n.tpg_tag)
                    old_static = old_tpg is not None and _static_acl(old_tpg, n.initiator_name) is not None
                    if old_static and _static_acl(tpg, n.initiator_name) is None:
                        out.append((s, "node ACL removed"))
                    elif _acl_for(tpg, n.initiator_name) is None:
                        out.append((s, "initiator no longer allowed"))
        return out

    def _persist(self) -> None:
        if not self.save_path:
            return
        try:
            ensure_state_dir(str(Path(self.save_path).parent))
            rotate_and_save(self.config, self.save_path, keep=self.keep)
        except (OSError, StateDirError) as exc:
            log.error("cannot save the running configuration to %s: %s", self.save_path, exc)


# --------------------------------------------------------------------------------------------- helpers


def _remove_with_dependents(flat: dict[str, Node], path: str) -> None:
    """Remove `path`, its subtree, the LUNs using a removed storage object and mapped LUNs of removed LUNs."""
    doomed = [path, *cdiff.descendants(flat, path)]
    node = flat.get(path)
    for p in doomed:
        flat.pop(p, None)
    if node is None:
        return
    if node.kind is Kind.STORAGE_OBJECT:
        ref = path[len("/backstores/") :]
        for p, n in list(flat.items()):
            if n.kind is Kind.LUN and n.obj.storage_object == ref:
                _remove_with_dependents(flat, p)
    elif node.kind is Kind.LUN:
        tpg = cdiff.parent_path(path)
        for p, n in list(flat.items()):
            if n.kind is Kind.MAPPED_LUN and p.startswith(tpg + "/acls/") and n.obj.tpg_lun == node.obj.index:
                flat.pop(p, None)


def _open(so: StorageObjectConfig) -> tuple[Any, Any]:
    from target.backstore.factory import open_backstore
    from target.metrics.counters import IoStats
    from target.scsi.device import LogicalUnit

    bs = open_backstore(so)
    try:
        lu = LogicalUnit(bs, so)
    except Exception:
        bs.close()
        raise
    lu.io_stats = IoStats()  # type: ignore[attr-defined]
    return bs, lu


def _listen_set(cfg: Config) -> set[tuple[str, int]]:
    return {(p.ip, p.port) for t in cfg.targets for tpg in t.tpgs if tpg.enable for p in tpg.portals}


def _find_tpg(cfg: Config, wwn: str, tag: int) -> TpgConfig | None:
    for t in cfg.targets:
        if t.wwn.lower() == wwn.lower():
            for tpg in t.tpgs:
                if tpg.tag == tag:
                    return tpg
    return None


def _static_acl(tpg: TpgConfig, initiator: str) -> AclConfig | None:
    name = initiator.lower()
    return next((a for a in tpg.node_acls if a.node_wwn.lower() == name), None)


def _acl_for(tpg: TpgConfig, initiator: str) -> AclConfig | None:
    """The ACL a login would get now: the static one, or the demo-mode one (as LoginMachine._demo_acl)."""
    acl = _static_acl(tpg, initiator)
    if acl is not None:
        return acl
    if str(tpg.attributes.get("generate_node_acls", 0)) != "1":
        return None
    protect = str(tpg.attributes.get("demo_mode_write_protect", 1)) == "1"
    return dynamic_acl(tpg, initiator, protect)


def _map_key(m: dict[int, Any]) -> dict[int, tuple[int, bool]]:
    return {k: (id(v.lu), bool(v.read_only)) for k, v in m.items()}


def _reported_luns_changed() -> Any:
    from target.scsi.sense import Asc

    return Asc.REPORTED_LUNS_DATA_HAS_CHANGED


def _norm_ip(ip: str) -> str:
    ip = ip.split("%", 1)[0]
    return ip[7:] if ip.startswith("::ffff:") else ip


def _addr_matches(ip: str, port: int, local: tuple[str, int]) -> bool:
    if local[1] != port:
        return False
    return ip in WILDCARDS or _norm_ip(local[0]) == _norm_ip(ip)


def alua_state_name(text: str) -> str:
    """The config's name of an ALUA access state typed as LIO spells it (active_nonoptimized), a short form
    (ao, an) or a number; ManagementError for anything else."""
    key = str(text).strip().lower().replace("-", "_").replace("/", "_")
    key = _ALUA_STATE_ALIASES.get(key, key)
    if key not in ALUA_STATE_NAMES:
        raise ManagementError(
            f"unknown ALUA access state {text!r} (active_optimized|ao, active_nonoptimized|an, standby, "
            "unavailable, offline, transitioning)"
        )
    return key


def _find_group(groups: list[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    """A group of `alua_groups()` by name, else by id."""
    for g in groups:
        if g.get("name") == ref:
            return g
    try:
        gid = int(str(ref), 0)
    except ValueError:
        return None
    return next((g for g in groups if g.get("id") == gid), None)


def _materialize_groups(
    groups: list[dict[str, Any]], changed: str, state: str
) -> tuple[list[AluaGroupConfig], dict[tuple[str, int], str]]:
    """Config entries for the runtime's one-group-per-port layout ("<wwn>/<tag>" groups): the same ids, named
    tpg<tag> (or t<id>.tpg<tag> when two targets share a tag); and (wwn lower, tag) -> group name for the
    LUNs of those ports."""
    tags = [str(g["name"]).rpartition("/")[2] for g in groups]
    out: list[AluaGroupConfig] = []
    lun_groups: dict[tuple[str, int], str] = {}
    for g, tag in zip(groups, tags, strict=True):
        name = f"tpg{tag}" if tags.count(tag) == 1 else f"t{g['id']}.tpg{tag}"
        for member in g.get("members") or [g["name"]]:
            wwn, _, tag_text = str(member).rpartition("/")
            if tag_text.isdigit():
                lun_groups[(wwn.lower(), int(tag_text))] = name
        out.append(
            AluaGroupConfig(
                name=name,
                id=int(g["id"]),
                state=state if g["name"] == changed else str(g["state"]),
                preferred=bool(g.get("preferred", False)),
                implicit=bool(g.get("implicit", True)),
                explicit=bool(g.get("explicit", True)),
                trans_delay_ms=int(g.get("trans_delay_ms", 0)),
                nonop_delay_ms=int(g.get("nonop_delay_ms", 100)),
                implicit_trans_secs=int(g.get("implicit_trans_secs", 0)),
            )
        )
    return out, lun_groups


class StateDirError(Exception):
    pass


def ensure_state_dir(path: str) -> Path:
    """Create the state directory (APTPL data, saved configs) on first use; a clear error when impossible."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateDirError(f"cannot create the state directory {p}: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise StateDirError(f"the state directory {p} is not writable")
    return p


def rotate_and_save(cfg: Config, path: str, *, keep: int = 3, fmt: str = "native") -> None:
    """Keep `keep` previous copies (path.1 newest ... path.N), then write atomically (temp, fsync, rename)."""
    target = Path(path)
    if keep > 0 and target.exists():
        for i in range(keep - 1, 0, -1):
            older = target.with_name(f"{target.name}.{i}")
            if older.exists():
                os.replace(older, target.with_name(f"{target.name}.{i + 1}"))
        try:
            os.link(target, target.with_name(f"{target.name}.1.tmp"))
            os.replace(target.with_name(f"{target.name}.1.tmp"), target.with_name(f"{target.name}.1"))
        except OSError:
            import shutil

            shutil.copy2(target, target.with_name(f"{target.name}.1"))
    save_config(cfg, target, fmt="lio" if fmt == "lio" else "native")
