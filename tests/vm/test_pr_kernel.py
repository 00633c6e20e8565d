"""Persistent reservations from the Linux kernel initiator: `sg_persist` between two initiators and `mpathpersist`
through dm-multipath (lab/vm/multipath_job.sh, jobs "pr" and "multipath" with sanlab.mpathpersist=1).

Two initiators come from one VM: two iscsiadm ifaces with different initiator names log in to the same portal,
so the target sees two I_T nexuses (two SCSI devices in the guest). Skipped while the target has no PERSISTENT
RESERVE IN/OUT (the persistent reservation work lands separately).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from alua_vm_support import InProcessTarget, two_portal_config

from lab.vm.initramfs import build_initramfs
from lab.vm.kernel import KernelImage, fetch_kernel
from lab.vm.qemu import VmResult, run_vm
from target.config.model import AluaGroupConfig
from target.scsi.opcodes import OpcodeTable

pytestmark = [pytest.mark.slow, pytest.mark.vm]

INIT_A = "iqn.2026-11.org.example.sanlab:pr-a"
INIT_B = "iqn.2026-11.org.example.sanlab:pr-b"
LUN_SIZE = 64 * 1024 * 1024
VM_TIMEOUT_S = 170


def _pr_supported() -> bool:
    table = OpcodeTable.standard()
    return (0x5E, 0x00) in table and (0x5F, 0x00) in table


@pytest.fixture(scope="module")
def vm_image() -> tuple[KernelImage, Path]:
    if not _pr_supported():
        pytest.skip("the target has no PERSISTENT RESERVE IN/OUT yet")
    kernel = fetch_kernel()
    return kernel, build_initramfs(kernel)


def _boot(
    vm_image: tuple[KernelImage, Path],
    tmp_path: Path,
    lab_address: str,
    free_tcp_port: Callable[..., int],
    **extra: str | int,
) -> VmResult:
    backing = tmp_path / "disk0.img"
    with open(backing, "wb") as f:
        f.truncate(LUN_SIZE)
    portals = [(lab_address, free_tcp_port(lab_address)), (lab_address, free_tcp_port(lab_address))]
    groups = [
        AluaGroupConfig(name="A", id=1, nonop_delay_ms=0),
        AluaGroupConfig(name="B", id=2, state="active_non_optimized", nonop_delay_ms=0),
    ]
    cfg = two_portal_config(backing, LUN_SIZE, portals, groups)
    kernel, initrd = vm_image
    params: dict[str, str | int] = {
        "portals": ",".join(f"{ip}:{port}" for ip, port in portals),
        "iqn": cfg.targets[0].wwn,
        "initiator": INIT_A,
        **extra,
    }
    with InProcessTarget(cfg):
        box: dict[str, VmResult] = {}
        vm = threading.Thread(
            target=lambda: box.setdefault(
                "r",
                run_vm(kernel.vmlinuz, initrd, params, tmp_path / "vm-console.log", timeout_s=VM_TIMEOUT_S),
            )
        )
        vm.start()
        vm.join(VM_TIMEOUT_S + 30)
    return box["r"]


def test_sg_persist_between_two_initiators(
    vm_image: tuple[KernelImage, Path], lab_address: str, free_tcp_port: Callable[..., int], tmp_path: Path
) -> None:
    result = _boot(vm_image, tmp_path, lab_address, free_tcp_port, job="pr", initiator2=INIT_B)
    ctx = f"\n--- guest console (tail) ---\n{result.tail(150)}"
    assert not result.timed_out, ctx
    assert result.get("step_pr") == "ok", f"{result.get('error')}{ctx}"
    for name in (
        "a_register",
        "b_register",
        "a_keys",
        "a_reserve",
        "b_reservation",
        "b_preempt",
        "b_release",
    ):
        assert result.get(f"pr_{name}_rc") == "0", f"sg_persist {name}: {result.get('pr_' + name)}{ctx}"
    keys = result.get("pr_a_keys").lower()
    assert "0xaaaa" in keys and "0xbbbb" in keys, ctx
    resv = result.get("pr_b_reservation").lower()
    assert "key=0xaaaa" in resv and "write exclusive, registrants only" in resv, ctx
    # a registrant may write under Write Exclusive - Registrants Only
    assert result.get("pr_b_write_rc") == "0" and result.get("pr_a_write_rc") == "0", ctx
    # B preempted A: A's next command gets the unit attention 2Ah/05h, A's key is gone, B holds the reservation
    assert "registrations preempted" in result.get("pr_a_ua").lower(), ctx
    after = result.get("pr_a_keys_after").lower()
    assert "0xbbbb" in after and "0xaaaa" not in after, ctx
    assert "key=0xbbbb" in result.get("pr_b_reservation_after").lower(), ctx
    assert "no reservation" in result.get("pr_b_reservation_released").lower(), ctx


def test_mpathpersist_through_dm_multipath(
    vm_image: tuple[KernelImage, Path], lab_address: str, free_tcp_port: Callable[..., int], tmp_path: Path
) -> None:
    result = _boot(
        vm_image, tmp_path, lab_address, free_tcp_port, job="multipath", iters=2, mpathpersist=1, swap=0
    )
    ctx = f"\n--- guest console (tail) ---\n{result.tail(150)}"
    assert not result.timed_out, ctx
    assert result.get("step_multipath") == "ok", f"{result.get('error')}{ctx}"
    for name in ("register", "keys", "reserve", "reservation", "release", "unregister"):
        assert result.get(f"mp_{name}_rc") == "0", f"mpathpersist {name}: {result.get('mp_' + name)}{ctx}"
    # mpathpersist registers the key on every path of the map: two registrations
    assert result.get("mp_keys").lower().count("0x1234") == 2, ctx
    assert "0x1234" in result.get("mp_reservation").lower(), ctx
