"""The qemu command line that runs a lab Linux initiator VM inside a `qemu-runner` container.

Layout inside the runner container: the VM image folder (`ImageRef.directory`: vmlinuz, initrd.img,
rootfs.img) is bind-mounted read-only at `/images/<name>` (see `vm_mounts`). The root disk is opened with
`snapshot=on`, so many VMs share one image file and nothing is written back.

Networking (lab-facts: "VM inside a container: -netdev user NICs; each NIC routes one SAN subnet via its slirp
gateway"): NIC 0 (guest eth0, slirp 10.0.2.0/24) is management: it carries the SSH forward
`hostfwd=tcp:0.0.0.0:<ssh_port>-:22`, so Ansible on the host reaches the VM at
`<runner container's management IP>:<ssh_port>` with the lab key (`ImageRef.ssh_key`, user root).
slirp hands forwarded connections to the guest with the client's real address as source (only loopback
clients appear as 10.0.2.2), so the guest needs a route back to the client through eth0: `mgmt_routes`
(e.g. the management network's subnet, where the Ansible controller sits at the bridge gateway); when not
given, eth0 carries the default route. Either way nothing leaves the lab: slirp can only send where the runner
container can, and every lab network is `--internal`.
Each `VmNic` adds one more NIC (guest eth1, eth2, ... on slirp 10.0.3.0/24, 10.0.4.0/24, ...) that routes its
SAN subnet via its slirp gateway, so the VM's iSCSI sessions leave through the container's docker networks.

Kernel command line read by the guest's /sbin/sanlab-init (images/files/vm/sanlab-init):
`sanlab.hostname=`, `sanlab.iqn=`, `sanlab.net=IF:ADDR/LEN:GW:ROUTES,...` (ROUTES joined by "+", "-" = none).
The console is the container's stdout (`docker logs`); the guest prints `SANLAB ready=<uptime>` when sshd,
iscsid and multipathd are up.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from lab.images.build import ImageRef
from lab.images.recipe import ImageKind

#: where vm_command expects the image folders inside the runner container
VM_IMAGE_MOUNT = "/images"
#: guest address inside each slirp network (.2 is slirp's gateway, .3 its DNS, which the guest never uses)
_GUEST_HOST = 15
_MAX_NICS = 8
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
_IQN_RE = re.compile(r"^(iqn\.\d{4}-\d{2}\.[^\s,]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$")


@dataclass(frozen=True)
class VmNic:
    """One SAN-facing NIC of the guest: traffic to `route` (a SAN subnet, e.g. "198.18.101.0/24") leaves
    through it. `slirp_net` (default 10.0.<3+index>.0/24) is the private link between guest and slirp;
    the guest takes .15 on it and routes `route` via .2."""

    route: str
    slirp_net: str | None = None


@dataclass(frozen=True)
class GuestNic:
    """A resolved NIC: guest interface name, guest address/prefix, gateway and the subnets it routes."""

    ifname: str
    address: str  # "10.0.3.15/24"
    gateway: str  # "10.0.3.2"
    routes: tuple[str, ...]  # subnets, or ("default",)
    slirp_net: str

    def cmdline_item(self) -> str:
        return f"{self.ifname}:{self.address}:{self.gateway}:{'+'.join(self.routes) or '-'}"


def _slirp(net: str) -> tuple[ipaddress.IPv4Network, str, str]:
    n = ipaddress.IPv4Network(net, strict=True)
    if n.prefixlen > 29:
        raise ValueError(f"slirp network {net} is too small")
    return n, f"{n.network_address + _GUEST_HOST}/{n.prefixlen}", str(n.network_address + 2)


def _as_vmnic(nic: VmNic | Mapping[str, Any], index: int) -> VmNic:
    """A VmNic, or a mapping with "route" or "subnet" (and optionally "slirp_net"); other keys are ignored."""
    if isinstance(nic, VmNic):
        return nic
    route = nic.get("route") or nic.get("subnet")
    if not isinstance(route, str):
        raise ValueError(f"nics[{index}]: needs a 'route' or 'subnet' string")
    slirp = nic.get("slirp_net")
    return VmNic(route=route, slirp_net=str(slirp) if slirp else None)


def guest_nics(
    nics: Sequence[VmNic | Mapping[str, Any]], mgmt_routes: list[str] | None = None
) -> list[GuestNic]:
    """Management NIC (eth0) followed by one NIC per VmNic, with their addresses; ValueError if invalid.
    eth0 routes `mgmt_routes` (default: the default route)."""
    if len(nics) > _MAX_NICS:
        raise ValueError(f"at most {_MAX_NICS} SAN NICs per VM, got {len(nics)}")
    out: list[GuestNic] = []
    _, addr, gw = _slirp("10.0.2.0/24")
    mgmt = ("default",) if mgmt_routes is None else tuple(str(ipaddress.IPv4Network(r)) for r in mgmt_routes)
    out.append(GuestNic("eth0", addr, gw, mgmt, "10.0.2.0/24"))
    seen = {ipaddress.IPv4Network("10.0.2.0/24")}
    for i, raw in enumerate(nics, start=1):
        nic = _as_vmnic(raw, i - 1)
        route = ipaddress.IPv4Network(nic.route, strict=True)
        slirp_net = nic.slirp_net or f"10.0.{2 + i}.0/24"
        net, addr, gw = _slirp(slirp_net)
        if any(net.overlaps(s) for s in seen):
            raise ValueError(f"nics[{i - 1}].slirp_net {slirp_net} overlaps another NIC's network")
        if route.overlaps(net):
            raise ValueError(f"nics[{i - 1}].route {nic.route} overlaps its slirp network {slirp_net}")
        seen.add(net)
        out.append(GuestNic(f"eth{i}", addr, gw, (str(route),), str(net)))
    return out


def vm_mounts(ref: ImageRef) -> dict[str, str]:
    """Host folder -> container path to bind-mount (read-only) into the runner for `vm_command(ref)`."""
    if ref.kind is not ImageKind.VM or ref.directory is None:
        raise ValueError(f"{ref.name} is not a VM image")
    return {str(ref.directory): f"{VM_IMAGE_MOUNT}/{ref.name}"}


def vm_command(
    ref: ImageRef,
    *,
    nics: Sequence[VmNic | Mapping[str, Any]],
    memory_mib: int = 512,
    ssh_port: int = 2222,
    extra_cmdline: str = "",
    mgmt_routes: list[str] | None = None,
    hostname: str | None = None,
    initiator_iqn: str | None = None,
    smp: int = 1,
) -> list[str]:
    """argv of qemu-system-x86_64 (TCG) booting `ref` inside the runner container; see the module doc.
    `nics` are VmNic or mappings with "route"/"subnet" (the SAN subnet each NIC reaches)."""
    if ref.kind is not ImageKind.VM or ref.kernel is None or ref.initrd is None or ref.disk is None:
        raise ValueError(f"{ref.name} is not a VM image")
    if not 128 <= memory_mib <= 16384:
        raise ValueError(f"memory_mib {memory_mib} out of range 128..16384")
    if not 1 <= ssh_port <= 65535:
        raise ValueError(f"ssh_port {ssh_port} out of range")
    if not 1 <= smp <= 8:
        raise ValueError(f"smp {smp} out of range 1..8")
    host = hostname or ref.name
    if not _HOSTNAME_RE.match(host):
        raise ValueError(f"hostname {host!r} is not a valid host name")
    if initiator_iqn is not None and not _IQN_RE.match(initiator_iqn):
        raise ValueError(f"initiator_iqn {initiator_iqn!r} is not an iSCSI name")
    base = PurePosixPath(VM_IMAGE_MOUNT) / ref.name
    gnics = guest_nics(nics, mgmt_routes)
    cmdline = [
        "console=ttyS0",
        "quiet",
        "panic=-1",
        "net.ifnames=0",
        "biosdevname=0",
        f"sanlab.hostname={host}",
        f"sanlab.net={','.join(n.cmdline_item() for n in gnics)}",
    ]
    if initiator_iqn:
        cmdline.append(f"sanlab.iqn={initiator_iqn}")
    if extra_cmdline.strip():
        cmdline.append(extra_cmdline.strip())
    argv = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-M", "pc",
        "-cpu", "max",
        "-m", str(memory_mib),
        "-smp", str(smp),
        "-nographic",
        "-no-reboot",
        "-monitor", "none",
        "-serial", "stdio",
        "-kernel", str(base / ref.kernel.name),
        "-initrd", str(base / ref.initrd.name),
        "-drive", f"file={base / ref.disk.name},format=raw,if=virtio,snapshot=on",
        "-append", " ".join(cmdline),
    ]  # fmt: skip
    for i, n in enumerate(gnics):
        netdev = f"user,id=n{i},net={n.slirp_net},restrict=off"
        if i == 0:
            netdev += f",hostfwd=tcp:0.0.0.0:{ssh_port}-:22"
        argv += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=n{i}"]
    return argv
