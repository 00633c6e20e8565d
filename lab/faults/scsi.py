"""SCSI-level faults: swap ALUA states through the target's API, preempt a persistent reservation from another
initiator, LOGICAL UNIT RESET.

alua-swap runs `sanlab target alua set STORAGE_OBJECT GROUP STATE` in the target's container for each group
(tgtd has no ALUA API). pr-preempt and lun-reset act from an initiator node: a libiscsi container (its own
session through libiscsi, `libiscsi_scsi.py` sent as python3 stdin) or a Linux VM (`sg_persist` / `sg_reset`
on the sd device of the LUN's session, found in sysfs by target name and LUN).

PREEMPT (SPC-4 5.14.11.4): the preempting I_T nexus first registers its own key (REGISTER AND IGNORE EXISTING
KEY), then sends PREEMPT with the holder's key (READ RESERVATION tells it, and the type) as the service action
reservation key: the holder's registration goes, the reservation becomes ours. clear() (when `release`)
unregisters our key again, which also releases our reservation; the preempted initiator stays unregistered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from lab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    FaultSpec,
    check_initiator,
    check_target,
    q,
    register,
)
from lab.topology.model import InitiatorKind, TargetKind

ALUA_STATES = (
    "active_optimized",
    "active_nonoptimized",
    "standby",
    "unavailable",
    "offline",
    "transitioning",
)
LIBISCSI_SCRIPT = Path(__file__).with_name("libiscsi_scsi.py")
#: our registration key unless params.key says otherwise ("sanlab" in ASCII)
DEFAULT_PR_KEY = "0x73616e6c6162"
#: SPC-4 table 212 (persistent reservation type codes), as sg_persist names them
PR_TYPES = {
    "write exclusive": 1,
    "exclusive access": 3,
    "write exclusive, registrants only": 5,
    "exclusive access, registrants only": 6,
    "write exclusive, all registrants": 7,
    "exclusive access, all registrants": 8,
}
_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH; "
_NODE: dict[str, Any] = {"type": "string", "minLength": 1}
_LUN: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 16383}
_DEVICE: dict[str, Any] = {"type": "string", "pattern": "^/dev/[A-Za-z0-9/_-]+$"}


# --------------------------------------------------------------------------------------------- alua-swap

_GROUPS: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 16,
    "propertyNames": {"pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
    "additionalProperties": {"enum": list(ALUA_STATES)},
}


@register
class AluaSwap(Fault):
    """Set the ALUA state of target port groups of one storage object through the target's management CLI,
    e.g. groups {san-a: standby, san-b: active_optimized} (a group by name or id); clear() applies `restore`
    (same shape) when given."""

    kind: ClassVar[str] = "alua-swap"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target", "storage_object", "groups"],
        "properties": {
            "target": _NODE,
            "storage_object": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
            "groups": _GROUPS,
            "restore": _GROUPS,
        },
    }

    def check_topology(self) -> list[str]:
        problems = check_target(self.ctx.topo, self.params["target"])
        if problems:
            return problems
        if self.target_kind(self.params["target"]) is not TargetKind.SANLAB:
            return [f"target: {self.params['target']} runs tgtd, which has no ALUA API"]
        node = self.target_node(self.params["target"])
        los = [lu.name for lu in node.luns]
        if self.params["storage_object"] not in los:
            return [
                f"storage_object: {self.params['storage_object']!r} is not a LUN of it ({', '.join(los)})"
            ]
        # per-portal ALUA (lab.topology.target_config): one group per network, named after it. Without, the
        # target makes one implicit group per TPG (named "<iqn>/<tag>", id = tag): any name or id may do.
        known = list(node.alua)
        if not known:
            return []
        return [
            f"{key}.{g}: {node.name} has no target port group {g!r} (groups: {', '.join(known)})"
            for key in ("groups", "restore")
            for g in self.params.get(key) or {}
            if g not in known
        ]

    def commands(self, groups: dict[str, str]) -> list[str]:
        bin_ = self.target_var(self.params["target"], "iscsi_target_sanlab_bin", "sanlab")
        so = self.params["storage_object"]
        return [f"{q(bin_)} target alua set {q(so)} {q(g)} {q(state)}" for g, state in groups.items()]

    def _apply(self, groups: dict[str, str]) -> str:
        done = []
        for (group, state), cmd in zip(groups.items(), self.commands(groups), strict=True):
            self.run(self.params["target"], cmd, what=f"alua set {group} {state}")
            done.append(f"{group}={state}")
        return f"{self.params['storage_object']}: " + ", ".join(done)

    def inject(self) -> str:
        return self._apply(dict(self.params["groups"]))

    def clear(self) -> str:
        if not self.params.get("restore"):
            return "states left as set (no restore given)"
        return "restored " + self._apply(dict(self.params["restore"]))


# --------------------------------------------------------------------------------------------- initiator side


class InitiatorAction(Fault):
    """Shared by pr-preempt and lun-reset: the acting initiator, its LUN, its device or libiscsi session."""

    INITIATOR_PARAM: ClassVar[str] = "initiator"

    def __init__(self, spec: FaultSpec, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        self.device = str(self.params.get("device") or "")

    @property
    def acting(self) -> str:
        return str(self.params[self.INITIATOR_PARAM])

    def check_topology(self) -> list[str]:
        topo = self.ctx.topo
        problems = check_initiator(
            topo, self.acting, self.INITIATOR_PARAM, kinds=[InitiatorKind.LIBISCSI, InitiatorKind.LINUX_VM]
        )
        if problems:
            return problems
        ini = self.initiator_node(self.acting)
        if "target" in self.params:
            problems = check_target(topo, self.params["target"])
            serving = [] if problems else [t.name for t in topo.replica_set(ini.target)]
            if not problems and self.params["target"] not in serving:
                problems = [
                    f"{self.INITIATOR_PARAM}: {ini.name} logs in to {ini.target}, not {self.params['target']}"
                ]
        if "device" in self.params and ini.kind is not InitiatorKind.LINUX_VM:
            problems.append("device: only a linux-vm initiator has devices")
        return problems

    @property
    def target(self) -> str:
        return self.initiator_node(self.acting).target

    @property
    def lun(self) -> int:
        """The LUN number on the wire."""
        index = self.params.get("lun")
        ini = self.initiator_node(self.acting)
        return self.wire_lun(self.target, ini.lun if index is None else int(index))

    @property
    def is_vm(self) -> bool:
        return self.initiator_node(self.acting).kind is InitiatorKind.LINUX_VM

    # ---- libiscsi

    def libiscsi_args(self, action: str, **extra: Any) -> dict[str, Any]:
        topo = self.ctx.topo
        ini = self.initiator_node(self.acting)
        portals = topo.portal_addresses(ini)
        # the first of its paths that leads to params.target (HA sets: a path may lead to another node)
        wanted = self.params.get("target")
        on_target = [
            pa for p, pa in zip(ini.paths, portals, strict=True) if topo.path_target(ini, p).name == wanted
        ]
        ip, port = (on_target or portals)[0]
        chap = topo.chap_for(ini)
        return {
            "action": action,
            "portal": f"{ip}:{port}",
            "iqn": topo.target(ini.target).iqn,
            "initiator": ini.iqn,
            "lun": self.lun,
            "user": chap.userid if chap else "",
            "password": chap.password if chap else "",
            **extra,
        }

    def libiscsi(self, action: str, **extra: Any) -> dict[str, Any]:
        """Run libiscsi_scsi.py on the node; its JSON result (FaultError if not ok)."""
        args = self.libiscsi_args(action, **extra)
        program = (
            LIBISCSI_SCRIPT.read_text() + f"\nraise SystemExit(main(json.loads({json.dumps(args)!r})))\n"
        )
        res = self.run(self.acting, "python3 -", timeout=60, stdin=program.encode(), check=False)
        line = next((ln for ln in reversed(res.output.splitlines()) if ln.startswith("{")), "")
        try:
            out: dict[str, Any] = json.loads(line) if line else {}
        except json.JSONDecodeError:
            out = {}
        if not out.get("ok"):
            raise FaultError(
                f"{action} from {self.acting} failed: {out.get('error') or 'no result'}", res.output
            )
        return out

    # ---- Linux VM

    def find_device(self) -> str:
        """The VM's sd device of the LUN (first path), by iSCSI session target name and LUN in sysfs."""
        if self.device:
            return self.device
        iqn = self.ctx.topo.target(self.target).iqn
        script = (
            "for s in /sys/class/iscsi_session/session*; do "
            f'[ "$(cat $s/targetname 2>/dev/null)" = {q(iqn)} ] || continue; '
            f'for b in $s/device/target*/*:*:*:{self.lun}/block/*; do [ -e "$b" ] && echo /dev/${{b##*/}}; done; '
            "done"
        )
        out = self.run(self.acting, script, what="finding the LUN's device").output
        devs = sorted(ln.strip() for ln in out.splitlines() if ln.strip().startswith("/dev/"))
        if not devs:
            raise FaultError(f"{self.acting} has no device for LUN {self.lun} of {iqn}", out)
        self.device = devs[0]
        return self.device


def parse_sg_read_reservation(out: str) -> dict[str, Any]:
    """`sg_persist -n -i -r DEV` output -> {held, key, type} (type: SPC-4 code, None when not named)."""
    if re.search(r"NO reservation held", out, re.IGNORECASE):
        return {"held": False, "key": None, "type": None}
    key = re.search(r"Key\s*=\s*0x([0-9a-fA-F]+)", out)
    rtype = re.search(r"scope:.*?type:\s*(.+?)\s*$", out, re.MULTILINE)
    if key is None:
        return {"held": False, "key": None, "type": None}
    name = rtype[1].strip().lower() if rtype else ""
    return {"held": True, "key": int(key[1], 16), "type": PR_TYPES.get(name)}


# --------------------------------------------------------------------------------------------- pr-preempt


@register
class PrPreempt(InitiatorAction):
    """PREEMPT the current persistent-reservation holder from `from_initiator` (a libiscsi or linux-vm node)."""

    kind: ClassVar[str] = "pr-preempt"
    INITIATOR_PARAM: ClassVar[str] = "from_initiator"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target", "from_initiator"],
        "properties": {
            "target": _NODE,
            "from_initiator": _NODE,
            "lun": _LUN,
            "key": {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,16}$", "default": DEFAULT_PR_KEY},
            "type": {"enum": sorted(set(PR_TYPES.values()))},
            "abort": {"type": "boolean", "default": False},
            "require_reservation": {"type": "boolean", "default": True},
            "release": {"type": "boolean", "default": True},
            "device": _DEVICE,
        },
    }

    def __init__(self, spec: FaultSpec, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        self.key = int(self.params["key"], 16)
        self.registered = False

    def sg_persist(self, args: str) -> str:
        return self.run(self.acting, f"{_PATH}sg_persist -n {args}", what=f"sg_persist {args}").output

    def inject(self) -> str:
        if not self.is_vm:
            self.registered = True  # the script may fail after registering: clear() unregisters anyway
            r = self.libiscsi(
                "preempt",
                key=self.key,
                type=self.params.get("type"),
                abort=self.params["abort"],
                require_reservation=self.params["require_reservation"],
            )
            before, after = r.get("before") or {}, r.get("after") or {}
        else:
            dev = self.find_device()
            before = parse_sg_read_reservation(self.sg_persist(f"-i -r {q(dev)}"))
            if not before["held"] and self.params["require_reservation"]:
                raise FaultError(f"no persistent reservation is held on LUN {self.lun}: nothing to preempt")
            self.registered = True
            self.sg_persist(f"-o -I -S {self.key:#x} {q(dev)}")
            if before["held"]:
                rtype = self.params.get("type") or before["type"]
                if rtype is None:
                    raise FaultError("the reservation's type is unknown; give params.type")
                sa = "-A" if self.params["abort"] else "-P"
                self.sg_persist(f"-o {sa} -K {self.key:#x} -S {before['key']:#x} -T {rtype} {q(dev)}")
            after = parse_sg_read_reservation(self.sg_persist(f"-i -r {q(dev)}"))
        if not before.get("held"):
            return f"no reservation held on LUN {self.lun}; {self.acting} registered {self.key:#x}"
        mine = after.get("held") and after.get("key") == self.key
        detail = (
            f"{self.acting} {'preempted and aborted' if self.params['abort'] else 'preempted'} key "
            f"{int(before['key']):#x} (type {before.get('type')}) on LUN {self.lun}; holder now "
            f"{after.get('key') if after.get('key') is None else hex(int(after['key']))}"
        )
        if not mine:
            raise FaultError(f"preempt did not take the reservation: {detail}")
        return detail

    def clear(self) -> str:
        if not self.params["release"]:
            return f"{self.acting} keeps key {self.key:#x} (release: false)"
        if not self.registered:
            return "nothing to clear (never registered)"
        if not self.is_vm:
            self.libiscsi("unregister")
        else:
            self.sg_persist(f"-o -I -S 0 {q(self.find_device())}")
        self.registered = False
        return f"{self.acting} unregistered key {self.key:#x} (its reservation released)"


# --------------------------------------------------------------------------------------------- lun-reset


@register
class LunReset(InitiatorAction):
    """A LOGICAL UNIT RESET task management function from `initiator`: libiscsi's
    iscsi_task_mgmt_lun_reset_sync in a libiscsi container, `sg_reset -N -d DEV` in a Linux VM (the kernel's
    device reset handler sends the iSCSI LUN RESET; -N: no escalation to target/host reset)."""

    kind: ClassVar[str] = "lun-reset"
    INSTANTANEOUS: ClassVar[bool] = True
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["initiator"],
        "properties": {"initiator": _NODE, "lun": _LUN, "device": _DEVICE},
    }

    def inject(self) -> str:
        if not self.is_vm:
            self.libiscsi("lun-reset")
            return f"LUN RESET of LUN {self.lun} from {self.acting} (libiscsi)"
        dev = self.find_device()
        out = self.run(self.acting, f"{_PATH}sg_reset -N -d {q(dev)}", what="sg_reset").output
        return f"LUN RESET of LUN {self.lun} via {dev} on {self.acting}: {out.strip() or 'ok'}"
