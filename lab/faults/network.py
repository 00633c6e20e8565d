"""Network faults: cut a path, flap it, partition networks, limit a path's bandwidth.

A path is cut at the node's side in one of three ways (lab-facts: the stall that follows is bounded by the
initiator's timers, not by how the path is cut):

    disconnect   docker network disconnect of the node's container; clear reconnects it with the same
                 address (Topology.address), so portals and sessions come back where they were
    drop         an nft table in the container dropping every packet in and out of that network's interface
                 (found by the node's address with `ip -o -4 addr`); clear deletes the table
    portal       the address itself is removed from the interface (`ip addr del`); clear adds it back

`Cut` is that one operation on one (node, network); cut-path, flap-path and partition are built from it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lab.faults.base import (
    CMD_TIMEOUT_S,
    Fault,
    FaultContext,
    FaultError,
    check_node_network,
    check_target,
    interface_of,
    nft_table_name,
    q,
    register,
)
from lab.inventory import network_name

CUT_METHODS = ("disconnect", "drop", "portal")
#: bounds of a flap series
FLAP_MAX_COUNT = 200
FLAP_MAX_TOTAL_S = 3600.0
#: how long clear() waits for the flap thread to finish its current step
FLAP_JOIN_S = 180.0

_NODE: dict[str, Any] = {"type": "string", "minLength": 1}
_METHOD: dict[str, Any] = {"enum": list(CUT_METHODS), "default": "disconnect"}


@dataclass
class Cut:
    """Cut one node's container off one lab network (see the module doc for the methods)."""

    ctx: FaultContext
    node: str
    network: str
    method: str = "disconnect"
    timeout: float = CMD_TIMEOUT_S
    #: what inject found: the interface (drop, portal) and prefix length (portal)
    ifname: str = ""
    prefixlen: int = 0
    done: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.ctx.topo.address(self.node, self.network)

    @property
    def container(self) -> str:
        return self.ctx.container(self.node)

    @property
    def docker_network(self) -> str:
        return network_name(self.ctx.topo, self.network)

    @property
    def table(self) -> str:
        return nft_table_name("sanlab_cut", self.network)

    def _run(self, cmd: str, *, stdin: bytes | None = None, check: bool = True) -> str:
        res = self.ctx.executor(self.node).run(cmd, timeout=self.timeout, stdin=stdin)
        if check and not res.ok:
            raise FaultError(f"{cmd.split(chr(10))[0]} on {self.node} exited {res.rc}", res.output)
        return res.output

    def find_interface(self) -> tuple[str, int]:
        out = self._run("ip -o -4 addr show")
        found = interface_of(out, self.address)
        if found is None:
            raise FaultError(f"no interface on {self.node} carries {self.address} ({self.network})", out)
        return found

    def nft_script(self, ifname: str) -> str:
        # several lines: one-line nft rules with `; } }` are refused (lab-facts pitfalls)
        return (
            f"table inet {self.table} {{\n"
            "  chain input {\n"
            "    type filter hook input priority -10; policy accept;\n"
            f'    iifname "{ifname}" drop\n'
            "  }\n"
            "  chain output {\n"
            "    type filter hook output priority -10; policy accept;\n"
            f'    oifname "{ifname}" drop\n'
            "  }\n"
            "}\n"
        )

    def inject(self) -> str:
        if self.method == "disconnect":
            self.ctx.engine.network_disconnect(self.docker_network, self.container)
            return f"{self.container} disconnected from {self.docker_network}"
        self.ifname, self.prefixlen = self.find_interface()
        if self.method == "drop":
            # `docker exec -i`: without stdin nft -f - silently applies nothing (DockerExec adds -i with stdin)
            self._run("nft -f -", stdin=self.nft_script(self.ifname).encode())
            return f"nft table {self.table} drops {self.ifname} ({self.address}) on {self.node}"
        self._run(f"ip addr del {self.address}/{self.prefixlen} dev {q(self.ifname)}")
        return f"{self.address}/{self.prefixlen} removed from {self.ifname} on {self.node}"

    def clear(self) -> str:
        """Restore the path whatever state inject left (idempotent)."""
        if self.method == "disconnect":
            nets = self.ctx.engine.container_networks(self.container)
            if self.docker_network in nets:
                return f"{self.container} already on {self.docker_network}"
            self.ctx.engine.network_connect(self.docker_network, self.container, self.address)
            return f"{self.container} reconnected to {self.docker_network} as {self.address}"
        if self.method == "drop":
            out = self._run(
                f"if nft list table inet {self.table} >/dev/null 2>&1; then "
                f"nft delete table inet {self.table} && echo deleted; else echo absent; fi"
            )
            return f"nft table {self.table} {'deleted' if 'deleted' in out else 'absent'} on {self.node}"
        out = self._run("ip -o -4 addr show")
        if interface_of(out, self.address) is not None:
            return f"{self.address} present on {self.node}"
        if not self.ifname:
            raise FaultError(
                f"{self.address} is missing on {self.node} and the interface it was on is unknown", out
            )
        self._run(f"ip addr add {self.address}/{self.prefixlen} dev {q(self.ifname)}")
        return f"{self.address}/{self.prefixlen} added back to {self.ifname} on {self.node}"


# --------------------------------------------------------------------------------------------- cut-path


@register
class CutPath(Fault):
    """Cut one path: the target's side of one network (see the module doc for `method`)."""

    kind: ClassVar[str] = "cut-path"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target", "network"],
        "properties": {"target": _NODE, "network": _NODE, "method": _METHOD},
    }

    def __init__(self, spec: Any, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        self.cut = Cut(ctx, self.params["target"], self.params["network"], self.params["method"])

    def check_topology(self) -> list[str]:
        topo = self.ctx.topo
        return check_target(topo, self.params["target"]) or check_node_network(
            topo, self.params["target"], self.params["network"]
        )

    def inject(self) -> str:
        return self.cut.inject()

    def clear(self) -> str:
        return self.cut.clear()


# --------------------------------------------------------------------------------------------- flap-path


@register
class FlapPath(Fault):
    """Cut and restore one path `count` times (`down_s` down, `up_s` up). inject() makes the first cut itself
    (so a failure raises there) and runs the rest in a bounded background thread; clear() stops the series,
    joins the thread and makes sure the path ends up restored. Each flap's down/up times (seconds after the
    first cut) are in `flaps` and in clear()'s detail."""

    kind: ClassVar[str] = "flap-path"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target", "network"],
        "properties": {
            "target": _NODE,
            "network": _NODE,
            "method": _METHOD,
            "count": {"type": "integer", "minimum": 1, "maximum": FLAP_MAX_COUNT, "default": 3},
            "down_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600, "default": 5},
            "up_s": {"type": "number", "minimum": 0, "maximum": 600, "default": 10},
        },
    }

    def __init__(self, spec: Any, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        self.cut = Cut(ctx, self.params["target"], self.params["network"], self.params["method"])
        self.flaps: list[tuple[float, float | None]] = []  # (down_at, up_at) after the first cut
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one Cut operation at a time (thread vs clear)
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        total = params["count"] * (params["down_s"] + params["up_s"])
        if total > FLAP_MAX_TOTAL_S:
            return [f"count x (down_s + up_s) = {total:g} s exceeds the bound of {FLAP_MAX_TOTAL_S:g} s"]
        return []

    def check_topology(self) -> list[str]:
        topo = self.ctx.topo
        return check_target(topo, self.params["target"]) or check_node_network(
            topo, self.params["target"], self.params["network"]
        )

    def _since(self) -> float:
        return round(time.monotonic() - self._t0, 2)

    def _down(self) -> None:
        with self._lock:
            self.cut.inject()
            self.flaps.append((self._since(), None))

    def _up(self) -> None:
        with self._lock:
            self.cut.clear()
            if self.flaps and self.flaps[-1][1] is None:
                self.flaps[-1] = (self.flaps[-1][0], self._since())

    def _series(self) -> None:
        count, down_s, up_s = self.params["count"], float(self.params["down_s"]), float(self.params["up_s"])
        try:
            for i in range(count):
                if i > 0:
                    if self._stop.wait(up_s):
                        return
                    self._down()
                self._stop.wait(down_s)  # cut -> always restored below, even when stopped early
                self._up()
                if self._stop.is_set():
                    return
        except FaultError as e:
            self.errors.append(str(e))
            self.log(f"flap {len(self.flaps)} failed: {e}")

    def inject(self) -> str:
        if self._thread is not None:
            raise FaultError(f"fault {self.name} already injected")
        self._t0 = time.monotonic()
        self._stop.clear()
        self._down()
        self._thread = threading.Thread(target=self._series, name=f"fault-{self.name}", daemon=True)
        self._thread.start()
        p = self.params
        return (
            f"flapping {p['target']}/{p['network']} ({p['method']}) {p['count']}x: "
            f"{p['down_s']:g} s down, {p['up_s']:g} s up"
        )

    def join(self, timeout: float = FLAP_JOIN_S) -> bool:
        """Wait for the series to end by itself (True if it did within `timeout`)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def clear(self) -> str:
        self._stop.set()
        finished = self.join()
        with self._lock:
            restored = self.cut.clear()
        if self.flaps and self.flaps[-1][1] is None:
            self.flaps[-1] = (self.flaps[-1][0], self._since())
        series = ", ".join(f"{d:g}-{'?' if u is None else f'{u:g}'}" for d, u in self.flaps)
        detail = f"{len(self.flaps)} flaps (s after first cut: {series or 'none'}); {restored}"
        if not finished:
            detail += f"; flap thread still busy after {FLAP_JOIN_S:g} s"
        if self.errors:
            raise FaultError(f"fault {self.name}: {detail}; errors: {'; '.join(self.errors)}")
        return detail


# --------------------------------------------------------------------------------------------- partition


@register
class Partition(Fault):
    """Cut several networks at once: every node on them (or only `nodes`) is cut off each of `networks`.
    With `nodes` naming one side (e.g. a target node), that side is partitioned from everyone else on those
    networks. All cuts are made together; if one fails the ones made are undone and FaultError raised."""

    kind: ClassVar[str] = "partition"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["networks"],
        "properties": {
            "networks": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _NODE},
            "nodes": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _NODE},
            "method": _METHOD,
        },
    }

    def __init__(self, spec: Any, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        self.cuts = [
            Cut(ctx, node, net, self.params["method"])
            for net in self.params["networks"]
            for node in self._nodes_on(net)
        ]

    def _nodes_on(self, network: str) -> list[str]:
        topo = self.ctx.topo
        every = [n.name for n in topo.targets] + [i.name for i in topo.initiators]
        wanted = self.params.get("nodes") or every
        return [n for n in wanted if network in topo.node_networks(n)]

    def check_topology(self) -> list[str]:
        topo = self.ctx.topo
        problems: list[str] = []
        names = {n.name for n in topo.networks}
        for i, net in enumerate(self.params["networks"]):
            if net not in names:
                problems.append(f"networks[{i}]: {net!r} is not a network of topology {topo.name}")
        nodes = {t.name for t in topo.targets} | {i.name for i in topo.initiators}
        for i, node in enumerate(self.params.get("nodes") or []):
            if node not in nodes:
                problems.append(f"nodes[{i}]: {node!r} is not a node of topology {topo.name}")
        if not problems and not any(self._nodes_on(n) for n in self.params["networks"]):
            problems.append("no node to cut: none of the nodes is on those networks")
        return problems

    def inject(self) -> str:
        done: list[str] = []
        for cut in self.cuts:
            try:
                done.append(cut.inject())
            except FaultError as e:
                undo = self._clear_all()
                raise FaultError(f"fault {self.name}: {e}; undone: {undo}") from e
        return "; ".join(done)

    def _clear_all(self) -> str:
        out, errors = [], []
        for cut in self.cuts:
            try:
                out.append(cut.clear())
            except FaultError as e:
                errors.append(str(e))
        if errors:
            raise FaultError(f"fault {self.name}: restoring failed: {'; '.join(errors)}")
        return "; ".join(out)

    def clear(self) -> str:
        return self._clear_all()


# --------------------------------------------------------------------------------------------- bandwidth

_RATE_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$", re.IGNORECASE)
_RATE_UNITS = {
    "bit": 1,
    "kbit": 1e3,
    "mbit": 1e6,
    "gbit": 1e9,
    "bps": 8,
    "kbps": 8e3,
    "mbps": 8e6,
    "gbps": 8e9,
}
_SIZE_PATTERN = r"^\d+(\.\d+)?(b|kb|mb|kbit|mbit)?$"
_TIME_PATTERN = r"^\d+(\.\d+)?(us|ms|s)$"


def rate_bits(rate: str) -> float:
    """'10mbit' -> 1e7 (tc's units: bit/kbit/mbit/gbit, and bps/kbps/... for bytes per second)."""
    m = _RATE_RE.match(rate.strip())
    if not m:
        raise ValueError(f"not a tc rate: {rate!r}")
    return float(m["n"]) * _RATE_UNITS[m["unit"].lower()]


@register
class Bandwidth(Fault):
    """Limit what the target sends on one network: a tbf qdisc at the root of the target container's
    interface on that network (`tc qdisc replace dev IF root tbf rate R burst B latency L`). Egress only: it
    shapes reads (target -> initiator). Default burst: 10 ms at the rate, at least 16 KiB."""

    kind: ClassVar[str] = "bandwidth"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target", "network", "rate"],
        "properties": {
            "target": _NODE,
            "network": _NODE,
            "rate": {"type": "string", "pattern": _RATE_RE.pattern},
            "burst": {"type": "string", "pattern": _SIZE_PATTERN},
            "latency": {"type": "string", "pattern": _TIME_PATTERN, "default": "50ms"},
        },
    }

    def __init__(self, spec: Any, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        self.cut = Cut(ctx, self.params["target"], self.params["network"])  # for its interface lookup
        self.ifname = ""

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        if rate_bits(params["rate"]) < 8000:
            return [f"rate {params['rate']} is below 8kbit"]
        return []

    def check_topology(self) -> list[str]:
        topo = self.ctx.topo
        return check_target(topo, self.params["target"]) or check_node_network(
            topo, self.params["target"], self.params["network"]
        )

    def burst(self) -> str:
        if self.params.get("burst"):
            return str(self.params["burst"])
        return f"{max(int(rate_bits(self.params['rate']) / 8 / 100), 16384)}b"

    def command(self, ifname: str) -> str:
        p = self.params
        return f"tc qdisc replace dev {q(ifname)} root tbf rate {p['rate']} burst {self.burst()} latency {p['latency']}"

    def inject(self) -> str:
        self.ifname, _ = self.cut.find_interface()
        self.run(self.params["target"], self.command(self.ifname))
        return f"tbf {self.params['rate']} burst {self.burst()} on {self.ifname} of {self.params['target']}"

    def clear(self) -> str:
        ifname = self.ifname
        if not ifname:
            try:
                ifname = self.cut.find_interface()[0]
            except FaultError as e:
                return f"nothing to clear ({e})"
        out = self.run(
            self.params["target"],
            f"if tc qdisc show dev {q(ifname)} | grep -q tbf; then tc qdisc del dev {q(ifname)} root "
            "&& echo deleted; else echo absent; fi",
        ).output
        return f"tbf on {ifname} of {self.params['target']} {'deleted' if 'deleted' in out else 'absent'}"
