"""Real image builds (slow): Docker set-up, the libiscsi container image, and a Debian 12 initiator VM booted in
the qemu-runner container and reached over SSH with the lab key. Cached builds make reruns fast.

Every network created here is `--internal` with a subnet in 198.18.0.0/15; everything is removed at the end.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lab.images.build import ImageRef, ensure_image, list_images
from lab.images.docker_setup import docker_ok, ensure_docker
from lab.images.vm import VmNic, vm_command, vm_mounts

pytestmark = pytest.mark.slow

MGMT_SUBNET = "198.18.250.0/24"
SAN_SUBNET = "198.18.251.0/24"
SAN_B_SUBNET = "198.18.249.0/24"
RUNNER_MGMT_IP = "198.18.250.10"
READY_TIMEOUT_S = 180
SSH_TIMEOUT_S = 60
#: Debian releases whose VM image is built and booted (env SANLAB_TEST_VM_RELEASES, e.g. "11,12,13")
VM_RELEASES = [r.strip() for r in os.environ.get("SANLAB_TEST_VM_RELEASES", "12").split(",") if r.strip()]
KERNEL_SERIES = {"11": "5.10.", "12": "6.1.", "13": "6.12."}


def _docker() -> Any:
    import docker

    return docker.from_env(timeout=120)


@pytest.fixture(scope="module")
def engine() -> Any:
    ensure_docker()
    assert docker_ok()
    return _docker()


def test_ensure_docker_is_idempotent(engine: Any) -> None:
    t0 = time.monotonic()
    ensure_docker()  # already up: returns at once
    assert time.monotonic() - t0 < 20
    assert engine.ping() is True


def test_libiscsi_image_builds_and_runs(engine: Any, report_figure: Any) -> None:
    t0 = time.monotonic()
    ref = ensure_image("libiscsi")
    elapsed = time.monotonic() - t0
    assert ref.tag is not None and ref.tag.startswith("sanlab/libiscsi:")
    assert "libiscsi-bin" in ref.release.packages and ref.release.debian_version.startswith("12")
    out = engine.containers.run(
        ref.tag,
        [
            "sh",
            "-c",
            "iscsi-ls --usage 2>&1 | head -n 2; for c in iscsi-inq sg_inq fio; do command -v $c; done",
        ],
        network_mode="none",
        remove=True,
    ).decode()
    assert "Usage: iscsi-ls" in out
    assert "/usr/bin/iscsi-inq" in out and "/usr/bin/fio" in out
    tags = {t for img in engine.images.list("sanlab/libiscsi") for t in img.tags}
    assert {ref.tag, "sanlab/libiscsi:latest"} <= tags
    assert any(r.tag == ref.tag for r in list_images())
    report_figure("libiscsi image", {"seconds": round(elapsed, 1), "build_s": ref.build_seconds,
                                     "MiB": round(ref.size_bytes / 2**20)})  # fmt: skip


@pytest.fixture
def lab_networks(engine: Any) -> Iterator[tuple[Any, Any, Any]]:
    suffix = uuid.uuid4().hex[:6]
    import docker.types

    nets = []
    try:
        for name, subnet in (
            (f"sanlab-imgtest-mgmt-{suffix}", MGMT_SUBNET),
            (f"sanlab-imgtest-san-{suffix}", SAN_SUBNET),
            (f"sanlab-imgtest-sanb-{suffix}", SAN_B_SUBNET),
        ):
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
            nets.append(engine.networks.create(name, driver="bridge", internal=True, ipam=ipam))
        yield nets[0], nets[1], nets[2]
    finally:
        for n in nets:
            n.remove()


def _ssh(
    ref: ImageRef, host: str, port: int, command: str, timeout_s: float = 20
) -> subprocess.CompletedProcess[str]:
    assert ref.ssh_key is not None
    try:
        return _ssh_run(ref, host, port, command, timeout_s)
    except subprocess.TimeoutExpired as exc:  # report it like a failed command (rc 124, as timeout(1) does)
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return subprocess.CompletedProcess(exc.cmd, 124, out, f"ssh timed out after {timeout_s} s")


def _ssh_run(
    ref: ImageRef, host: str, port: int, command: str, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(ref.ssh_key), "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
         f"root@{host}", command],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


@pytest.mark.vm
@pytest.mark.parametrize("release", VM_RELEASES)
def test_linux_vm_boots_in_runner_and_answers_ssh(
    engine: Any, lab_networks: tuple[Any, Any, Any], report_figure: Any, release: str
) -> None:
    mgmt, san, _ = lab_networks
    runner = ensure_image("qemu-runner")
    vm = ensure_image(f"linux-debian{release}")
    assert vm.kernel is not None and vm.kernel.is_file() and vm.disk is not None and vm.disk.is_file()
    assert vm.release.kernel and vm.release.kernel.startswith(KERNEL_SERIES[release])
    assert "open-iscsi" in vm.release.packages and "multipath-tools" in vm.release.packages
    argv = vm_command(
        vm, nics=[VmNic(SAN_SUBNET)], mgmt_routes=[MGMT_SUBNET], hostname="imgtest-vm", ssh_port=2222
    )
    name = f"sanlab-imgtest-vm-{uuid.uuid4().hex[:6]}"
    container = engine.containers.create(
        runner.tag,
        argv,
        name=name,
        network=mgmt.name,
        volumes={host: {"bind": path, "mode": "ro"} for host, path in vm_mounts(vm).items()},
    )
    try:
        mgmt.disconnect(container)
        mgmt.connect(container, ipv4_address=RUNNER_MGMT_IP)
        san.connect(container, ipv4_address="198.18.251.10")
        t0 = time.monotonic()
        container.start()
        logs = ""
        while time.monotonic() - t0 < READY_TIMEOUT_S:
            logs = container.logs().decode(errors="replace")
            container.reload()
            if "SANLAB ready=" in logs or container.status != "running":
                break
            time.sleep(1)
        ready_s = time.monotonic() - t0
        assert "SANLAB ready=" in logs, logs[-4000:]
        result = None
        while time.monotonic() - t0 < READY_TIMEOUT_S + SSH_TIMEOUT_S:
            result = _ssh(vm, RUNNER_MGMT_IP, 2222, "uname -r; iscsiadm --version; ip route; pgrep -x iscsid; "
                          "pgrep -x multipathd; cat /etc/iscsi/initiatorname.iscsi; python3 -c 'print(42)'")  # fmt: skip
            if result.returncode == 0:
                break
            time.sleep(2)
        ssh_s = time.monotonic() - t0
        assert result is not None and result.returncode == 0, (result.stderr if result else "", logs[-3000:])
        out = result.stdout
        assert vm.release.kernel in out
        assert "iscsiadm version" in out
        assert f"{SAN_SUBNET} via 10.0.3.2 dev eth1" in out
        assert f"{MGMT_SUBNET} via 10.0.2.2 dev eth0" in out
        assert "default" not in out  # no route out of the lab
        assert "InitiatorName=iqn.2026-11.org.sanlab:imgtest-vm" in out
        assert out.strip().endswith("42")
        report_figure(
            f"linux-debian{release} VM in runner",
            {"ready_s": round(ready_s, 1), "ssh_s": round(ssh_s, 1), "build_s": vm.build_seconds,
             "MiB": round(vm.size_bytes / 2**20)},
        )  # fmt: skip
    finally:
        container.remove(force=True)


TARGET_CONFIG = {
    "sanlab_config_version": 1,
    "storage_objects": [{"plugin": "ramdisk", "name": "lun0", "size": "64M", "wwn": "sanlab-imgtest-0001"}],
    "targets": [
        {
            "wwn": "iqn.2026-11.org.sanlab:imgtest",
            "tpgs": [
                {
                    "tag": 1,
                    "enable": True,
                    "portals": [{"ip": "0.0.0.0", "port": 3260}],
                    "luns": [{"index": 0, "storage_object": "ramdisk/lun0"}],
                    "attributes": {
                        "authentication": 0,
                        "generate_node_acls": 1,
                        "demo_mode_write_protect": 0,
                    },
                }
            ],
        }
    ],
}
TARGET_SAN_IP = "198.18.251.20"
TARGET_SAN_B_IP = "198.18.249.20"


@pytest.mark.vm
def test_target_image_serves_the_debian12_vm_over_two_san_paths(
    engine: Any, lab_networks: tuple[Any, Any, Any], tmp_path: Any, report_figure: Any
) -> None:
    """The target image runs `sanlab target serve` on two SAN networks; the VM discovers and logs in through
    both SAN NICs, dm-multipath joins the two paths, a pattern written to the multipath device reads back."""
    import json

    mgmt, san, san_b = lab_networks
    target = ensure_image("target")
    runner = ensure_image("qemu-runner")
    vm = ensure_image("linux-debian12")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(TARGET_CONFIG))
    cfg.chmod(0o644)
    suffix = uuid.uuid4().hex[:6]
    tgt = engine.containers.create(
        target.tag,
        name=f"sanlab-imgtest-target-{suffix}",
        network=san.name,
        volumes={str(cfg): {"bind": "/etc/sanlab/config.json", "mode": "ro"}},
    )
    vmc = engine.containers.create(
        runner.tag,
        vm_command(
            vm, nics=[VmNic(SAN_SUBNET), VmNic(SAN_B_SUBNET)], hostname="imgtest-e2e"
        ),  # eth0: default route (see vm.py)
        name=f"sanlab-imgtest-e2e-{suffix}",
        network=mgmt.name,
        volumes={host: {"bind": path, "mode": "ro"} for host, path in vm_mounts(vm).items()},
    )
    try:
        san.disconnect(tgt)
        san.connect(tgt, ipv4_address=TARGET_SAN_IP)
        san_b.connect(tgt, ipv4_address=TARGET_SAN_B_IP)
        mgmt.disconnect(vmc)
        mgmt.connect(vmc, ipv4_address=RUNNER_MGMT_IP)
        san.connect(vmc, ipv4_address="198.18.251.10")
        san_b.connect(vmc, ipv4_address="198.18.249.10")
        tgt.start()
        t0 = time.monotonic()
        vmc.start()
        while time.monotonic() - t0 < READY_TIMEOUT_S and "SANLAB ready=" not in vmc.logs().decode(
            errors="replace"
        ):
            time.sleep(1)
        script = (
            f"set -e; for p in {TARGET_SAN_IP} {TARGET_SAN_B_IP}; do iscsiadm -m discovery -t st -p $p:3260; done; "
            "iscsiadm -m node -T iqn.2026-11.org.sanlab:imgtest --login; "
            "for i in $(seq 100); do [ -b /dev/sdb ] && break; sleep 0.1; done; udevadm settle -t 10; "
            "sg_inq /dev/sda | grep -i 'Product identification'; blockdev --getsize64 /dev/sda; "
            "for i in $(seq 50); do multipath -r >/dev/null 2>&1 || true; ls /dev/mapper/mpath* >/dev/null 2>&1 && break; "
            "sleep 0.2; done; multipath -ll; D=$(ls /dev/mapper/mpath* | head -n 1); "
            "head -c 1048576 /dev/urandom > /tmp/pat; dd if=/tmp/pat of=$D bs=64k oflag=direct status=none; "
            "dd if=$D of=/tmp/back bs=64k count=16 iflag=direct status=none; cmp /tmp/pat /tmp/back && echo VERIFIED; "
            "multipath -F; iscsiadm -m node --logoutall=all"
        )
        result = None
        while time.monotonic() - t0 < READY_TIMEOUT_S + SSH_TIMEOUT_S:
            result = _ssh(vm, RUNNER_MGMT_IP, 2222, script, timeout_s=90)
            if result.returncode != 255:  # 255: ssh itself failed (not up yet)
                break
            time.sleep(2)
        elapsed = time.monotonic() - t0
        assert result is not None and result.returncode == 0, (
            result.stdout if result else "",
            result.stderr if result else "",
            tgt.logs().decode(errors="replace")[-3000:],
        )
        assert "iqn.2026-11.org.sanlab:imgtest" in result.stdout
        assert "67108864" in result.stdout
        assert "VERIFIED" in result.stdout
        assert result.stdout.count("active ready running") == 2, result.stdout  # two paths in the map
        report_figure(
            "target image + debian12 VM, 2 paths + multipath", {"boot_login_verify_s": round(elapsed, 1)}
        )
    finally:
        vmc.remove(force=True)
        tgt.remove(force=True)
