"""Target port groups of one logical unit and their asymmetric access states (SPC-4 5.15, LIO target_core_alua).

Theory of operation:
- A target port is an iSCSI target portal group of a target (SPC-4 / RFC 7143: "<target>,t,0x<tpgt>"); its
  relative target port identifier comes from the runtime (`Runtime.port_ids`, one per TPG).
- Each storage object has target port groups (config `StorageObjectConfig.alua_groups`, LIO's `alua_tpgs`).
  A port of the LU belongs to the group whose `members` name it, else to the group its LUN names
  (`LunConfig.alua_tg_pt_gp`), else to `default_tg_pt_gp` (created with id 0, active/optimized, when the config
  does not have it: every LIO device has one). With no groups configured, every port gets a group of its own
  (id = relative port id, name "<target wwn>/<tpg tag>"), all active/optimized.
- The group map is rebuilt lazily whenever the runtime's Config object is replaced (management apply, SIGHUP);
  a group keeps its live state across a rebuild unless the config names a different state than it did before,
  which is then applied as an implicit transition (unit attention, no transition delay).
- `set_state()` is a transition: implicit (management API) or explicit (SET TARGET PORT GROUPS). The group is
  TRANSITIONING for `trans_delay_ms` (commands get NOT READY 04h/0Ah), then takes the new state. ASYMMETRIC
  ACCESS STATE CHANGED (2Ah/06h) is established when the transition starts and when it ends, for every I_T
  nexus of the LU except, for an explicit change, the nexus that sent SET TARGET PORT GROUPS (SPC-4 5.15.2.2:
  "...for every I_T nexus other than the I_T nexus on which the SET TARGET PORT GROUPS command was received").
- Commands admitted on an active/non-optimized port that need an active state wait `nonop_delay_ms` (LIO's
  nonop_delay_msecs: every such command, TEST UNIT READY included). Media-access commands (`media_access`) are
  counted per group (`media_commands`, the per-path counters of metrics and tests).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from target.config.model import ALUA_STATE_NAMES, AluaGroupConfig, Config, StorageObjectConfig
from target.scsi.command import Nexus
from target.scsi.gates import AluaClass, AluaState
from target.scsi.sense import Asc

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default_tg_pt_gp"
MAX_TRANS_DELAY_MS = 30000  # LIO ALUA_MAX_TRANS_DELAY_MSECS
MAX_NONOP_DELAY_MS = 10000  # LIO ALUA_MAX_NONOP_DELAY_MSECS
MAX_GROUP_ID = 0xFFFF
MAX_IMPLICIT_TRANS_SECS = 255


class AluaError(ValueError):
    """A management request names an unknown group or a state the group cannot take."""


class AccessType(enum.IntFlag):
    """The TPGS field of standard INQUIRY data (SPC-4 6.6.2 table 144): which transitions a group supports."""

    NONE = 0
    IMPLICIT = 0x1
    EXPLICIT = 0x2


class StatusCode(enum.IntEnum):
    """STATUS CODE of a target port group descriptor (SPC-4 6.37 table 281)."""

    NONE = 0x00
    ALTERED_BY_EXPLICIT_STPG = 0x01
    ALTERED_BY_IMPLICIT_ALUA = 0x02


_BY_NAME: dict[str, AluaState] = {
    "active_optimized": AluaState.ACTIVE_OPTIMIZED,
    "active_non_optimized": AluaState.ACTIVE_NON_OPTIMIZED,
    "standby": AluaState.STANDBY,
    "unavailable": AluaState.UNAVAILABLE,
    "lba_dependent": AluaState.LBA_DEPENDENT,
    "offline": AluaState.OFFLINE,
    "transitioning": AluaState.TRANSITIONING,
}
_ALIASES = {
    "ao": "active_optimized",
    "an": "active_non_optimized",
    "ano": "active_non_optimized",
    "active_nonoptimized": "active_non_optimized",  # LIO's spelling
}
_NAME_OF = {v: k for k, v in _BY_NAME.items()}

#: the *_SUP bits of a target port group descriptor (SPC-4 6.37 table 280)
SUPPORT_BITS: dict[AluaState, int] = {
    AluaState.TRANSITIONING: 0x80,  # T_SUP
    AluaState.OFFLINE: 0x40,  # O_SUP
    AluaState.LBA_DEPENDENT: 0x10,  # LBD_SUP
    AluaState.UNAVAILABLE: 0x08,  # U_SUP
    AluaState.STANDBY: 0x04,  # S_SUP
    AluaState.ACTIVE_NON_OPTIMIZED: 0x02,  # AN_SUP
    AluaState.ACTIVE_OPTIMIZED: 0x01,  # AO_SUP
}


def parse_state(value: str | int | AluaState) -> AluaState:
    """An access state from its config name ("active_optimized", "standby", ...; "ao"/"ano" too) or number."""
    if isinstance(value, AluaState):
        return value
    if isinstance(value, int):
        try:
            return AluaState(value)
        except ValueError:
            raise AluaError(f"unknown ALUA access state {value}") from None
    key = value.strip().lower().replace("-", "_").replace("/", "_")
    key = _ALIASES.get(key, key)
    if key not in _BY_NAME:
        raise AluaError(f"unknown ALUA access state {value!r} (one of {', '.join(ALUA_STATE_NAMES)})")
    return _BY_NAME[key]


def state_name(state: AluaState) -> str:
    return _NAME_OF[state]


def _clamp(value: int, top: int) -> int:
    return max(0, min(top, int(value)))


@dataclass
class TargetPortGroup:
    """Live state of one target port group."""

    name: str
    id: int
    state: AluaState = AluaState.ACTIVE_OPTIMIZED
    preferred: bool = False
    supported: frozenset[AluaState] = frozenset(SUPPORT_BITS) - {AluaState.LBA_DEPENDENT}
    access: AccessType = AccessType.IMPLICIT | AccessType.EXPLICIT
    trans_delay_ms: int = 0
    nonop_delay_ms: int = 100
    implicit_trans_secs: int = 0
    status: StatusCode = StatusCode.NONE
    #: media-access commands admitted through this group's ports (per-path I/O counter)
    media_commands: int = 0
    #: the state the config named when it was last applied (a reload applies only a changed config state)
    config_state: AluaState | None = None
    #: the members from the config ("wwn/tag", lower case)
    members: frozenset[str] = frozenset()

    @property
    def support_bits(self) -> int:
        bits = 0
        for st in self.supported:
            bits |= SUPPORT_BITS.get(st, 0)
        return bits

    @classmethod
    def from_config(cls, g: AluaGroupConfig) -> TargetPortGroup:
        state = parse_state(g.state)
        supported = frozenset(parse_state(s) for s in g.supported_states) | {state}
        access = AccessType.NONE
        if g.implicit:
            access |= AccessType.IMPLICIT
        if g.explicit:
            access |= AccessType.EXPLICIT
        return cls(
            name=g.name,
            id=_clamp(g.id, MAX_GROUP_ID),
            state=state,
            preferred=bool(g.preferred),
            supported=supported,
            access=access,
            trans_delay_ms=_clamp(g.trans_delay_ms, MAX_TRANS_DELAY_MS),
            nonop_delay_ms=_clamp(g.nonop_delay_ms, MAX_NONOP_DELAY_MS),
            implicit_trans_secs=_clamp(g.implicit_trans_secs, MAX_IMPLICIT_TRANS_SECS),
            config_state=state,
            members=frozenset(m.lower() for m in g.members),
        )

    def update_settings(self, other: TargetPortGroup) -> None:
        """Take the configured settings of `other` (a reload), keep the live state and counters."""
        self.id = other.id
        self.preferred = other.preferred
        self.supported = other.supported
        self.access = other.access
        self.trans_delay_ms = other.trans_delay_ms
        self.nonop_delay_ms = other.nonop_delay_ms
        self.implicit_trans_secs = other.implicit_trans_secs
        self.members = other.members

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "state": state_name(self.state),
            "preferred": self.preferred,
            "status": self.status.name.lower(),
            "implicit": bool(self.access & AccessType.IMPLICIT),
            "explicit": bool(self.access & AccessType.EXPLICIT),
            "trans_delay_ms": self.trans_delay_ms,
            "nonop_delay_ms": self.nonop_delay_ms,
            "implicit_trans_secs": self.implicit_trans_secs,
            "media_commands": self.media_commands,
        }


@dataclass(frozen=True)
class TargetPort:
    target_name: str  # lower case
    tpg_tag: int
    relative_port_id: int


class PortSource(Protocol):
    """What LuAlua reads from the runtime: the current Config and the relative port ids."""

    config: Config
    port_ids: dict[tuple[str, int], int]


@dataclass
class _Layout:
    groups: dict[str, TargetPortGroup] = field(default_factory=dict)
    #: (target wwn lower, tpg tag) -> (group name, port)
    ports: dict[tuple[str, int], tuple[str, TargetPort]] = field(default_factory=dict)
    #: cache of `LuAlua.group_of` per nexus (valid for this layout; a new layout starts empty)
    by_nexus: dict[Nexus, TargetPortGroup] = field(default_factory=dict)


#: bound of the per-layout nexus -> group cache (cleared when full; nexuses of closed sessions leave with it)
_GROUP_CACHE_MAX = 4096


class LuAlua:
    """The ALUA provider of one logical unit (`LogicalUnit.alua`)."""

    def __init__(self, lu: Any, source: PortSource) -> None:
        self.lu = lu
        self.source = source
        self._config: Config | None = None
        self._layout = _Layout()
        self._lock: asyncio.Lock | None = None
        #: whether the gate passes the command spec to `admitted` (media_commands then counts media access only)
        self.counts_media_only = False
        self.sync()

    # ------------------------------------------------------------------------------ layout

    def _storage_object(self, cfg: Config) -> StorageObjectConfig | None:
        for so in cfg.storage_objects:
            if so.path == self.lu.name:
                return so
        return None

    def sync(self) -> None:
        """Rebuild the group map if the runtime's Config was replaced (cheap identity check otherwise)."""
        cfg = self.source.config
        if cfg is self._config:
            return
        self._config = cfg
        so = self._storage_object(cfg)
        old = self._layout.groups
        new = _Layout()
        ports: list[tuple[TargetPort, str]] = []
        for t in cfg.targets:
            for tpg in t.tpgs:
                key = (t.wwn.lower(), tpg.tag)
                rtpi = self.source.port_ids.get(key)
                if rtpi is None:
                    continue
                for lun in tpg.luns:
                    if lun.storage_object == self.lu.name:
                        ports.append((TargetPort(key[0], tpg.tag, rtpi), lun.alua_tg_pt_gp))
                        break
        configured = [TargetPortGroup.from_config(g) for g in (so.alua_groups if so is not None else [])]
        if configured:
            for g in configured:
                new.groups.setdefault(g.name, g)
            for port, lun_group in ports:
                ref = f"{port.target_name}/{port.tpg_tag}"
                name = next((g.name for g in configured if ref in g.members), None)
                if name is None:
                    name = lun_group if lun_group in new.groups else DEFAULT_GROUP
                if name not in new.groups:
                    new.groups[name] = TargetPortGroup(name=name, id=0)
                new.ports[(port.target_name, port.tpg_tag)] = (name, port)
        else:
            for port, _ in ports:
                name = f"{port.target_name}/{port.tpg_tag}"
                new.groups[name] = TargetPortGroup(name=name, id=_clamp(port.relative_port_id, MAX_GROUP_ID))
                new.ports[(port.target_name, port.tpg_tag)] = (name, port)
        changed: list[TargetPortGroup] = []
        for name, g in new.groups.items():
            prev = old.get(name)
            if prev is None:
                continue
            # keep the live state unless the config now names another state than it did
            want = g.config_state
            prev.update_settings(g)
            if want is not None and want != prev.config_state and want != prev.state:
                prev.state = want
                prev.status = StatusCode.ALTERED_BY_IMPLICIT_ALUA
                changed.append(prev)
            prev.config_state = want
            new.groups[name] = prev
        self._layout = new
        self.lu.tpgs = self.tpgs_field()
        for g in changed:
            log.info("%s: ALUA group %s is %s (config)", self.lu.name, g.name, state_name(g.state))
            self._announce(None)

    # ------------------------------------------------------------------------------ queries

    def group_of(self, nexus: Nexus) -> TargetPortGroup:
        """The group of the target port the nexus reaches the LU through (a port without a LUN of this LU,
        e.g. in unit tests: the lowest-id group, else a stand-in default group)."""
        self.sync()
        layout = self._layout
        group = layout.by_nexus.get(nexus)
        if group is None:
            group = self._find_group(layout, nexus)
            if len(layout.by_nexus) >= _GROUP_CACHE_MAX:
                layout.by_nexus.clear()
            layout.by_nexus[nexus] = group
        return group

    @staticmethod
    def _find_group(layout: _Layout, nexus: Nexus) -> TargetPortGroup:
        entry = layout.ports.get((nexus.target_name.lower(), nexus.tpg_tag))
        if entry is not None:
            return layout.groups[entry[0]]
        if layout.groups:
            return min(layout.groups.values(), key=lambda g: g.id)
        stand_in = TargetPortGroup(name=DEFAULT_GROUP, id=0)
        layout.groups[DEFAULT_GROUP] = stand_in
        return stand_in

    def direct_group(self, nexus: Nexus) -> TargetPortGroup | None:
        """The nexus' group when media access through it needs nothing but counting (active/optimized, or
        active/non-optimized without a delay); None otherwise (the direct READ/WRITE path then steps aside)."""
        g = self.group_of(nexus)
        state = g.state
        if state is AluaState.ACTIVE_OPTIMIZED or (
            state is AluaState.ACTIVE_NON_OPTIMIZED and not g.nonop_delay_ms
        ):
            self.counts_media_only = True
            return g
        return None

    def access_state(self, nexus: Nexus) -> AluaState:
        return self.group_of(nexus).state

    def group_id(self, nexus: Nexus) -> int:
        return self.group_of(nexus).id

    def tpgs(self, nexus: Nexus) -> int:
        """The TPGS field for standard INQUIRY through this nexus' port (LIO: the port's group access type)."""
        return int(self.group_of(nexus).access)

    def tpgs_field(self) -> int:
        """TPGS over all groups (for callers without a nexus)."""
        out = AccessType.NONE
        for g in self._layout.groups.values():
            out |= g.access
        return int(out) if self._layout.groups else int(AccessType.IMPLICIT | AccessType.EXPLICIT)

    def explicit_supported(self, nexus: Nexus | None = None) -> bool:
        if nexus is not None:
            return bool(self.group_of(nexus).access & AccessType.EXPLICIT)
        return bool(self.tpgs_field() & AccessType.EXPLICIT)

    def report(self) -> list[tuple[TargetPortGroup, list[int]]]:
        """Every group with at least one target port, by id, with its relative target port ids (RTPG)."""
        self.sync()
        members: dict[str, list[int]] = {}
        for name, port in self._layout.ports.values():
            members.setdefault(name, []).append(port.relative_port_id)
        out = [(self._layout.groups[n], sorted(ids)) for n, ids in members.items()]
        return sorted(out, key=lambda item: item[0].id)

    def group(self, ref: str | int) -> TargetPortGroup:
        """A group by name or by id."""
        self.sync()
        if isinstance(ref, str) and ref in self._layout.groups:
            return self._layout.groups[ref]
        try:
            gid = int(ref)
        except (TypeError, ValueError):
            gid = -1
        for g in self._layout.groups.values():
            if g.id == gid:
                return g
        raise AluaError(f"{self.lu.name}: no ALUA target port group {ref!r}")

    def by_id(self, gid: int) -> TargetPortGroup | None:
        self.sync()
        return next((g for g in self._layout.groups.values() if g.id == gid), None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Groups, states, members and counters (management API / metrics)."""
        out = []
        for g, ids in self.report():
            d = g.as_dict()
            d["relative_port_ids"] = ids
            d["members"] = sorted(
                f"{p.target_name}/{p.tpg_tag}" for n, p in self._layout.ports.values() if n == g.name
            )
            d["media_commands_exact"] = self.counts_media_only
            out.append(d)
        return out

    # ------------------------------------------------------------------------------ commands

    def admitted(
        self, nexus: Nexus, state: AluaState, alua_class: AluaClass, spec: Any | None = None
    ) -> float:
        """A command passed the ALUA gate: count media access per group; the non-optimized delay in seconds.

        With the command's `spec` only media access counts (`media_access`: a TEST UNIT READY, which also needs
        an active state, is no I/O: multipathd's tur checker sends one per path per polling interval). Without
        it (a gate that does not pass the spec) every command of the active-only class counts."""
        if alua_class is not AluaClass.ACTIVE_ONLY:
            return 0.0
        g = self.group_of(nexus)
        if spec is not None:
            self.counts_media_only = True
        if spec is None or media_access(spec):
            g.media_commands += 1
        if state is AluaState.ACTIVE_NON_OPTIMIZED and g.nonop_delay_ms:
            return g.nonop_delay_ms / 1000.0
        return 0.0

    # ------------------------------------------------------------------------------ transitions

    def _announce(self, exclude: Nexus | None) -> None:
        # SPC-4 5.15.2.2 / 5.15.2.3: ASYMMETRIC ACCESS STATE CHANGED for every I_T nexus (but the STPG issuer)
        self.lu.ua.establish(Asc.ASYMMETRIC_ACCESS_STATE_CHANGED, exclude=exclude)

    def check_transition(self, g: TargetPortGroup, state: AluaState, *, explicit: bool) -> None:
        if state not in g.supported:
            raise AluaError(f"{self.lu.name}: group {g.name} does not support {state_name(state)}")
        if explicit:
            if not g.access & AccessType.EXPLICIT:
                raise AluaError(f"{self.lu.name}: group {g.name} does not allow explicit transitions")
            # SPC-4 6.49: SET TARGET PORT GROUPS cannot request transitioning or LBA dependent
            if state in (AluaState.TRANSITIONING, AluaState.LBA_DEPENDENT):
                raise AluaError(f"{state_name(state)} cannot be requested")

    async def set_state(
        self, group: str | int, state: str | int | AluaState, *, explicit_from: Nexus | None = None
    ) -> TargetPortGroup:
        """Move `group` to `state`: TRANSITIONING for the group's trans_delay_ms, then `state`, with unit
        attentions (see the module docstring). `explicit_from` = the nexus of a SET TARGET PORT GROUPS."""
        g = self.group(group)
        new = parse_state(state)
        explicit = explicit_from is not None
        self.check_transition(g, new, explicit=explicit)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if g.state == new:
                return g
            g.status = (
                StatusCode.ALTERED_BY_EXPLICIT_STPG if explicit else StatusCode.ALTERED_BY_IMPLICIT_ALUA
            )
            old = g.state
            if g.trans_delay_ms and new is not AluaState.TRANSITIONING:
                g.state = AluaState.TRANSITIONING
                self._announce(explicit_from)
                await asyncio.sleep(g.trans_delay_ms / 1000.0)
            g.state = new
            self._announce(explicit_from)
            log.info(
                "%s: ALUA group %s (%d) %s -> %s (%s)",
                self.lu.name,
                g.name,
                g.id,
                state_name(old),
                state_name(new),
                "explicit" if explicit else "implicit",
            )
        return g

    async def set_states(
        self, changes: Iterable[tuple[TargetPortGroup, AluaState]], *, explicit_from: Nexus | None = None
    ) -> None:
        """Several transitions (SET TARGET PORT GROUPS descriptors), each validated first, run concurrently."""
        todo = list(changes)
        for g, st in todo:
            self.check_transition(g, st, explicit=explicit_from is not None)
        await asyncio.gather(*(self.set_state(g.name, st, explicit_from=explicit_from) for g, st in todo))


def media_access(spec: Any) -> bool:
    """Whether a command transfers data to or from the medium (what a per-path I/O counter counts): READ, WRITE,
    VERIFY, WRITE AND VERIFY (SBC-3 5.8-5.12, `RwOpcode`) and every command that modifies the medium (COMPARE
    AND WRITE, WRITE SAME, UNMAP, ...: `CommandSpec.medium_write`)."""
    return bool(getattr(spec, "medium_write", False)) or getattr(spec, "opcode", None) in _media_opcodes()


@functools.cache
def _media_opcodes() -> frozenset[int]:
    from target.scsi.sbc.read_write import RwOpcode  # imported late: sbc imports the SCSI core

    return frozenset(int(op) for op in RwOpcode)


def attach_alua(lu: Any, source: PortSource) -> LuAlua | None:
    """Give `lu` its ALUA provider (None and TPGS 0 when the LU attribute alua_support is 0)."""
    attrs = getattr(lu, "attrs", None)
    if attrs is not None and not getattr(attrs, "alua_support", 1):
        lu.alua = None
        lu.tpgs = 0
        return None
    alua = LuAlua(lu, source)
    lu.alua = alua
    return alua
