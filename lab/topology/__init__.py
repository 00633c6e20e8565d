"""Lab topology files: model (`model`) and validated reading (`load`)."""

from lab.topology.load import TopologyError, load_topology, parse_topology
from lab.topology.model import (
    Chap,
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

__all__ = [
    "Chap",
    "InitiatorKind",
    "InitiatorNode",
    "Lun",
    "Network",
    "NetworkRole",
    "Release",
    "TargetKind",
    "TargetNode",
    "Topology",
    "TopologyError",
    "load_topology",
    "parse_topology",
]
