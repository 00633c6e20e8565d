"""dm-multipath with scsi_dh_alua in a Linux guest against two target port groups of one LU.

The guest (lab/vm/multipath_job.sh) logs in through two portals (one TPG each), builds one multipath map
(group_by_prio, prio alua, failback immediate, tur checker), reports `sg_rtpg` for each path, does verified
O_DIRECT I/O and reports per-path block I/O counts. The host then swaps the ALUA states through
`Runtime.set_alua_state` (what the management API calls) while the guest keeps doing I/O; the guest waits until
RTPG shows the swap and the active path group moves, does more I/O and reports every I/O error. The target's
per-group media command counters must agree with the guest's per-path counts. A second test lets scsi_dh_alua
itself change a state with SET TARGET PORT GROUPS (explicit ALUA), as it does with LIO.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alua_vm_support import InProcessTarget, two_portal_config

from lab.vm.initramfs import build_initramfs
from lab.vm.kernel import KernelImage, fetch_kernel
from lab.vm.qemu import VmResult, run_vm
from target.config.model import AluaGroupConfig

pytestmark = [pytest.mark.slow, pytest.mark.vm]

VM_INITIATOR = "iqn.2026-11.org.example.sanlab:mpath-vm"
LUN_SIZE = 64 * 1024 * 1024
ITERS = 8
VM_TIMEOUT_S = 170


@pytest.fixture(scope="module")
def vm_image() -> tuple[KernelImage, Path]:
    kernel = fetch_kernel()
    return kernel, build_initramfs(kernel)


def _per_path(text: str) -> dict[str, int]:
    return {d: int(n) for d, n in re.findall(r"(sd[a-z]+):(-?\d+)", text)}


#: (explicit ALUA, the state the optimized group A is moved to while B becomes active/optimized, A's
#: transition delay in ms)
CASES = [
    pytest.param(False, "active_non_optimized", 0, id="implicit"),
    pytest.param(True, "active_non_optimized", 0, id="explicit"),
    # standby: I/O still in flight on A gets NOT READY 04h/0Bh, TEST UNIT READY too (multipathd: ghost path);
    # dm-multipath must retry it on B without an error reaching the application
    pytest.param(False, "standby", 0, id="implicit-standby"),
    # A is TRANSITIONING for a second (NOT READY 04h/0Ah: scsi_dh_alua retries, dm-multipath moves on)
    pytest.param(False, "active_non_optimized", 1000, id="implicit-transitioning"),
]


@pytest.mark.parametrize(("explicit", "a_after", "a_trans_delay_ms"), CASES)
def test_multipath_follows_alua_state_swap(
    explicit: bool,
    a_after: str,
    a_trans_delay_ms: int,
    vm_image: tuple[KernelImage, Path],
    lab_address: str,
    free_tcp_port: Callable[..., int],
    report_figure: Callable[[str, dict[str, object]], None],
    tmp_path: Path,
) -> None:
    backing = tmp_path / "disk0.img"
    with open(backing, "wb") as f:
        f.truncate(LUN_SIZE)
    portals = [(lab_address, free_tcp_port(lab_address)), (lab_address, free_tcp_port(lab_address))]
    # implicit: TPGS 01b, the host alone changes states. explicit: TPGS 11b, scsi_dh_alua may also send SET
    # TARGET PORT GROUPS when dm-multipath activates a path group (it does not for an active/optimized one)
    groups = [
        AluaGroupConfig(
            name="A",
            id=1,
            state="active_optimized",
            nonop_delay_ms=0,
            trans_delay_ms=a_trans_delay_ms,
            explicit=explicit,
        ),
        AluaGroupConfig(name="B", id=2, state="active_non_optimized", nonop_delay_ms=0, explicit=explicit),
    ]
    cfg = two_portal_config(backing, LUN_SIZE, portals, groups)
    kernel, initrd = vm_image
    console = tmp_path / "vm-console.log"
    params: dict[str, str | int] = {
        "job": "multipath",
        "portals": ",".join(f"{ip}:{port}" for ip, port in portals),
        "iqn": cfg.targets[0].wwn,
        "initiator": VM_INITIATOR,
        "iters": ITERS,
    }
    with InProcessTarget(cfg) as target:
        box: dict[str, VmResult] = {}
        vm = threading.Thread(
            target=lambda: box.setdefault(
                "r", run_vm(kernel.vmlinuz, initrd, params, console, timeout_s=VM_TIMEOUT_S)
            )
        )
        vm.start()
        deadline = time.monotonic() + VM_TIMEOUT_S
        while vm.is_alive() and time.monotonic() < deadline:
            if console.exists() and "SANLAB phase1_done=1" in console.read_text(errors="replace"):
                break
            time.sleep(0.2)
        swapped = vm.is_alive()
        at_swap: dict[str, dict[str, Any]] = {}
        if swapped:
            at_swap = target.swap({"B": "active_optimized", "A": a_after})
        vm.join(VM_TIMEOUT_S + 30)
        after = target.groups()
    result = box["r"]
    context = f"\n--- guest console (tail) ---\n{result.tail(150)}"
    assert swapped, f"the guest never finished phase 1{context}"
    assert not result.timed_out, f"VM timed out after {result.elapsed_s:.0f} s{context}"
    for step in ("login", "multipath", "io"):
        assert result.get(f"step_{step}") == "ok", f"step {step}: {result.get('error')}{context}"

    # two paths, one per target port; sg_rtpg shows the configured states through each
    paths = {
        k[len("path_") :]: int(v, 16)
        for k, v in ((k, result.get(k)) for k in result.values)
        if k.startswith("path_")
    }
    assert sorted(paths.values()) == [1, 2], context
    by_port = {rtpi: dev for dev, rtpi in paths.items()}
    assert result.get("map_paths") == "2", context
    for dev in paths:
        assert result.get(f"dh_{dev}") == "alua", f"scsi_dh_alua not attached to {dev}{context}"
        states = result.get(f"rtpg_{dev}")
        assert re.search(r"0x1:active/optimized", states), states
        assert re.search(r"0x2:active/non.optimized", states), states
    assert re.search(r"0x1:" + a_after.replace("_", "."), result.get("rtpg_after")), context

    # I/O went to the optimized path (port 1), then moved to port 2 after the swap, with no error
    assert result.get("active_before") == by_port[1], context
    assert result.get("active_after") == by_port[2], context
    io1, io2 = _per_path(result.get("io_phase1")), _per_path(result.get("io_phase2"))
    assert io1[by_port[1]] >= 2 * ITERS and io1[by_port[2]] == 0, context
    assert io2[by_port[2]] >= 2 * ITERS and io2[by_port[1]] == 0, context
    assert result.get("io_errors") == "0", context
    assert result.get("result") == "ok", context

    # the target saw the same. Its per-group media counters count every block I/O the guest completed on
    # that path since boot (the guest's /sys/block/sdX/stat reads + writes) but those the target refused (a
    # standby port answers NOT READY; the guest logs an I/O error on that path and dm-multipath retries the
    # request on the other one): exactly when the SCSI gate passes the command to the ALUA counter
    # (media_commands_exact, target.scsi.alua.media_access); a gate that does not also counts the TEST UNIT
    # READYs of the sd scan and of multipathd's tur checker (at most one per path per second, polling_interval
    # 1): `slack` bounds those.
    exact = bool(after["A"]["media_commands_exact"])
    slack = 0 if exact else 4 + math.ceil(result.elapsed_s)
    c1, c_end = _per_path(result.get("counts_phase1")), _per_path(result.get("counts_end"))
    refused = _per_path(result.get("ioerrs_by_path"))
    a, b = by_port[1], by_port[2]
    assert refused[b] == 0 and (refused[a] == 0 or a_after == "standby"), context
    extra = {
        "A_at_swap": at_swap["A"]["media_commands"] - c1[a],  # > 0 too: background I/O after phase 1
        "B_at_swap": at_swap["B"]["media_commands"] - c1[b],
        "A_end": after["A"]["media_commands"] - c_end[a] + refused[a],
        "B_end": after["B"]["media_commands"] - c_end[b],
    }
    assert at_swap["A"]["state"] == "active_optimized", at_swap
    assert extra["A_at_swap"] >= 0, (extra, at_swap, c1)
    for key in ("B_at_swap", "A_end", "B_end"):
        assert 0 <= extra[key] <= slack, (key, extra, at_swap, after, c1, c_end)
    assert after["B"]["media_commands"] - at_swap["B"]["media_commands"] >= io2[b] >= 2 * ITERS
    assert after["A"]["state"] == a_after and after["B"]["state"] == "active_optimized"
    # nobody sent SET TARGET PORT GROUPS behind the host's back (it would mark the status explicit)
    assert {g["status"] for g in after.values()} == {"altered_by_implicit_alua"}, after
    report_figure(
        f"dm-multipath + scsi_dh_alua, ALUA swap ({'explicit' if explicit else 'implicit'} ALUA, A -> {a_after}, A trans_delay {a_trans_delay_ms} ms)",
        {
            "vm_wall_s": round(result.elapsed_s, 1),
            "io_phase1": result.get("io_phase1"),
            "io_phase2": result.get("io_phase2"),
            "switch": result.get("mpath_switch"),
            "t_rtpg_seen_s": result.get("t_rtpg"),
            "rtpg_seen_transitioning": result.get("rtpg_seen_transitioning"),
            "t_switch_s": result.get("t_switch"),
            "bg_io_rounds_during_swap": result.get("bg_rounds"),
            "io_errors": result.get("io_errors"),
            "path_errors_retried": result.get("ioerrs_by_path"),
            "target_minus_guest": extra,
            "media_commands_exact": exact,
        },
    )


def test_scsi_dh_alua_activates_a_path_group_with_set_target_port_groups(
    vm_image: tuple[KernelImage, Path],
    lab_address: str,
    free_tcp_port: Callable[..., int],
    report_figure: Callable[[str, dict[str, object]], None],
    tmp_path: Path,
) -> None:
    """Explicit ALUA (TPGS 11b), A active/non-optimized and B standby: dm-multipath activates the best path
    group (A's path) and scsi_dh_alua sends SET TARGET PORT GROUPS (active/optimized for A), as it does with
    LIO. The target makes A optimized (status "altered by explicit STPG"), leaves B alone, and the I/O runs on
    A's path without an error. (With two equal groups multipath puts both paths in one path group and both
    send STPG: both end up optimized.)"""
    backing = tmp_path / "disk0.img"
    with open(backing, "wb") as f:
        f.truncate(LUN_SIZE)
    portals = [(lab_address, free_tcp_port(lab_address)), (lab_address, free_tcp_port(lab_address))]
    groups = [
        AluaGroupConfig(name="A", id=1, state="active_non_optimized", nonop_delay_ms=0, explicit=True),
        AluaGroupConfig(name="B", id=2, state="standby", nonop_delay_ms=0, explicit=True),
    ]
    cfg = two_portal_config(backing, LUN_SIZE, portals, groups)
    kernel, initrd = vm_image
    params: dict[str, str | int] = {
        "job": "multipath",
        "portals": ",".join(f"{ip}:{port}" for ip, port in portals),
        "iqn": cfg.targets[0].wwn,
        "initiator": VM_INITIATOR,
        "iters": ITERS,
        "swap": 0,
    }
    with InProcessTarget(cfg) as target:
        result = run_vm(kernel.vmlinuz, initrd, params, tmp_path / "vm-console.log", timeout_s=VM_TIMEOUT_S)
        after = target.groups()
    context = f"\n--- guest console (tail) ---\n{result.tail(150)}"
    assert not result.timed_out, f"VM timed out after {result.elapsed_s:.0f} s{context}"
    for step in ("login", "multipath", "io"):
        assert result.get(f"step_{step}") == "ok", f"step {step}: {result.get('error')}{context}"
    by_port = {int(result.get(k), 16): k[len("path_") :] for k in result.values if k.startswith("path_")}
    assert sorted(by_port) == [1, 2], context
    for dev in by_port.values():
        assert re.search(r"0x1:active/non.optimized 0x2:standby", result.get(f"rtpg_{dev}")), context

    # A's path was activated and A became optimized, by STPG; B was not touched
    assert result.get("active_before") == by_port[1], context
    assert after["A"]["state"] == "active_optimized", (after, context)
    assert after["A"]["status"] == "altered_by_explicit_stpg", after
    assert after["B"]["state"] == "standby" and after["B"]["status"] == "none", after
    assert re.search(r"0x1:active/optimized 0x2:standby", result.get("rtpg_before")), context

    io1 = _per_path(result.get("io_phase1"))
    assert io1[by_port[1]] >= 2 * ITERS and io1[by_port[2]] == 0, context
    assert result.get("io_errors") == "0" and result.get("result") == "ok", context
    c1 = _per_path(result.get("counts_phase1"))
    slack = 0 if after["A"]["media_commands_exact"] else 4 + math.ceil(result.elapsed_s)
    # after phase 1 the guest only reports and powers off: no block I/O after counts_phase1
    assert 0 <= after["A"]["media_commands"] - c1[by_port[1]] <= slack, (after, c1)
    # standby: the target admitted nothing on B (the guest's sdb stat counts the reads of its partition scan,
    # which B refused with NOT READY 04h/0Bh, and every tur check is refused too)
    assert after["B"]["media_commands"] == 0, after
    report_figure(
        "dm-multipath + scsi_dh_alua, explicit ALUA activation (STPG)",
        {
            "vm_wall_s": round(result.elapsed_s, 1),
            "io_phase1": result.get("io_phase1"),
            "rtpg_after_activation": result.get("rtpg_before"),
            "target_minus_guest_A": after["A"]["media_commands"] - c1[by_port[1]],
        },
    )
