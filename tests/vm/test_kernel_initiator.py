"""The Linux kernel initiator (open-iscsi + iscsi_tcp, Debian 6.1 kernel in a TCG VM) against the target.

The guest does SendTargets discovery with discovery CHAP, logs in with CHAP (mutual CHAP in the second test),
checks INQUIRY/READ CAPACITY, partitions, makes and mounts ext4, writes and re-reads files after dropping
caches, writes a pattern with O_DIRECT at an offset and reads it back, and logs out. lab/vm/guest_init.sh
reports each step as `SANLAB key=value`; the host then checks that the data landed in the backing file.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from target_process import Chap, RunningTarget, TargetSpec

from lab.vm.initramfs import PATTERN_SIZE, build_initramfs, pattern_bytes
from lab.vm.kernel import KernelImage, fetch_kernel
from lab.vm.qemu import VmResult, run_vm

pytestmark = [pytest.mark.slow, pytest.mark.vm]

VM_INITIATOR = "iqn.2026-11.org.example.sanlab:vm-initiator"
LUN_SIZE = 128 * 1024 * 1024
PART_MIB = 48
RAW_MIB = 64
VM_TIMEOUT_S = 300

CHAP = Chap("vm-initiator", "InitSecret0123")
MUTUAL = Chap("sanlab-target", "TargSecret4567")
DISCOVERY = Chap("vm-discovery", "DiscSecret0123")
DISCOVERY_MUTUAL = Chap("sanlab-disc", "DiscTarget4567")


@pytest.fixture(scope="module")
def vm_image() -> tuple[KernelImage, Path]:
    kernel = fetch_kernel()
    return kernel, build_initramfs(kernel)


def _spec(
    tmp_path: Path,
    address: str,
    free_tcp_port: Callable[..., int],
    *,
    chap: Chap | None = None,
    mutual_chap: Chap | None = None,
    discovery_chap: Chap | None = None,
    discovery_mutual_chap: Chap | None = None,
) -> TargetSpec:
    """One fileio LUN, one portal on the lab address, an ACL (LUN 0 mapped) for the VM's initiator name."""
    return TargetSpec(
        backing_file=tmp_path / "lun0.img",
        portals=[(address, free_tcp_port(address))],
        lun_size=LUN_SIZE,
        demo_mode=False,
        acl_initiators=[VM_INITIATOR],
        chap=chap,
        mutual_chap=mutual_chap,
        discovery_chap=discovery_chap,
        discovery_mutual_chap=discovery_mutual_chap,
    )


def _boot(
    vm_image: tuple[KernelImage, Path], target: RunningTarget, tmp_path: Path, steps: str, **chap: Chap
) -> VmResult:
    kernel, initrd = vm_image
    params: dict[str, str | int] = {
        "job": "initiator",
        "portal": target.portal(),
        "iqn": target.iqn,
        "initiator": VM_INITIATOR,
        "lun": target.lun,
        "steps": steps,
        "part_mib": PART_MIB,
        "raw_mib": RAW_MIB,
    }
    params.update({key: cred.word() for key, cred in chap.items()})
    return run_vm(kernel.vmlinuz, initrd, params, tmp_path / "vm-console.log", timeout_s=VM_TIMEOUT_S)


def _assert_steps(result: VmResult, steps: str) -> None:
    context = f"\n--- guest console (tail) ---\n{result.tail(120)}"
    assert not result.timed_out, f"VM timed out after {result.elapsed_s:.0f} s{context}"
    assert result.get("done") == "1", f"guest did not finish its job{context}"
    for step in steps.split(","):
        assert result.get(f"step_{step}") == "ok", f"step {step}: {result.get('error')}{context}"
    assert result.get("result") == "ok", context


def _assert_inquiry(result: VmResult, target: RunningTarget) -> None:
    assert result.get("inq_pdt") == "disk"
    assert result.get("inq_vendor"), "empty T10 vendor identification"
    assert result.get("inq_product"), "empty product identification"
    blocks = LUN_SIZE // 512
    assert result.get("readcap_block_length") == "512"
    assert result.get("readcap_blocks") == str(blocks), "READ CAPACITY(10) block count"
    assert result.get("readcap16_blocks") == str(blocks), "READ CAPACITY(16) block count"


def _assert_raw_on_disk(result: VmResult, backing: Path) -> None:
    expected = pattern_bytes()
    assert result.get("raw_md5_read") == hashlib.md5(expected).hexdigest()
    with open(backing, "rb") as f:
        f.seek(RAW_MIB * 1024 * 1024)
        landed = f.read(PATTERN_SIZE)
    assert landed == expected, "the O_DIRECT pattern is not in the backing file at its offset"


def _figures(result: VmResult) -> dict[str, object]:
    figures: dict[str, object] = {
        "vm_wall_s": round(result.elapsed_s, 1),
        "guest_uptime_s": result.get("uptime"),
    }
    figures.update({k: v[-1] for k, v in result.values.items() if k.startswith("t_")})
    return figures


def test_kernel_initiator_chap_filesystem(
    vm_image: tuple[KernelImage, Path],
    lab_address: str,
    start_iscsi_target: Callable[..., RunningTarget],
    free_tcp_port: Callable[..., int],
    report_figure: Callable[[str, dict[str, object]], None],
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, lab_address, free_tcp_port, chap=CHAP, discovery_chap=DISCOVERY)
    target = start_iscsi_target(spec)
    steps = "discover,login,inq,fs,raw,logout"
    result = _boot(vm_image, target, tmp_path, steps, chap=CHAP, dchap=DISCOVERY)
    report_figure(f"kernel initiator, CHAP, {target.kind}", _figures(result))
    _assert_steps(result, steps)

    # discovery answered with the lab portal the guest can reach
    assert f"{target.portal()},1 {target.iqn}" in result.all("discovered")
    assert result.get("sessions") == "1"
    assert result.get("sessions_after_logout") == "0"
    _assert_inquiry(result, target)
    assert result.get("partition_sectors") == str(PART_MIB * 2048)
    assert result.get("fs_verify") == "ok"
    assert result.get("fs_md5_pattern_bin") == hashlib.md5(pattern_bytes()).hexdigest()

    # the host side: the guest's writes are in the backing file
    data = spec.backing_file.read_bytes()[: 2 * 1024 * 1024]
    assert data[510:512] == b"\x55\xaa", "no MBR signature at LBA 0"
    status, ptype, start, sectors = data[446], data[446 + 4], *struct.unpack_from("<II", data, 446 + 8)
    assert status in (0x00, 0x80)
    assert (ptype, start, sectors) == (0x83, 2048, PART_MIB * 2048), "partition entry 1"
    # ext4 superblock: 1024 bytes into the partition, magic 0xEF53 at offset 56
    sb = 2048 * 512 + 1024
    assert struct.unpack_from("<H", data, sb + 56)[0] == 0xEF53, "no ext4 superblock in the partition"
    _assert_raw_on_disk(result, spec.backing_file)


def test_kernel_initiator_mutual_chap(
    vm_image: tuple[KernelImage, Path],
    lab_address: str,
    start_iscsi_target: Callable[..., RunningTarget],
    free_tcp_port: Callable[..., int],
    report_figure: Callable[[str, dict[str, object]], None],
    tmp_path: Path,
) -> None:
    spec = _spec(
        tmp_path,
        lab_address,
        free_tcp_port,
        chap=CHAP,
        mutual_chap=MUTUAL,
        discovery_chap=DISCOVERY,
        discovery_mutual_chap=DISCOVERY_MUTUAL,
    )
    target = start_iscsi_target(spec)
    steps = "discover,login,inq,raw,logout"
    result = _boot(
        vm_image, target, tmp_path, steps, chap=CHAP, mchap=MUTUAL, dchap=DISCOVERY, dmchap=DISCOVERY_MUTUAL
    )
    report_figure(f"kernel initiator, mutual CHAP, {target.kind}", _figures(result))
    _assert_steps(result, steps)
    assert f"{target.portal()},1 {target.iqn}" in result.all("discovered")
    _assert_inquiry(result, target)
    _assert_raw_on_disk(result, spec.backing_file)


def test_kernel_initiator_wrong_chap_secret_is_refused(
    vm_image: tuple[KernelImage, Path],
    lab_address: str,
    start_iscsi_target: Callable[..., RunningTarget],
    free_tcp_port: Callable[..., int],
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, lab_address, free_tcp_port, chap=CHAP)
    target = start_iscsi_target(spec)
    wrong = Chap(CHAP.user, "WrongSecret999")
    result = _boot(vm_image, target, tmp_path, "login", chap=wrong)
    context = f"\n--- guest console (tail) ---\n{result.tail(80)}"
    assert result.get("done") == "1", context
    assert result.get("step_login") == "fail", f"login with a wrong CHAP secret succeeded{context}"
    # iscsiadm's exit status 24 = ISCSI_ERR_LOGIN_AUTH_FAILED (the target answered 0201 authentication failure)
    assert "exited 24" in result.get("error"), context
    assert not result.get("disk"), context
