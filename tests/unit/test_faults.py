"""lab.faults: parameter validation, the exact commands and engine calls each fault makes (fake executors and a
fake docker engine record them), clear() after a failed inject, flap bounds."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from lab.drivers.exec import Result
from lab.faults import (
    FAULT_KINDS,
    FaultContext,
    FaultError,
    FaultSpec,
    default_names,
    make_fault,
    validate_params,
)
from lab.faults.base import interface_of, route_device
from lab.faults.network import FLAP_MAX_COUNT, rate_bits
from lab.faults.node import parse_stop_output
from lab.faults.scsi import PR_TYPES, parse_sg_read_reservation
from lab.topology.model import (
    InitiatorKind,
    InitiatorNode,
    Lun,
    Network,
    NetworkRole,
    Release,
    TargetKind,
    TargetNode,
    Topology,
)

# ---------------------------------------------------------------------------------------------- fakes

IP_ADDR_T1 = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
41: eth0    inet 198.18.100.10/24 brd 198.18.100.255 scope global eth0\\       valid_lft forever
43: eth1    inet 198.18.101.10/24 brd 198.18.101.255 scope global eth1\\       valid_lft forever
45: eth2    inet 198.18.102.10/24 brd 198.18.102.255 scope global eth2\\       valid_lft forever
"""


@dataclass
class FakeExec:
    """An Executor that records (cmd, stdin) and answers from (regex, rc, output) rules, first match wins."""

    name: str
    rules: list[tuple[str, int, str]] = field(default_factory=list)
    calls: list[tuple[str, bytes | None]] = field(default_factory=list)

    def run(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        assert timeout > 0
        self.calls.append((cmd, stdin))
        for pattern, rc, out in self.rules:
            if re.search(pattern, cmd):
                return Result(rc, out, 0.0)
        return Result(0, "", 0.0)

    @property
    def cmds(self) -> list[str]:
        return [c for c, _ in self.calls]


@dataclass
class FakeEngine:
    """A DockerEngine over an in-memory model: container -> {network: address}, running flags."""

    nets: dict[str, dict[str, str]]
    running: dict[str, bool] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)  # call names that raise FaultError

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            raise FaultError(f"{what} failed", "Error response from daemon: boom")

    def network_disconnect(self, network: str, container: str) -> None:
        self.calls.append(("disconnect", network, container))
        self._maybe_fail("disconnect")
        self.nets[container].pop(network)

    def network_connect(self, network: str, container: str, ipv4_address: str) -> None:
        self.calls.append(("connect", network, container, ipv4_address))
        self._maybe_fail("connect")
        self.nets[container][network] = ipv4_address

    def container_networks(self, container: str) -> dict[str, str]:
        return dict(self.nets[container])

    def kill(self, container: str, signal: str) -> None:
        self.calls.append(("kill", container, signal))
        self._maybe_fail("kill")
        self.running[container] = False

    def start(self, container: str) -> None:
        self.calls.append(("start", container))
        self.running[container] = True

    def is_running(self, container: str) -> bool:
        return self.running.get(container, True)


def topo() -> Topology:
    nets = [
        Network("mgmt", NetworkRole.MGMT, ipaddress.IPv4Network("198.18.100.0/24")),
        Network("san-a", NetworkRole.SAN_A, ipaddress.IPv4Network("198.18.101.0/24")),
        Network("san-b", NetworkRole.SAN_B, ipaddress.IPv4Network("198.18.102.0/24")),
    ]
    t1 = TargetNode(
        "t1",
        TargetKind.SANLAB,
        "iqn.2026-01.org.sanlab:t1",
        ["san-a", "san-b"],
        [Lun(0, 64 << 20, "lun0")],
        alua={"san-a": "active_optimized", "san-b": "active_nonoptimized"},
    )
    vm1 = InitiatorNode(
        "vm1",
        InitiatorKind.LINUX_VM,
        "t1",
        ["san-a", "san-b"],
        "iqn.2026-01.org.sanlab:vm1",
        Release.DEBIAN12,
    )
    lib1 = InitiatorNode("lib1", InitiatorKind.LIBISCSI, "t1", ["san-a"], "iqn.2026-01.org.sanlab:lib1")
    return Topology("fx", nets, [t1], [vm1, lib1])


@dataclass
class Lab:
    ctx: FaultContext
    engine: FakeEngine
    execs: dict[str, FakeExec]
    logs: list[str]

    def spec(self, kind: str, duration_s: float | None = None, **params: Any) -> FaultSpec:
        return FaultSpec(kind, 10.0, "", duration_s, params)

    def fault(self, kind: str, duration_s: float | None = None, **params: Any) -> Any:
        return make_fault(self.spec(kind, duration_s, **params), self.ctx)


def make_lab(inventory: dict[str, Any] | None = None) -> Lab:
    t = topo()
    execs = {n: FakeExec(n) for n in ("t1", "vm1", "lib1")}
    execs["t1"].rules.append((r"^ip -o -4 addr show$", 0, IP_ADDR_T1))

    def container(n: str) -> str:
        return f"sanlab-fx-{n}-runner" if n == "vm1" else f"sanlab-fx-{n}"

    nets = {
        container(n): {f"sanlab-fx-{net}": t.address(n, net) for net in t.node_networks(n)}
        for n in ("t1", "vm1", "lib1")
    }
    engine = FakeEngine(nets)
    logs: list[str] = []
    ctx = FaultContext(
        topo=t,
        inventory=inventory or {},
        container=container,
        executor=lambda n: execs[n],
        log=logs.append,
        engine=engine,
    )
    return Lab(ctx, engine, execs, logs)


def tgt_inventory() -> dict[str, Any]:
    return {"all": {"children": {"targets": {"hosts": {"t1": {"iscsi_target_kind": "tgt"}}}}}}


# ---------------------------------------------------------------------------------------------- validation


def test_every_kind_of_the_interface_is_registered() -> None:
    assert set(FAULT_KINDS) == {
        "cut-path",
        "flap-path",
        "kill-target",
        "restart-target",
        "partition",
        "bandwidth",
        "netem",
        "alua-swap",
        "pr-preempt",
        "lun-reset",
    }


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("cut-paths", {}, "kind: unknown fault kind 'cut-paths'"),
        ("cut-path", {"target": "t1"}, "params: 'network' is a required property"),
        (
            "cut-path",
            {"target": "t1", "network": "san-a", "method": "unplug"},
            "params.method: 'unplug' is not one of",
        ),
        (
            "cut-path",
            {"target": "t1", "network": "san-a", "color": 1},
            "Additional properties are not allowed",
        ),
        (
            "flap-path",
            {"target": "t1", "network": "san-a", "count": 201},
            "params.count: 201 is greater than the maximum of 200",
        ),
        (
            "flap-path",
            {"target": "t1", "network": "san-a", "count": 0},
            "params.count: 0 is less than the minimum of 1",
        ),
        (
            "flap-path",
            {"target": "t1", "network": "san-a", "down_s": 0},
            "params.down_s: 0 is less than or equal to the minimum of 0",
        ),
        (
            "flap-path",
            {"target": "t1", "network": "san-a", "count": 200, "down_s": 10, "up_s": 10},
            "exceeds the bound of 3600 s",
        ),
        ("partition", {"networks": []}, "params.networks: [] should be non-empty"),
        (
            "bandwidth",
            {"target": "t1", "network": "san-a", "rate": "fast"},
            "params.rate: 'fast' does not match",
        ),
        ("bandwidth", {"target": "t1", "network": "san-a", "rate": "1kbit"}, "below 8kbit"),
        ("netem", {"initiator": "vm1", "delay_ms": 100}, "give exactly one of network and interface"),
        ("netem", {"initiator": "vm1", "network": "san-a"}, "netem needs delay_ms > 0 or loss_pct > 0"),
        (
            "netem",
            {"initiator": "vm1", "network": "san-a", "jitter_ms": 5, "loss_pct": 1},
            "jitter_ms needs delay_ms > 0",
        ),
        (
            "netem",
            {"initiator": "vm1", "network": "san-a", "loss_pct": 101},
            "params.loss_pct: 101 is greater than the maximum of 100",
        ),
        (
            "alua-swap",
            {"target": "t1", "storage_object": "lun0", "groups": {"a": "sleepy"}},
            "params.groups.a: 'sleepy' is not one of",
        ),
        (
            "alua-swap",
            {"target": "t1", "storage_object": "lun0", "groups": {}},
            "params.groups: {} should be non-empty",
        ),
        (
            "pr-preempt",
            {"target": "t1", "from_initiator": "lib1", "key": "12"},
            "params.key: '12' does not match",
        ),
        (
            "restart-target",
            {"target": "t1", "signal": "HUP"},
            "params.signal: 'HUP' is not one of ['KILL', 'TERM']",
        ),
        ("lun-reset", {"initiator": "vm1", "lun": -1}, "params.lun: -1 is less than the minimum of 0"),
    ],
)
def test_invalid_params_are_named_with_their_path(kind: str, params: dict[str, Any], expected: str) -> None:
    errors = validate_params(kind, params)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("cut-path", {"target": "t1", "network": "san-a", "method": "drop"}),
        ("flap-path", {"target": "t1", "network": "san-b", "count": 200, "down_s": 8, "up_s": 10}),
        ("partition", {"networks": ["san-a", "san-b"], "nodes": ["t1"]}),
        ("bandwidth", {"target": "t1", "network": "san-a", "rate": "10mbit", "burst": "64kb"}),
        ("netem", {"initiator": "vm1", "network": "san-a", "delay_ms": 50, "jitter_ms": 5}),
        ("kill-target", {"target": "t1", "restart": True}),
        ("restart-target", {"target": "t1", "signal": "KILL"}),
        (
            "alua-swap",
            {
                "target": "t1",
                "storage_object": "lun0",
                "groups": {"san-a": "standby", "san-b": "active_optimized"},
            },
        ),
        ("pr-preempt", {"target": "t1", "from_initiator": "lib1", "lun": 0, "abort": True}),
        ("lun-reset", {"initiator": "vm1"}),
    ],
)
def test_valid_params_pass_and_build(kind: str, params: dict[str, Any]) -> None:
    assert validate_params(kind, params) == []
    lab = make_lab()
    assert lab.fault(kind, **params).kind == kind


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("cut-path", {"target": "t9", "network": "san-a"}, "'t9' is not a target node of topology fx"),
        ("cut-path", {"target": "vm1", "network": "san-a"}, "'vm1' is not a target node"),
        ("cut-path", {"target": "t1", "network": "san-c"}, "'san-c' is not a network of topology fx"),
        ("partition", {"networks": ["san-a"], "nodes": ["x"]}, "nodes[0]: 'x' is not a node"),
        (
            "netem",
            {"initiator": "lib1", "network": "san-a", "delay_ms": 5},
            "lib1 is a libiscsi initiator; this fault needs linux-vm",
        ),
        ("netem", {"initiator": "vm1", "network": "mgmt", "delay_ms": 5}, "'mgmt' is not a path of vm1"),
        (
            "alua-swap",
            {"target": "t1", "storage_object": "lun7", "groups": {"a": "standby"}},
            "'lun7' is not a LUN",
        ),
        (
            "alua-swap",
            {"target": "t1", "storage_object": "lun0", "groups": {"san-c": "standby"}},
            "groups.san-c: t1 has no target port group 'san-c' (groups: san-a, san-b)",
        ),
        ("pr-preempt", {"target": "t2", "from_initiator": "lib1"}, "'t2' is not a target node"),
        ("lun-reset", {"initiator": "lib1", "device": "/dev/sdb"}, "only a linux-vm initiator has devices"),
    ],
)
def test_unknown_nodes_fail_when_the_fault_is_built(kind: str, params: dict[str, Any], expected: str) -> None:
    lab = make_lab()
    with pytest.raises(FaultError, match=re.escape(expected)):
        lab.fault(kind, **params)
    assert lab.engine.calls == []
    assert all(not e.calls for e in lab.execs.values())


def test_alua_swap_refuses_a_tgt_target() -> None:
    lab = make_lab(tgt_inventory())
    with pytest.raises(FaultError, match="runs tgtd, which has no ALUA API"):
        lab.fault("alua-swap", target="t1", storage_object="lun0", groups={"a": "standby"})


def test_default_names_count_per_kind() -> None:
    specs = [
        FaultSpec("cut-path", 5),
        FaultSpec("lun-reset", 6),
        FaultSpec("cut-path", 7, name="second-cut"),
        FaultSpec("cut-path", 8),
    ]
    assert default_names(specs) == ["cut-path-1", "lun-reset-1", "second-cut", "cut-path-3"]


# ---------------------------------------------------------------------------------------------- parsing


def test_interface_and_route_parsing() -> None:
    assert interface_of(IP_ADDR_T1, "198.18.102.10") == ("eth2", 24)
    assert interface_of("7: eth1@if8    inet 198.18.101.10/24 scope global eth1", "198.18.101.10") == (
        "eth1",
        24,
    )
    assert interface_of(IP_ADDR_T1, "198.18.101.11") is None
    assert route_device("198.18.101.10 via 10.0.3.2 dev eth1 src 10.0.3.15 uid 0 \\    cache") == "eth1"
    assert route_device("RTNETLINK answers: Network is unreachable") is None


def test_rate_units() -> None:
    assert rate_bits("10mbit") == 10e6
    assert rate_bits("1.5gbit") == 1.5e9
    assert rate_bits("2mbps") == 16e6


# ---------------------------------------------------------------------------------------------- cut-path


def test_cut_path_disconnect_and_reconnect_with_the_same_address() -> None:
    lab = make_lab()
    f = lab.fault("cut-path", target="t1", network="san-b")
    assert "disconnected" in f.inject()
    assert lab.engine.calls == [("disconnect", "sanlab-fx-san-b", "sanlab-fx-t1")]
    assert "reconnected" in f.clear()
    assert lab.engine.calls[-1] == ("connect", "sanlab-fx-san-b", "sanlab-fx-t1", "198.18.102.10")
    assert "already on" in f.clear()  # idempotent: no second connect
    assert len(lab.engine.calls) == 2


def test_cut_path_drop_writes_an_nft_table_through_stdin() -> None:
    lab = make_lab()
    f = lab.fault("cut-path", target="t1", network="san-a", method="drop")
    detail = f.inject()
    ex = lab.execs["t1"]
    assert ex.cmds == ["ip -o -4 addr show", "nft -f -"]
    script = (ex.calls[1][1] or b"").decode()
    assert "table inet sanlab_cut_san_a {" in script
    assert 'iifname "eth1" drop' in script and 'oifname "eth1" drop' in script
    assert script.count("\n") > 5  # several lines (one-line nft rules fail)
    assert "eth1" in detail
    ex.rules.insert(0, (r"nft list table", 0, "deleted\n"))
    assert "deleted" in f.clear()
    assert ex.cmds[-1] == (
        "if nft list table inet sanlab_cut_san_a >/dev/null 2>&1; then "
        "nft delete table inet sanlab_cut_san_a && echo deleted; else echo absent; fi"
    )
    assert lab.engine.calls == []


def test_cut_path_portal_removes_and_restores_the_address() -> None:
    lab = make_lab()
    f = lab.fault("cut-path", target="t1", network="san-b", method="portal")
    f.inject()
    ex = lab.execs["t1"]
    assert ex.cmds[-1] == "ip addr del 198.18.102.10/24 dev eth2"
    ex.rules.insert(0, (r"^ip -o -4 addr show$", 0, IP_ADDR_T1.replace("198.18.102.10", "198.18.102.99")))
    f.clear()
    assert ex.cmds[-1] == "ip addr add 198.18.102.10/24 dev eth2"


def test_clear_after_failed_inject_restores_without_error() -> None:
    lab = make_lab()
    lab.engine.fail.add("disconnect")
    f = lab.fault("cut-path", target="t1", network="san-a")
    with pytest.raises(FaultError, match="boom"):
        f.inject()
    assert "already on" in f.clear()
    assert [c[0] for c in lab.engine.calls] == ["disconnect"]

    lab = make_lab()
    lab.execs["t1"].rules.insert(0, (r"^nft -f", 1, "Error: syntax error"))
    f = lab.fault("cut-path", target="t1", network="san-a", method="drop")
    with pytest.raises(FaultError, match="syntax error"):
        f.inject()
    assert "absent" in f.clear()

    lab = make_lab()  # clear without any inject: nothing to do, nothing raised
    f = lab.fault("cut-path", target="t1", network="san-a", method="portal")
    assert "present" in f.clear()


def test_portal_clear_without_known_interface_reports_the_missing_address() -> None:
    lab = make_lab()
    lab.execs["t1"].rules.insert(0, (r"^ip -o -4 addr show$", 0, "1: lo    inet 127.0.0.1/8 scope host lo"))
    f = lab.fault("cut-path", target="t1", network="san-a", method="portal")
    with pytest.raises(FaultError, match=re.escape("no interface on t1 carries 198.18.101.10")):
        f.inject()
    with pytest.raises(FaultError, match="interface it was on is unknown"):
        f.clear()


# ---------------------------------------------------------------------------------------------- flap-path


def test_flap_path_runs_the_whole_series_and_ends_restored() -> None:
    lab = make_lab()
    f = lab.fault("flap-path", target="t1", network="san-a", count=3, down_s=0.01, up_s=0.01)
    assert "3x" in f.inject()
    assert f.join(60)
    kinds = [c[0] for c in lab.engine.calls]
    assert kinds == ["disconnect", "connect"] * 3
    assert len(f.flaps) == 3 and all(up is not None and up >= down for down, up in f.flaps)
    detail = f.clear()
    assert detail.startswith("3 flaps") and "already on" in detail
    assert "sanlab-fx-san-a" in lab.engine.container_networks("sanlab-fx-t1")


def test_flap_path_clear_stops_early_and_restores() -> None:
    lab = make_lab()
    f = lab.fault("flap-path", target="t1", network="san-a", count=FLAP_MAX_COUNT, down_s=3, up_s=15)
    f.inject()
    detail = f.clear()  # stops the 200-flap series during its first down phase
    assert [c[0] for c in lab.engine.calls] == ["disconnect", "connect"]
    assert detail.startswith("1 flaps")
    assert "sanlab-fx-san-a" in lab.engine.container_networks("sanlab-fx-t1")


def test_flap_path_first_cut_failure_raises_and_clear_is_safe() -> None:
    lab = make_lab()
    lab.engine.fail.add("disconnect")
    f = lab.fault("flap-path", target="t1", network="san-a", count=2, down_s=0.01, up_s=0.01)
    with pytest.raises(FaultError):
        f.inject()
    assert "0 flaps" in f.clear()


def test_flap_path_failure_in_the_series_is_reported_by_clear() -> None:
    lab = make_lab()
    f = lab.fault("flap-path", target="t1", network="san-a", count=2, down_s=0.01, up_s=0.01)
    f.inject()
    lab.engine.fail.add("connect")
    assert f.join(60)
    lab.engine.fail.clear()
    with pytest.raises(FaultError, match="connect failed"):
        f.clear()
    assert "sanlab-fx-san-a" in lab.engine.container_networks("sanlab-fx-t1")  # restored all the same


# ---------------------------------------------------------------------------------------------- partition


def test_partition_cuts_every_node_on_the_networks() -> None:
    lab = make_lab()
    f = lab.fault("partition", networks=["san-a"])
    f.inject()
    assert sorted(c[2] for c in lab.engine.calls) == [
        "sanlab-fx-lib1",
        "sanlab-fx-t1",
        "sanlab-fx-vm1-runner",
    ]
    f.clear()
    connects = {c[2]: c[3] for c in lab.engine.calls if c[0] == "connect"}
    assert connects == {
        "sanlab-fx-t1": "198.18.101.10",
        "sanlab-fx-vm1-runner": "198.18.101.100",
        "sanlab-fx-lib1": "198.18.101.101",
    }


def test_partition_of_named_nodes_and_undo_on_failure() -> None:
    lab = make_lab()
    f = lab.fault("partition", networks=["san-a", "san-b"], nodes=["t1"], method="drop")
    f.inject()
    nft = [s for c, s in lab.execs["t1"].calls if c == "nft -f -"]
    assert len(nft) == 2 and b"sanlab_cut_san_b" in (nft[1] or b"")
    assert not lab.execs["vm1"].calls

    lab = make_lab()
    f = lab.fault("partition", networks=["san-a", "san-b"], nodes=["t1"])
    lab.engine.nets["sanlab-fx-t1"].pop("sanlab-fx-san-b")  # the second disconnect will fail
    lab.engine.fail.add("disconnect")
    with pytest.raises(FaultError, match="undone"):
        f.inject()


# ---------------------------------------------------------------------------------------------- bandwidth


def test_bandwidth_tbf_on_the_target_interface() -> None:
    lab = make_lab()
    f = lab.fault("bandwidth", target="t1", network="san-b", rate="10mbit")
    f.inject()
    ex = lab.execs["t1"]
    assert ex.cmds[-1] == "tc qdisc replace dev eth2 root tbf rate 10mbit burst 16384b latency 50ms"
    f2 = lab.fault("bandwidth", target="t1", network="san-b", rate="1gbit", burst="1mb", latency="20ms")
    assert f2.command("eth2") == "tc qdisc replace dev eth2 root tbf rate 1gbit burst 1mb latency 20ms"
    assert lab.fault("bandwidth", target="t1", network="san-a", rate="1gbit").burst() == "1250000b"
    ex.rules.insert(0, (r"tc qdisc show", 0, "deleted"))
    assert "deleted" in f.clear()
    assert ex.cmds[-1].startswith("if tc qdisc show dev eth2 | grep -q tbf; then tc qdisc del dev eth2 root")


# ---------------------------------------------------------------------------------------------- node faults

STOP_OUT = "pid=321\ncmdline=/opt/sanlab/bin/python3\x1f/opt/sanlab/bin/sanlab\x1ftarget\x1fserve\x1f--config\x1f/etc/sanlab/config.json\x1f\nstopped\n"


def test_parse_stop_output() -> None:
    info = parse_stop_output(STOP_OUT)
    assert info["pid"] == "321" and info["stopped"] and not info["escalated"]
    assert info["argv"][-3:] == ["serve", "--config", "/etc/sanlab/config.json"]
    assert parse_stop_output("not-running\n")["was_running"] is False


def test_restart_target_restarts_with_the_same_command_and_waits_for_portals() -> None:
    lab = make_lab()
    ex = lab.execs["t1"]
    ex.rules.insert(0, (r"kill -s TERM", 0, STOP_OUT))
    ex.rules.insert(0, (r"setsid nohup", 0, "started 400\n"))
    f = lab.fault("restart-target", target="t1")
    detail = f.inject()
    assert "pid 321 stopped with SIGTERM" in detail and "portals up" in detail
    stop, start, wait = ex.cmds
    assert "cat /run/sanlab-target.pid" in stop and "pgrep -f '[t]arget serve'" in stop
    assert (
        "setsid nohup /opt/sanlab/bin/python3 /opt/sanlab/bin/sanlab target serve --config "
        "/etc/sanlab/config.json >>/var/log/sanlab-target.log 2>&1 </dev/null &" in start
    )
    assert "echo $! > /run/sanlab-target.pid" in start
    assert wait.startswith("python3 -c ") and wait.endswith(" 60 198.18.101.10:3260 198.18.102.10:3260")
    assert lab.engine.calls == []


def test_restart_target_with_duration_stays_down_until_clear() -> None:
    lab = make_lab()
    ex = lab.execs["t1"]
    ex.rules.insert(0, (r"kill -s KILL", 0, STOP_OUT))
    ex.rules.insert(0, (r"echo running \|\| echo down", 0, "down\n"))
    f = lab.fault("restart-target", duration_s=5, target="t1", signal="KILL")
    assert "down for 5 s" in f.inject()
    assert len(ex.cmds) == 1
    f.clear()
    assert "setsid nohup /opt/sanlab/bin/python3" in ex.cmds[2]
    assert ex.cmds[3].startswith("python3 -c ")


def test_restart_target_tgt_uses_pgrep_and_reloads_targets() -> None:
    lab = make_lab(tgt_inventory())
    ex = lab.execs["t1"]
    ex.rules.insert(0, (r"kill -s TERM", 0, "pid=77 \ncmdline=tgtd\x1f-f\x1f\nescalated\nstopped\n"))
    detail = lab.fault("restart-target", target="t1").inject()
    assert "tgt pid 77" in detail and "escalated to SIGKILL" in detail
    assert "pids=$(pgrep -x tgtd" in ex.cmds[0]
    assert "setsid nohup tgtd -f >>/var/log/tgtd.log" in ex.cmds[1]
    assert "tgt-admin --update ALL -f" in ex.cmds[1]


def test_restart_target_failures_raise_with_output() -> None:
    lab = make_lab()
    lab.execs["t1"].rules.insert(0, (r"kill -s TERM", 0, "not-running\n"))
    f = lab.fault("restart-target", target="t1")
    with pytest.raises(FaultError, match="no sanlab target process runs on t1"):
        f.inject()
    lab.execs["t1"].rules.insert(0, (r"python3 -c", 1, "waiting-for 198.18.101.10:3260"))
    lab.execs["t1"].rules.insert(0, (r"echo running \|\| echo down", 0, "down\n"))
    with pytest.raises(FaultError, match=re.escape("waiting-for 198.18.101.10:3260")):
        f.clear()  # clear after the failed inject: starts the target (role's command) and waits
    assert "setsid nohup sanlab target serve --config /etc/sanlab/config.json" in lab.execs["t1"].cmds[-2]


def test_kill_target_without_restart_leaves_the_node_down() -> None:
    lab = make_lab()
    f = lab.fault("kill-target", target="t1")
    assert f.inject() == "docker kill -s KILL sanlab-fx-t1"
    assert "left down" in f.clear()
    assert lab.engine.calls == [("kill", "sanlab-fx-t1", "KILL")]
    assert not lab.execs["t1"].calls


def test_kill_target_with_restart_starts_container_and_target() -> None:
    lab = make_lab()
    ex = lab.execs["t1"]
    ex.rules.insert(0, (r"^pids=", 0, STOP_OUT.split("\n")[1] + "\n"))
    ex.rules.insert(0, (r"echo running \|\| echo down", 0, "down\n"))
    f = lab.fault("kill-target", target="t1", restart=True)
    f.inject()
    assert lab.engine.calls == [("kill", "sanlab-fx-t1", "KILL")]
    detail = f.clear()
    assert lab.engine.calls[-1] == ("start", "sanlab-fx-t1") and "docker start" in detail
    assert "setsid nohup /opt/sanlab/bin/python3 /opt/sanlab/bin/sanlab target serve" in ex.cmds[-2]
    f.clear()  # idempotent: the container runs, so no second start
    assert [c[0] for c in lab.engine.calls].count("start") == 1


# ---------------------------------------------------------------------------------------------- netem


def test_netem_finds_the_vm_interface_by_route() -> None:
    lab = make_lab()
    ex = lab.execs["vm1"]
    ex.rules.insert(
        0, (r"ip -o route get 198.18.102.10", 0, "198.18.102.10 via 10.0.4.2 dev eth2 src 10.0.4.15")
    )
    f = lab.fault("netem", initiator="vm1", network="san-b", delay_ms=100, jitter_ms=10, loss_pct=1.5)
    assert f.inject() == "netem delay 100ms 10ms loss 1.5% on eth2 of vm1"
    assert ex.cmds[-1].endswith(
        "modprobe sch_netem 2>/dev/null; tc qdisc replace dev eth2 root netem delay 100ms 10ms loss 1.5%"
    )
    f.clear()
    assert "tc qdisc show dev eth2 | grep -q netem; then tc qdisc del dev eth2 root" in ex.cmds[-1]
    assert lab.fault("netem", initiator="vm1", interface="eth1", loss_pct=5).netem_args() == "netem loss 5%"


def test_netem_clear_when_the_route_is_unknown_is_a_noop() -> None:
    lab = make_lab()
    lab.execs["vm1"].rules.insert(0, (r"ip -o route get", 2, "RTNETLINK answers: Network is unreachable"))
    f = lab.fault("netem", initiator="vm1", network="san-a", delay_ms=100)
    with pytest.raises(FaultError, match="Network is unreachable"):
        f.inject()
    assert f.clear().startswith("nothing to clear")


# ---------------------------------------------------------------------------------------------- alua-swap


def test_alua_swap_sets_each_group_and_restores() -> None:
    lab = make_lab()
    groups = {"san-a": "standby", "san-b": "active_optimized"}
    f = lab.fault(
        "alua-swap", target="t1", storage_object="lun0", groups=groups, restore={"san-a": "active_optimized"}
    )
    assert f.inject() == "lun0: san-a=standby, san-b=active_optimized"
    assert lab.execs["t1"].cmds == [
        "sanlab target alua set lun0 san-a standby",
        "sanlab target alua set lun0 san-b active_optimized",
    ]
    assert f.clear() == "restored lun0: san-a=active_optimized"
    lab.execs["t1"].rules.insert(0, (r"alua set", 2, "error: no such group"))
    with pytest.raises(FaultError, match="no such group"):
        f.inject()


# ---------------------------------------------------------------------------------------------- pr-preempt / lun-reset

SYSFS_DEVS = "/dev/sdc\n/dev/sdb\n"
RES_HELD = """  SANLAB    disk              0001
  Peripheral device type: disk
  PR generation=0x4, Reservation follows:
    Key=0xabc123
    scope: LU_SCOPE,  type: Write Exclusive, registrants only
"""
RES_OURS = RES_HELD.replace("0xabc123", "0x73616e6c6162")
RES_NONE = "  PR generation=0x0, there is NO reservation held\n"


def test_parse_sg_read_reservation() -> None:
    assert parse_sg_read_reservation(RES_HELD) == {"held": True, "key": 0xABC123, "type": 5}
    assert parse_sg_read_reservation(RES_NONE)["held"] is False
    assert PR_TYPES["exclusive access, all registrants"] == 8


def test_pr_preempt_from_a_vm_with_sg_persist() -> None:
    lab = make_lab()
    ex = lab.execs["vm1"]
    reads = iter([RES_HELD, RES_OURS])
    ex.rules.insert(0, (r"iscsi_session", 0, SYSFS_DEVS))
    f = lab.fault("pr-preempt", target="t1", from_initiator="vm1")
    orig_run = ex.run

    def run(cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        if "sg_persist -n -i -r" in cmd:
            ex.calls.append((cmd, stdin))
            return Result(0, next(reads), 0.0)
        return orig_run(cmd, timeout=timeout, stdin=stdin)

    ex.run = run  # type: ignore[method-assign]
    detail = f.inject()
    assert "preempted key 0xabc123 (type 5) on LUN 0; holder now 0x73616e6c6162" in detail
    sg = [c.split("export PATH; ")[-1] for c in ex.cmds if "sg_persist" in c]
    assert sg == [
        "sg_persist -n -i -r /dev/sdb",
        "sg_persist -n -o -I -S 0x73616e6c6162 /dev/sdb",
        "sg_persist -n -o -P -K 0x73616e6c6162 -S 0xabc123 -T 5 /dev/sdb",
        "sg_persist -n -i -r /dev/sdb",
    ]
    assert "iqn.2026-01.org.sanlab:t1" in ex.cmds[0] and ":0/block/" in ex.cmds[0]
    f.clear()
    assert ex.cmds[-1].endswith("sg_persist -n -o -I -S 0 /dev/sdb")


def test_pr_preempt_without_a_reservation_fails_and_clear_is_a_noop() -> None:
    lab = make_lab()
    ex = lab.execs["vm1"]
    ex.rules.insert(0, (r"sg_persist -n -i -r", 0, RES_NONE))
    f = lab.fault("pr-preempt", target="t1", from_initiator="vm1", device="/dev/sdx")
    with pytest.raises(FaultError, match="nothing to preempt"):
        f.inject()
    assert f.clear() == "nothing to clear (never registered)"
    assert len(ex.cmds) == 1


def test_pr_preempt_from_libiscsi_sends_the_script_on_stdin() -> None:
    lab = make_lab(tgt_inventory())
    ex = lab.execs["lib1"]
    result = {
        "ok": True,
        "before": {"held": True, "key": 0xABC, "type": 6},
        "after": {"held": True, "key": 0x73616E6C6162, "type": 6},
    }
    ex.rules.append((r"^python3 -$", 0, "noise\n" + json.dumps(result) + "\n"))
    f = lab.fault("pr-preempt", target="t1", from_initiator="lib1", abort=True)
    assert "lib1 preempted and aborted key 0xabc (type 6) on LUN 1" in f.inject()
    cmd, stdin = ex.calls[0]
    program = (stdin or b"").decode()
    assert cmd == "python3 -"
    last = program.rstrip().splitlines()[-1]
    assert last.startswith("raise SystemExit(main(json.loads(")
    args = json.loads(eval(last[len("raise SystemExit(main(json.loads(") : -3]))
    assert args["action"] == "preempt" and args["lun"] == 1  # tgtd: LUN index 0 is LUN 1 on the wire
    assert args["portal"] == "198.18.101.10:3260" and args["initiator"] == "iqn.2026-01.org.sanlab:lib1"
    assert args["key"] == 0x73616E6C6162 and args["abort"] is True
    assert "iscsi_scsi_command_sync" in program


def test_libiscsi_failure_raises_with_the_scripts_error() -> None:
    lab = make_lab()
    ex = lab.execs["lib1"]
    ex.rules.append(
        (r"^python3 -$", 1, json.dumps({"ok": False, "step": "login", "error": "login failed: CHAP"}))
    )
    f = lab.fault("lun-reset", initiator="lib1")
    with pytest.raises(FaultError, match="lun-reset from lib1 failed: login failed: CHAP"):
        f.inject()
    assert f.clear() == "nothing to clear"


def test_lun_reset_from_a_vm_and_from_libiscsi() -> None:
    lab = make_lab()
    lab.execs["vm1"].rules.insert(0, (r"iscsi_session", 0, SYSFS_DEVS))
    detail = lab.fault("lun-reset", initiator="vm1").inject()
    assert lab.execs["vm1"].cmds[-1].endswith("sg_reset -N -d /dev/sdb")
    assert "via /dev/sdb" in detail
    lab.execs["vm1"].rules.insert(0, (r"iscsi_session", 0, ""))
    with pytest.raises(FaultError, match="vm1 has no device for LUN 0"):
        lab.fault("lun-reset", initiator="vm1").inject()
    lab.execs["lib1"].rules.append((r"^python3 -$", 0, json.dumps({"ok": True, "tmf_rc": 0})))
    assert (
        lab.fault("lun-reset", initiator="lib1", lun=0).inject() == "LUN RESET of LUN 0 from lib1 (libiscsi)"
    )


def test_ha_pair_actions_reach_the_named_node_of_the_set() -> None:
    """A replica (same IQN, its own portals) serves the initiator's other path: pr-preempt aimed at it logs in
    through that path's portal, and netem finds that path by the replica's address."""
    lab = make_lab()
    t = lab.ctx.topo
    t1 = t.target("t1")
    t1.portals = ["san-a"]
    t.targets.append(TargetNode("t2", TargetKind.SANLAB, t1.iqn, ["san-b"], list(t1.luns), replica_of="t1"))
    t.initiators[1].paths = ["san-a", "san-b"]
    lab.execs["lib1"].rules.append((r"^python3 -$", 0, json.dumps({"ok": True, "tmf_rc": 0})))
    f = lab.fault("pr-preempt", target="t2", from_initiator="lib1")
    assert f.libiscsi_args("preempt")["portal"] == "198.18.102.11:3260"
    assert lab.fault("pr-preempt", target="t1", from_initiator="lib1").libiscsi_args("x")["portal"] == (
        "198.18.101.10:3260"
    )
    lab.execs["vm1"].rules.insert(0, (r"route get 198.18.102.11$", 0, "198.18.102.11 via 10.0.4.2 dev eth2"))
    assert lab.fault("netem", initiator="vm1", network="san-b", delay_ms=5).find_interface() == "eth2"
