"""Fault injection for failover drills: one class per fault kind, built from a scenario's `faults:` timeline.

    from lab.faults import FaultSpec, FaultContext, make_fault
    fault = make_fault(FaultSpec("cut-path", at_s=20, duration_s=30,
                                 params={"target": "t1", "network": "san-a"}), ctx)
    detail = fault.inject(); ...; fault.clear()

Kinds (params in each class's PARAMS JSON schema): cut-path, flap-path, partition, bandwidth (network.py),
kill-target, restart-target (node.py), alua-swap, pr-preempt, lun-reset (scsi.py), netem (vm.py).
"""

from lab.faults import network, node, scsi, vm
from lab.faults.base import (
    FAULT_KINDS,
    DockerEngine,
    Fault,
    FaultContext,
    FaultError,
    FaultSpec,
    SdkEngine,
    default_names,
    make_fault,
    validate_params,
)

__all__ = [
    "FAULT_KINDS",
    "DockerEngine",
    "Fault",
    "FaultContext",
    "FaultError",
    "FaultSpec",
    "SdkEngine",
    "default_names",
    "make_fault",
    "network",
    "node",
    "scsi",
    "validate_params",
    "vm",
]
