"""lab.faults against real containers: a target container (sanlab, then tgtd) and a libiscsi container on two small
--internal networks of their own (198.18.200.0/25 and .128/25, label org.sanlab.lab=faults-dev), removed
afterwards. Each fault is injected and cleared for real; reachability is checked with ping from the target
and iSCSI logins (LUN RESET, PR) from the libiscsi container. netem needs a VM kernel: unit tests only."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from lab.drivers.exec import DockerExec
from lab.faults import FaultContext, FaultError, FaultSpec, SdkEngine, make_fault
from lab.inventory import container_name, network_name
from lab.topology.model import (
    InitiatorKind,
    InitiatorNode,
    Lun,
    Network,
    NetworkRole,
    TargetKind,
    TargetNode,
    Topology,
)
from lab.topology.target_config import LUN_DIR, saveconfig, tgt_conf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (make setup)"),
]
LABEL = "org.sanlab.lab=faults-dev"


def docker(*args: str, stdin: bytes | None = None, check: bool = True) -> str:
    cp = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=120, check=False)
    if check and cp.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {cp.stderr.decode(errors='replace')}")
    return cp.stdout.decode(errors="replace")


def image(repo: str) -> str:
    out = docker("images", repo, "--format", "{{.Repository}}:{{.Tag}}", check=False).split()
    tagged = [i for i in out if i.endswith(":latest")] or [i for i in out if not i.endswith(":<none>")]
    if not tagged:
        pytest.skip(f"no {repo} image (make images)")
    return tagged[0]


def topology() -> Topology:
    nets = [
        Network("san-a", NetworkRole.SAN_A, ipaddress.IPv4Network("198.18.200.0/25")),
        Network("san-b", NetworkRole.SAN_B, ipaddress.IPv4Network("198.18.200.128/25")),
    ]
    t1 = TargetNode("t1", TargetKind.SANLAB, "iqn.2026-11.org.sanlab:faultsdev", ["san-a", "san-b"], [])
    t1.luns.append(Lun(0, 16 << 20, "lun0"))
    t1.chap = False
    lib1 = InitiatorNode(
        "lib1", InitiatorKind.LIBISCSI, "t1", ["san-a", "san-b"], "iqn.2026-11.org.sanlab:lib1"
    )
    lib2 = InitiatorNode("lib2", InitiatorKind.LIBISCSI, "t1", ["san-a"], "iqn.2026-11.org.sanlab:lib2")
    lib1.chap = lib2.chap = False
    return Topology("faultsdev", nets, [t1], [lib1, lib2])


def cleanup() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    nets = docker("network", "ls", "-q", "--filter", f"label={LABEL}", check=False).split()
    if nets:
        docker("network", "rm", *nets, check=False)


@pytest.fixture(scope="module", params=["sanlab", "tgt"])
def ctx(request: pytest.FixtureRequest) -> Iterator[FaultContext]:
    kind = str(request.param)
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False).returncode != 0:
        pytest.skip("docker engine not running")
    target_image, libiscsi_image = image("sanlab/target"), image("sanlab/libiscsi")
    topo = topology()
    cleanup()
    try:
        for n in topo.networks:
            docker("network", "create", "--internal", "--subnet", str(n.subnet), "--label", LABEL,
                   network_name(topo, n.name))  # fmt: skip
        for node, img in (("t1", target_image), ("lib1", libiscsi_image)):
            first, *rest = topo.node_networks(node)
            name = container_name(topo, node)
            docker("run", "-d", "--name", name, "--label", LABEL, "--init", "--cap-add", "NET_ADMIN",
                   "--network", network_name(topo, first), "--ip", topo.address(node, first),
                   img, "sleep", "infinity")  # fmt: skip
            for net in rest:
                docker("network", "connect", "--ip", topo.address(node, net), network_name(topo, net), name)
        t1 = container_name(topo, "t1")
        docker(
            "exec", t1, "sh", "-c", f"mkdir -p /etc/sanlab {LUN_DIR} && truncate -s 16M {LUN_DIR}/lun0.img"
        )
        if kind == "tgt":
            conf = tgt_conf(topo, topo.target("t1")).encode()
            docker("exec", "-i", t1, "sh", "-c", "cat > /etc/tgt/conf.d/sanlab.conf", stdin=conf)
        else:
            config = json.dumps(saveconfig(topo, topo.target("t1"))).encode()
            docker("exec", "-i", t1, "sh", "-c", "cat > /etc/sanlab/config.json", stdin=config)
        c = FaultContext(
            topo=topo,
            # what the faults read from the inventory: the deployed kind (as `sanlab run --target-kind`)
            inventory={"all": {"children": {"targets": {"hosts": {"t1": {"iscsi_target_kind": kind}}}}}},
            container=lambda n: container_name(topo, "lib1" if n == "lib2" else n),
            executor=lambda n: DockerExec(container_name(topo, "lib1" if n == "lib2" else n)),
            engine=SdkEngine(),
        )
        fault = make_fault(FaultSpec("restart-target", 0, duration_s=1, params={"target": "t1"}), c)
        assert "portals up" in fault.clear()  # starts the target the way the role does, waits for portals
        yield c
    finally:
        cleanup()


def is_tgt(ctx: FaultContext) -> bool:
    return "'tgt'" in repr(ctx.inventory)


def fault(ctx: FaultContext, kind: str, duration_s: float | None = None, **params: Any) -> Any:
    return make_fault(FaultSpec(kind, 0.0, "", duration_s, params), ctx)


def ping(ctx: FaultContext, network: str) -> bool:
    """t1 -> lib1 on `network` (one ICMP echo, 1 s)."""
    addr = ctx.topo.address("lib1", network)
    return ctx.executor("t1").run(f"ping -c 1 -W 1 {addr}", timeout=10).ok


def lun_reset_ok(ctx: FaultContext) -> str:
    return str(fault(ctx, "lun-reset", initiator="lib1").inject())


@pytest.mark.parametrize("method", ["disconnect", "drop", "portal"])
def test_cut_path_cuts_and_restores(ctx: FaultContext, method: str) -> None:
    assert ping(ctx, "san-b")
    f = fault(ctx, "cut-path", target="t1", network="san-b", method=method)
    try:
        f.inject()
        assert not ping(ctx, "san-b")
        assert ping(ctx, "san-a")  # only that path
    finally:
        f.clear()
    assert ping(ctx, "san-b")
    f.clear()  # idempotent
    assert ping(ctx, "san-b")


def test_flap_path_ends_restored(ctx: FaultContext) -> None:
    f = fault(ctx, "flap-path", target="t1", network="san-a", method="drop", count=2, down_s=0.5, up_s=0.5)
    f.inject()
    assert f.join(60)
    detail = f.clear()
    assert detail.startswith("2 flaps"), detail
    assert ping(ctx, "san-a")


def test_partition_isolates_the_target(ctx: FaultContext) -> None:
    f = fault(ctx, "partition", networks=["san-a", "san-b"], nodes=["t1"])
    try:
        f.inject()
        assert not ping(ctx, "san-a") and not ping(ctx, "san-b")
    finally:
        f.clear()
    assert ping(ctx, "san-a") and ping(ctx, "san-b")
    assert "LUN RESET" in lun_reset_ok(ctx)  # the target's portals answer again on the reconnected network


def test_bandwidth_tbf_on_and_off(ctx: FaultContext) -> None:
    f = fault(ctx, "bandwidth", target="t1", network="san-a", rate="20mbit")
    try:
        f.inject()
        shown = ctx.executor("t1").run(f"tc qdisc show dev {f.ifname}").output
        assert "tbf" in shown and "20Mbit" in shown, shown
    finally:
        assert "deleted" in f.clear()
    assert "tbf" not in ctx.executor("t1").run(f"tc qdisc show dev {f.ifname}").output


def test_pr_preempt_and_lun_reset_through_libiscsi(ctx: FaultContext) -> None:
    holder = fault(ctx, "lun-reset", initiator="lib2")  # its libiscsi session as the holder (lib2's ACL)
    held = holder.libiscsi("reserve", key=0xABC, type=5)
    assert held["after"]["held"] and held["after"]["key"] == 0xABC
    f = fault(ctx, "pr-preempt", target="t1", from_initiator="lib1")
    try:
        detail = f.inject()
        lun = 1 if is_tgt(ctx) else 0  # tgtd keeps LUN 0 for its controller
        assert f"lib1 preempted key 0xabc (type 5) on LUN {lun}; holder now 0x73616e6c6162" in detail
    finally:
        assert "unregistered" in f.clear()
    assert "from lib1 (libiscsi)" in lun_reset_ok(ctx)


def test_alua_swap_through_the_target_cli(ctx: FaultContext) -> None:
    if is_tgt(ctx):
        with pytest.raises(FaultError, match="no ALUA API"):
            fault(ctx, "alua-swap", target="t1", storage_object="lun0", groups={"1": "standby"})
        return
    f = fault(
        ctx,
        "alua-swap",
        target="t1",
        storage_object="lun0",
        groups={"1": "active_nonoptimized"},  # no per-portal ALUA: the TPG's implicit group, by id
        restore={"1": "active_optimized"},
    )
    assert f.inject() == "lun0: 1=active_nonoptimized"
    shown = json.loads(ctx.executor("t1").run("sanlab target alua show lun0 --json").output)
    group = shown["storage_objects"][0]["groups"][0]
    assert group["id"] == 1 and group["state"].replace("_", "") == "activenonoptimized", group
    assert "restored" in f.clear()
    shown = json.loads(ctx.executor("t1").run("sanlab target alua show lun0 --json").output)
    assert shown["storage_objects"][0]["groups"][0]["state"] == "active_optimized"


def test_restart_target_process(ctx: FaultContext) -> None:
    pid = "pgrep -x tgtd" if is_tgt(ctx) else "cat /run/sanlab-target.pid"
    before = ctx.executor("t1").run(pid).output.split()
    detail = fault(ctx, "restart-target", target="t1").inject()
    assert f"pid {' '.join(before)} stopped with SIGTERM" in detail and "portals up" in detail
    after = ctx.executor("t1").run(pid).output.split()
    assert after and after != before
    assert "LUN RESET" in lun_reset_ok(ctx)


def test_kill_target_container_and_restart(ctx: FaultContext) -> None:
    f = fault(ctx, "kill-target", target="t1", restart=True)
    f.inject()
    assert not ctx.engine.is_running(container_name(ctx.topo, "t1"))
    detail = f.clear()
    assert "docker start" in detail and "portals up" in detail
    assert "LUN RESET" in lun_reset_ok(ctx)
