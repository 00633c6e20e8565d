"""Realise a `config.model.Config`: backstores, logical units, the LU registry, the SCSI dispatcher, the session
registry, relative target port ids and per-session LUN maps. No sockets here (target.server is the edge).

LUN maps (what an initiator sees, LIO's shape): a TPG exports LUNs (index -> storage object); a node ACL maps
some of them under its own numbers (mapped LUN index -> TPG LUN, optionally write-protected). In demo mode
(TPG attribute generate_node_acls=1) an initiator without an ACL gets every TPG LUN, write-protected when
demo_mode_write_protect=1 (LIO default) - the login machine builds that dynamic ACL (LoginResult.acl).

Relative target port ids (SPC-4 VPD 83h, used by ALUA and persistent reservations) are one per TPG, numbered
from 1 in configuration order, so they are stable for a given configuration.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from target.backstore.base import Backstore
from target.config.model import Config, StorageObjectConfig, TpgConfig
from target.iscsi.session import SessionRegistry
from target.metrics.counters import IoStats
from target.scsi.command import LunAccess, Nexus

log = logging.getLogger("target.runtime")


def _attr_int(attrs: dict[str, int | str], name: str, default: int) -> int:
    try:
        return int(attrs.get(name, default))
    except (TypeError, ValueError):
        return default


def _settings_float(config: Config, name: str, default: float) -> float:
    try:
        return float(config.settings.get(name, default))
    except (TypeError, ValueError):
        return default


@dataclass
class Runtime:
    config: Config
    backstores: dict[str, Backstore] = field(default_factory=dict)  # "plugin/name" -> backstore
    lus: dict[str, Any] = field(default_factory=dict)  # "plugin/name" -> LogicalUnit
    registry: Any = None  # target.scsi.device.LuRegistry
    dispatcher: Any = None  # target.scsi.dispatch.Dispatcher
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    port_ids: dict[tuple[str, int], int] = field(default_factory=dict)  # (target wwn, tpg tag) -> RTPI
    #: one LunAccess per (LU, read-only) shared by every session's LUN map (they are frozen)
    _accesses: dict[tuple[int, bool], LunAccess] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------------------ settings

    @property
    def nopin_interval(self) -> float:
        return _settings_float(self.config, "nopin_interval_s", 15.0)

    @property
    def nopin_timeout(self) -> float:
        return _settings_float(self.config, "nopin_timeout_s", 15.0)

    @property
    def login_timeout(self) -> float:
        """Seconds a connection may take to complete its login (LIO login_timeout, default 15)."""
        return max(0.05, _settings_float(self.config, "login_timeout_s", 15.0))

    @property
    def shutdown_grace(self) -> float:
        """Seconds to wait for initiators to log out after the Async Message on shutdown."""
        return _settings_float(self.config, "shutdown_grace_s", 2.0)

    def portals(self) -> list[tuple[str, int]]:
        """Unique (ip, port) listen addresses of enabled TPGs."""
        out: list[tuple[str, int]] = []
        for target in self.config.targets:
            for tpg in target.tpgs:
                if not tpg.enable:
                    continue
                for p in tpg.portals:
                    key = (p.ip, p.port)
                    if key not in out:
                        out.append(key)
        return out

    # ------------------------------------------------------------------------------ sessions

    def relative_port_id(self, target_name: str, tpg_tag: int) -> int:
        return self.port_ids.get((target_name.lower(), tpg_tag), 1)

    # ------------------------------------------------------------------------------ persistent reservations

    def attach_pr(self, lu: Any) -> Any:
        """Give a logical unit its persistent reservation state, loading APTPL state from
        <state_dir>/pr/ (target.scsi.pr; call for every LU added after build_runtime)."""
        from target.scsi.pr import attach

        return attach(lu, self.config.state_dir)

    # ------------------------------------------------------------------------------ ALUA (target.scsi.alua)

    def attach_alua(self, lu: Any) -> Any:
        """Give a logical unit its ALUA target port groups (call for every LU added after build_runtime)."""
        from target.scsi.alua import attach_alua

        return attach_alua(lu, self)

    async def set_alua_state(self, storage_object: str, group: str | int, state: str | int) -> dict[str, Any]:
        """Implicit ALUA transition of `group` (name or id) of `storage_object` ("plugin/name") to `state`
        ("active_optimized", "standby", ...): TRANSITIONING for the group's trans_delay_ms, then the state, with
        ASYMMETRIC ACCESS STATE CHANGED to every nexus. Raises KeyError (no such LU / no ALUA) or
        target.scsi.alua.AluaError (unknown group or state). Returns the group's new description."""
        lu = self.lus.get(storage_object)
        alua = getattr(lu, "alua", None)
        if lu is None or alua is None:
            raise KeyError(storage_object)
        g = await alua.set_state(group, state)
        return dict(g.as_dict())

    def alua_groups(self, storage_object: str) -> list[dict[str, Any]]:
        """The ALUA groups of a storage object: states, members, relative port ids, per-group I/O counters."""
        lu = self.lus.get(storage_object)
        alua = getattr(lu, "alua", None)
        if lu is None or alua is None:
            raise KeyError(storage_object)
        return list(alua.snapshot())

    def nexus_for(self, initiator_name: str, isid: int, target_name: str, tpg_tag: int) -> Nexus:
        return Nexus(
            initiator_name=initiator_name,
            isid=isid,
            target_name=target_name,
            tpg_tag=tpg_tag,
            relative_port_id=self.relative_port_id(target_name, tpg_tag),
        )

    def lun_map(self, tpg: TpgConfig | None, acl: Any) -> dict[int, LunAccess]:
        """The LUNs an initiator sees through `tpg` with node ACL `acl` (a static or the dynamic demo ACL)."""
        if tpg is None or acl is None:
            return {}
        by_index = {lun.index: lun for lun in tpg.luns}
        accesses = self._accesses
        out: dict[int, LunAccess] = {}
        for m in acl.mapped_luns:
            tpg_lun = by_index.get(m.tpg_lun)
            if tpg_lun is None:
                continue
            lu = self.lus.get(tpg_lun.storage_object)
            if lu is None:
                continue
            key = (id(lu), bool(m.write_protect))
            access = accesses.get(key)
            if access is None or access.lu is not lu:
                if len(accesses) > 2 * len(self.lus) + 64:
                    accesses.clear()  # LUs that were removed
                access = accesses[key] = LunAccess(lu=lu, read_only=key[1])
            out[m.index] = access
        return out

    def cmdsn_depth(self, tpg: TpgConfig | None) -> int:
        if tpg is None:
            return 64
        return max(1, min(512, _attr_int(tpg.attributes, "default_cmdsn_depth", 64)))

    # ------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        for name, bs in self.backstores.items():
            try:
                bs.close()
            except Exception:
                log.exception("closing backstore %s failed", name)


def _open_backstore(cfg: StorageObjectConfig) -> Backstore:
    from target.backstore.factory import open_backstore

    return open_backstore(cfg)


def _make_lu(backstore: Backstore, cfg: StorageObjectConfig, registry: Any) -> Any:
    from target.scsi.device import LogicalUnit

    return LogicalUnit(backstore, cfg)


def _make_registry() -> Any:
    from target.scsi.device import LuRegistry

    return LuRegistry()


def _make_dispatcher(registry: Any) -> Any:
    from target.scsi.dispatch import Dispatcher

    return Dispatcher(registry)


def build_runtime(
    config: Config,
    *,
    open_backstore: Callable[[StorageObjectConfig], Backstore] = _open_backstore,
    make_lu: Callable[[Backstore, StorageObjectConfig, Any], Any] = _make_lu,
    make_registry: Callable[[], Any] = _make_registry,
    make_dispatcher: Callable[[Any], Any] = _make_dispatcher,
) -> Runtime:
    """Open every storage object, create its logical unit, the registry and the dispatcher."""
    rt = Runtime(config=config)
    rt.registry = make_registry()
    try:
        for so in config.storage_objects:
            bs = open_backstore(so)
            rt.backstores[so.path] = bs
            lu = make_lu(bs, so, rt.registry)
            rt.lus[so.path] = lu
            with contextlib.suppress(AttributeError, TypeError):
                lu.io_stats = IoStats()  # per-LU counters (target.metrics)
            add = getattr(rt.registry, "add", None) or getattr(rt.registry, "register", None)
            if add is not None:
                add(lu)
    except Exception:
        rt.close()
        raise
    rtpi = 1
    for target in config.targets:
        for tpg in target.tpgs:
            rt.port_ids[(target.wwn.lower(), tpg.tag)] = rtpi
            rtpi += 1
    for lu in rt.lus.values():
        if hasattr(lu, "ua") and hasattr(lu, "attrs"):  # a real LogicalUnit (tests pass stand-ins)
            rt.attach_alua(lu)
            rt.attach_pr(lu)
    rt.dispatcher = make_dispatcher(rt.registry)
    log.info(
        "runtime: %d storage objects, %d targets, %d portals",
        len(rt.backstores),
        len(config.targets),
        len(rt.portals()),
    )
    return rt
