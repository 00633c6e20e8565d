"""Drill workloads: what runs on each initiator while faults are injected (issue 6).

- `probe`: one verified 4 KiB write+read every 100 ms on a Linux VM's device (lab/workloads/probe_agent.py),
  timestamped; its gaps are the stalls;
- `fio`: fio with crc32c verification on its own region of the VM's device (dm-multipath map with two paths);
- `qemu-bench`: `qemu-img bench` loops from a qemu-driver container; `iscsi-perf`: libiscsi's iscsi-perf from
  a libiscsi container.

Use: `make_workload(spec, node, executor, device, t0)` -> `start()`, `stop()`, `collect()` -> WorkloadResult
(records on the drill clock). `device_for(topo, ini, executor)` (or `resolve_device` / `container_device`) gives
the `device` argument.
"""

from __future__ import annotations

from lab.drivers.exec import Executor
from lab.workloads.base import (
    DEFAULT_MAX_DURATION_S,
    ClockMap,
    ClockSample,
    Workload,
    WorkloadError,
    WorkloadResult,
    WorkloadSpec,
    measure_offset,
    validate_params,
)
from lab.workloads.container import IscsiPerfWorkload, QemuBenchWorkload
from lab.workloads.device import container_device, device_for, resolve_device
from lab.workloads.fio import FioWorkload
from lab.workloads.probe import ProbeWorkload

WORKLOAD_KINDS: dict[str, type[Workload]] = {
    cls.kind: cls for cls in (ProbeWorkload, FioWorkload, QemuBenchWorkload, IscsiPerfWorkload)
}

#: which workload kinds run on which initiator kind (lab.topology.model.InitiatorKind values)
KINDS_FOR_INITIATOR: dict[str, tuple[str, ...]] = {
    "linux-vm": ("probe", "fio"),
    "qemu-driver": ("qemu-bench",),
    "libiscsi": ("iscsi-perf",),
}


def spec_problems(spec: WorkloadSpec) -> list[str]:
    """What is wrong with a workload spec (unknown kind, unknown or mistyped params); [] when it is fine."""
    cls = WORKLOAD_KINDS.get(spec.kind)
    if cls is None:
        return [f"unknown workload kind {spec.kind!r} (known: {', '.join(sorted(WORKLOAD_KINDS))})"]
    return validate_params(cls, spec.params)


def make_workload(
    spec: WorkloadSpec,
    node: str,
    executor: Executor,
    device: str,
    t0: float,
    *,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    slot: int | None = None,
) -> Workload:
    """The workload object for `spec` on `node`. `max_duration_s` bounds the node-side run (the drill's duration
    plus a margin): the agent stops by itself after it even if `stop()` is never called. `slot`: which region of
    the LUN a writing workload uses when the spec does not say (initiators that share a LUN need different
    slots, e.g. their index among the spec's initiators)."""
    cls = WORKLOAD_KINDS.get(spec.kind)
    if cls is None:
        raise WorkloadError(spec_problems(spec)[0])
    if slot is not None and "slot" in cls.DEFAULTS and "slot" not in spec.params:
        spec = WorkloadSpec(spec.kind, {**spec.params, "slot": slot}, spec.name)
    return cls(spec, node, executor, device, t0, max_duration_s=max_duration_s)


__all__ = [
    "KINDS_FOR_INITIATOR",
    "WORKLOAD_KINDS",
    "ClockMap",
    "ClockSample",
    "FioWorkload",
    "IscsiPerfWorkload",
    "ProbeWorkload",
    "QemuBenchWorkload",
    "Workload",
    "WorkloadError",
    "WorkloadResult",
    "WorkloadSpec",
    "container_device",
    "device_for",
    "make_workload",
    "measure_offset",
    "resolve_device",
    "spec_problems",
]
