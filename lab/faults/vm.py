"""Faults inside a Linux initiator VM: netem delay/jitter/loss on one of its SAN interfaces.

netem is not in the host kernel but is in the VMs' Debian kernels (lab-facts), so it runs in the VM over its SSH
executor. The VM sits behind slirp: its address on a path is a private slirp one (10.0.N.15), not the topology's,
so the interface of a path is found by routing: `ip -o route get <the target's address on that network>` names
the NIC that carries the path (lab.images.vm gives each SAN NIC a route to its subnet). It shapes what the VM
sends (commands, Data-Out, NOP-Out replies).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    FaultSpec,
    check_initiator,
    q,
    register,
    route_device,
)
from lab.topology.model import InitiatorKind

#: busybox or a minimal PATH must not shadow iproute2's tc (lab-facts pitfalls)
_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH; "


@register
class Netem(Fault):
    """`tc qdisc replace dev IF root netem delay D J loss L%` inside the VM; clear deletes that qdisc."""

    kind: ClassVar[str] = "netem"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["initiator"],
        "properties": {
            "initiator": {"type": "string", "minLength": 1},
            "network": {"type": "string", "minLength": 1},
            "interface": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,15}$"},
            "delay_ms": {"type": "number", "minimum": 0, "maximum": 60000, "default": 0},
            "jitter_ms": {"type": "number", "minimum": 0, "maximum": 60000, "default": 0},
            "loss_pct": {"type": "number", "minimum": 0, "maximum": 100, "default": 0},
        },
    }

    def __init__(self, spec: FaultSpec, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        self.ifname = str(self.params.get("interface") or "")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        errors = []
        if ("network" in params) == ("interface" in params):
            errors.append("give exactly one of network and interface")
        if params["delay_ms"] <= 0 and params["loss_pct"] <= 0:
            errors.append("netem needs delay_ms > 0 or loss_pct > 0")
        if params["jitter_ms"] > 0 and params["delay_ms"] <= 0:
            errors.append("jitter_ms needs delay_ms > 0")
        return errors

    def check_topology(self) -> list[str]:
        ini = self.params["initiator"]
        problems = check_initiator(self.ctx.topo, ini, kinds=[InitiatorKind.LINUX_VM])
        net = self.params.get("network")
        if not problems and net is not None and net not in self.initiator_node(ini).paths:
            paths = ", ".join(self.initiator_node(ini).paths)
            problems.append(f"network: {net!r} is not a path of {ini} (paths: {paths})")
        return problems

    def netem_args(self) -> str:
        p = self.params
        parts = ["netem"]
        if p["delay_ms"] > 0:
            parts += ["delay", f"{p['delay_ms']:g}ms"]
            if p["jitter_ms"] > 0:
                parts.append(f"{p['jitter_ms']:g}ms")
        if p["loss_pct"] > 0:
            parts += ["loss", f"{p['loss_pct']:g}%"]
        return " ".join(parts)

    def find_interface(self) -> str:
        if self.ifname:
            return self.ifname
        ini = self.initiator_node(self.params["initiator"])
        net = self.params["network"]
        addr = self.ctx.topo.address(self.ctx.topo.path_target(ini, net).name, net)
        out = self.run(ini.name, f"{_PATH}ip -o route get {q(addr)}", what="ip route get").output
        dev = route_device(out)
        if dev is None:
            raise FaultError(f"no route from {ini.name} to {addr} ({self.params['network']})", out)
        self.ifname = dev
        return dev

    def inject(self) -> str:
        ifname = self.find_interface()
        ini = self.params["initiator"]
        self.run(
            ini,
            f"{_PATH}modprobe sch_netem 2>/dev/null; tc qdisc replace dev {q(ifname)} root {self.netem_args()}",
        )
        return f"{self.netem_args()} on {ifname} of {ini}"

    def clear(self) -> str:
        ini = self.params["initiator"]
        try:
            ifname = self.find_interface()
        except FaultError as e:
            return f"nothing to clear ({e})"
        out = self.run(
            ini,
            f"{_PATH}if tc qdisc show dev {q(ifname)} | grep -q netem; then "
            f"tc qdisc del dev {q(ifname)} root && echo deleted; else echo absent; fi",
        ).output
        return f"netem on {ifname} of {ini} {'deleted' if 'deleted' in out else 'absent'}"
