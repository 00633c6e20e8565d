"""The lab topology as data: networks, target nodes, initiator nodes, the paths between them, CHAP.

A topology file (YAML) is read by `lab.topology.load`; these dataclasses are what the rest of the lab
(inventory rendering, drivers, drills) works on. Addresses are not written in the file: every node gets a
deterministic address on each network it joins (`Topology.address`), so two runs of one topology look the same.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum


class NetworkRole(StrEnum):
    SAN_A = "san-a"
    SAN_B = "san-b"
    MGMT = "mgmt"


class TargetKind(StrEnum):
    SANLAB = "sanlab"  # this project's target (`sanlab target serve`)
    TGT = "tgt"  # Linux SCSI target framework (tgtd), the reference peer


class InitiatorKind(StrEnum):
    LINUX_VM = "linux-vm"  # Linux kernel initiator (open-iscsi, dm-multipath) in a qemu VM
    LIBISCSI = "libiscsi"  # libiscsi userspace initiator in a container
    QEMU_DRIVER = "qemu-driver"  # qemu's iSCSI block driver (qemu-img / qemu-io) in a container
    IPXE = "ipxe"  # iPXE `sanboot` in a qemu VM


class Release(StrEnum):
    DEBIAN11 = "debian11"
    DEBIAN12 = "debian12"
    DEBIAN13 = "debian13"


#: RFC 2544 benchmarking range: every lab network lives inside it (never routable to real hosts)
LAB_SUPERNET = ipaddress.IPv4Network("198.18.0.0/15")
ISCSI_PORT = 3260
#: host numbers inside each subnet: .1 is the bridge, targets from .10, initiators from .100
TARGET_HOST_BASE = 10
INITIATOR_HOST_BASE = 100


@dataclass(frozen=True)
class Chap:
    userid: str
    password: str
    mutual_userid: str = ""
    mutual_password: str = ""

    @property
    def mutual(self) -> bool:
        return bool(self.mutual_userid)


@dataclass(frozen=True)
class Network:
    name: str
    role: NetworkRole
    subnet: ipaddress.IPv4Network


@dataclass(frozen=True)
class Lun:
    index: int
    size: int  # bytes
    name: str


@dataclass
class TargetNode:
    name: str
    kind: TargetKind
    iqn: str
    portals: list[str]  # network names it listens on (port `port` on its address there)
    luns: list[Lun]
    port: int = ISCSI_PORT
    chap: bool = True
    #: a standby node of `replica_of` (HA pair): same IQN, same LUNs on the same backing files (a docker volume
    #: mounted in both containers), same LU identity (serial/WWN), its own portals (other networks)
    replica_of: str | None = None
    #: ALUA: network name -> asymmetric access state of that portal's target port group (one TPG per portal);
    #: empty: one TPG over every portal, every port active/optimized
    alua: dict[str, str] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        """The node whose LUs this node serves: itself, or the node it is a replica of."""
        return self.replica_of or self.name


@dataclass
class InitiatorNode:
    name: str
    kind: InitiatorKind
    target: str  # target node name
    paths: list[str]  # network names, one iSCSI session each (two -> multipath)
    iqn: str
    release: Release | None = None  # linux-vm only
    lun: int = 0
    chap: bool = True


@dataclass
class Topology:
    name: str
    networks: list[Network]
    targets: list[TargetNode]
    initiators: list[InitiatorNode]
    chap: Chap | None = None
    description: str = ""
    _addr: dict[tuple[str, str], str] = field(default_factory=dict, repr=False, compare=False)

    def network(self, name: str) -> Network:
        for n in self.networks:
            if n.name == name:
                return n
        raise KeyError(name)

    def target(self, name: str) -> TargetNode:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)

    def mgmt(self) -> Network | None:
        return next((n for n in self.networks if n.role is NetworkRole.MGMT), None)

    def node_networks(self, node: str) -> list[str]:
        """Every network the node's container joins, in topology order: its SAN networks, plus mgmt."""
        joined: set[str] = set()
        for t in self.targets:
            if t.name == node:
                joined |= set(t.portals)
        for i in self.initiators:
            if i.name == node:
                joined |= set(i.paths)
        mgmt = self.mgmt()
        if mgmt is not None:
            joined.add(mgmt.name)
        return [n.name for n in self.networks if n.name in joined]

    def address(self, node: str, network: str) -> str:
        """The node's IPv4 address on `network`: targets from .10, initiators from .100, in file order."""
        key = (node, network)
        if key not in self._addr:
            net = self.network(network)
            names_t = [t.name for t in self.targets]
            names_i = [i.name for i in self.initiators]
            if node in names_t:
                host = TARGET_HOST_BASE + names_t.index(node)
            elif node in names_i:
                host = INITIATOR_HOST_BASE + names_i.index(node)
            else:
                raise KeyError(node)
            self._addr[key] = str(net.subnet.network_address + host)
        return self._addr[key]

    def replica_set(self, name: str) -> list[TargetNode]:
        """The HA set of a target node: its primary first, then the primary's replicas (file order)."""
        primary = self.target(name).primary
        return [t for t in self.targets if t.primary == primary]

    def shared_volume(self, node: str) -> str | None:
        """Name part of the docker volume holding the LUN files of a replicated node (None: not replicated)."""
        members = self.replica_set(node)
        return f"{members[0].name}-luns" if len(members) > 1 else None

    def path_target(self, initiator: InitiatorNode, path: str) -> TargetNode:
        """The node of the initiator's target (or of its replicas) that has a portal on network `path`."""
        for t in self.replica_set(initiator.target):
            if path in t.portals:
                return t
        raise KeyError(path)

    def portal_addresses(self, initiator: InitiatorNode) -> list[tuple[str, int]]:
        """(ip, port) of the initiator's target on each of its paths, in path order (a path of a replicated
        target leads to whichever node of the HA set has a portal on that network)."""
        out = []
        for p in initiator.paths:
            t = self.path_target(initiator, p)
            out.append((self.address(t.name, p), t.port))
        return out

    def with_target_kind(self, kind: TargetKind) -> Topology:
        """A copy in which every target node is of `kind` (`sanlab run --target-kind`). tgtd has no ALUA
        groups: its nodes drop the per-portal ALUA states (every port is then active)."""
        targets = [
            dataclasses.replace(t, kind=kind, alua={} if kind is TargetKind.TGT else dict(t.alua))
            for t in self.targets
        ]
        return Topology(self.name, self.networks, targets, self.initiators, self.chap, self.description)

    def lun_number(self, initiator: InitiatorNode) -> int:
        """The LUN number the initiator addresses (tgtd reserves LUN 0 for its controller: index + 1)."""
        tgt = self.target(initiator.target)
        return initiator.lun + 1 if tgt.kind is TargetKind.TGT else initiator.lun

    def chap_for(self, initiator: InitiatorNode) -> Chap | None:
        tgt = self.target(initiator.target)
        return self.chap if (initiator.chap and tgt.chap) else None


def max_hosts_needed(n_targets: int, n_initiators: int) -> int:
    """Highest host number the address plan uses (for the subnet-size check)."""
    return max(TARGET_HOST_BASE + n_targets, INITIATOR_HOST_BASE + n_initiators)
