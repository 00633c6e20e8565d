"""Topology -> Ansible inventory (YAML) with the group and host variables the roles in playbooks/roles/ read.

Pure: `render_inventory(topo, images, run_dir)` returns the inventory as a dict; `write_inventory` writes it
(mode 0600: it carries CHAP secrets) beside the run's other files. Groups:

    lab_control        localhost: creates networks and containers (community.docker modules)
    targets            target nodes (containers; `ansible_connection: community.docker.docker`)
    linux_initiators   Linux kernel initiators: VMs reached over SSH on their runner container's mgmt address
    libiscsi_initiators, qemu_initiators, ipxe_initiators   containers (docker connection)
    vm_runners         the qemu-runner containers that host the VMs (docker connection)

Only the docker names and addresses are lab-specific: the role variables (`iscsi_target_*`, `iscsi_*`) are the
same ones a real host sets in its own inventory (docs/lab.md has that example).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.topology.model import InitiatorKind, InitiatorNode, TargetKind, TargetNode, Topology
from lab.topology.target_config import LUN_DIR, saveconfig, tgt_conf

LABEL = "org.sanlab.lab"  # every network and container the lab creates carries LABEL=<lab name>
SSH_PORT = 2222  # slirp hostfwd on the runner container's addresses -> guest port 22
VM_MEMORY_MIB = 768
#: iscsid.conf timers for lab initiators (lab-facts: the stall after a path cut is bounded by these)
ISCSI_TIMERS = {"replacement_timeout": 5, "noop_out_interval": 2, "noop_out_timeout": 2}

_GROUP_OF_KIND = {
    InitiatorKind.LINUX_VM: "linux_initiators",
    InitiatorKind.LIBISCSI: "libiscsi_initiators",
    InitiatorKind.QEMU_DRIVER: "qemu_initiators",
    InitiatorKind.IPXE: "ipxe_initiators",
}


@dataclass(frozen=True)
class ImageInfo:
    """What rendering needs to know about one built image (see `lab.drivers.images.image_info`)."""

    tag: str
    kernel: str = ""  # VM images: host paths of the kernel, initrd (and root disk), SSH key
    initrd: str = ""
    rootfs: str = ""
    ssh_key: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    #: VM images: the qemu command line (inside the qemu-runner container) that boots this VM
    vm_command: tuple[str, ...] = ()
    #: VM images: bind mounts ("host:container:ro") the runner container needs for `vm_command`
    mounts: tuple[str, ...] = ()


def lab_prefix(topo: Topology) -> str:
    return f"sanlab-{topo.name}"


def container_name(topo: Topology, node: str) -> str:
    return f"{lab_prefix(topo)}-{node}"


def network_name(topo: Topology, net: str) -> str:
    return f"{lab_prefix(topo)}-{net}"


def volume_name(topo: Topology, volume: str) -> str:
    return f"{lab_prefix(topo)}-{volume}"


def image_key(topo: Topology, node: str) -> str:
    """Which image (name as `lab.images.build.ensure_image` knows it) the node's container runs."""
    for t in topo.targets:
        if t.name == node:
            return "target"
    for i in topo.initiators:
        if i.name == node:
            if i.kind is InitiatorKind.LIBISCSI:
                return "libiscsi"
            return "qemu-runner"
    raise KeyError(node)


def vm_image_key(ini: InitiatorNode) -> str:
    assert ini.release is not None
    return f"linux-{ini.release.value}"


def images_needed(topo: Topology) -> list[str]:
    """Image names the topology needs, sorted (containers first, then VM images)."""
    names = {
        image_key(topo, n) for n in [*(t.name for t in topo.targets), *(i.name for i in topo.initiators)]
    }
    vms = {vm_image_key(i) for i in topo.initiators if i.kind is InitiatorKind.LINUX_VM}
    return sorted(names) + sorted(vms)


def _container(
    topo: Topology, node: str, images: Mapping[str, ImageInfo], command: list[str]
) -> dict[str, Any]:
    nets = topo.node_networks(node)
    return {
        "name": container_name(topo, node),
        "node": node,
        "image": images[image_key(topo, node)].tag,
        "command": command,
        "networks": [{"name": network_name(topo, n), "ipv4_address": topo.address(node, n)} for n in nets],
    }


def _target_vars(topo: Topology, t: TargetNode) -> dict[str, Any]:
    return {
        "ansible_connection": "community.docker.docker",
        "ansible_host": container_name(topo, t.name),
        "ansible_python_interpreter": "/usr/bin/python3",
        "iscsi_target_kind": t.kind.value,
        "iscsi_target_iqn": t.iqn,
        "iscsi_target_lun_dir": LUN_DIR,
        "iscsi_target_luns": [{"name": lu.name, "index": lu.index, "size": lu.size} for lu in t.luns],
        "iscsi_target_portals": [{"ip": topo.address(t.name, n), "port": t.port} for n in t.portals],
        "iscsi_target_saveconfig": saveconfig(topo, t) if t.kind is TargetKind.SANLAB else {},
        "iscsi_target_tgt_conf": tgt_conf(topo, t) if t.kind is TargetKind.TGT else "",
    }


def _initiator_vars(topo: Topology, ini: InitiatorNode) -> dict[str, Any]:
    chap = topo.chap_for(ini)
    tgt = topo.target(ini.target)
    return {
        "iscsi_initiator_name": ini.iqn,
        "iscsi_target_iqn": tgt.iqn,
        "iscsi_lun": topo.lun_number(ini),
        "iscsi_portals": [{"ip": ip, "port": port} for ip, port in topo.portal_addresses(ini)],
        "iscsi_chap": (
            {
                "userid": chap.userid,
                "password": chap.password,
                "mutual_userid": chap.mutual_userid,
                "mutual_password": chap.mutual_password,
            }
            if chap is not None
            else {}
        ),
        "iscsi_multipath": len(ini.paths) > 1,
        "iscsi_timers": dict(ISCSI_TIMERS),
        "lab_initiator_kind": ini.kind.value,
    }


def render_inventory(topo: Topology, images: Mapping[str, ImageInfo], run_dir: Path) -> dict[str, Any]:
    """The Ansible inventory (YAML-ready dict) that realises `topo`. `images` maps image names to built images."""
    mgmt = topo.mgmt()
    containers: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {
        g: {"hosts": {}}
        for g in (
            "targets",
            "linux_initiators",
            "libiscsi_initiators",
            "qemu_initiators",
            "ipxe_initiators",
            "vm_runners",
        )
    }
    volumes: list[str] = []
    for t in topo.targets:
        c = _container(topo, t.name, images, ["sleep", "infinity"])
        if (vol := topo.shared_volume(t.name)) is not None:
            # an HA set's nodes share the LUN files: one docker volume mounted in each node's container
            c["volumes"] = [f"{volume_name(topo, vol)}:{LUN_DIR}"]
            if volume_name(topo, vol) not in volumes:
                volumes.append(volume_name(topo, vol))
        containers.append(c)
        groups["targets"]["hosts"][t.name] = _target_vars(topo, t)
    for ini in topo.initiators:
        group = _GROUP_OF_KIND[ini.kind]
        hv = _initiator_vars(topo, ini)
        if ini.kind is InitiatorKind.LINUX_VM:
            vm = images.get(f"{vm_image_key(ini)}@{ini.name}") or images[vm_image_key(ini)]
            runner = f"{ini.name}-runner"
            c = _container(topo, ini.name, images, list(vm.vm_command) or ["sleep", "infinity"])
            c["name"] = container_name(topo, runner)
            c["vm"] = {"kernel": vm.kernel, "initrd": vm.initrd, "rootfs": vm.rootfs}
            c["volumes"] = list(vm.mounts)
            containers.append(c)
            assert mgmt is not None  # validated: a linux-vm topology has a mgmt network
            groups["vm_runners"]["hosts"][runner] = {
                "ansible_connection": "community.docker.docker",
                "ansible_host": c["name"],
                "lab_vm": ini.name,
            }
            hv.update(
                ansible_host=topo.address(ini.name, mgmt.name),
                ansible_port=SSH_PORT,
                ansible_user="root",
                ansible_ssh_private_key_file=vm.ssh_key,
                ansible_ssh_common_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                ansible_python_interpreter="/usr/bin/python3",
                lab_release=ini.release.value if ini.release else "",
                lab_runner=c["name"],
            )
        else:
            containers.append(_container(topo, ini.name, images, ["sleep", "infinity"]))
            hv.update(
                ansible_connection="community.docker.docker",
                ansible_host=container_name(topo, ini.name),
                ansible_python_interpreter="/usr/bin/python3",
            )
        groups[group]["hosts"][ini.name] = hv
    lab_vars = {
        "lab_name": topo.name,
        "lab_label": LABEL,
        "lab_run_dir": str(run_dir),
        "lab_networks": [
            {
                "name": network_name(topo, n.name),
                "role": n.role.value,
                "subnet": str(n.subnet),
                "gateway": str(n.subnet.network_address + 1),
            }
            for n in topo.networks
        ],
        "lab_containers": containers,
        "lab_volumes": volumes,
    }
    return {
        "all": {
            "vars": lab_vars,
            "children": {
                "lab_control": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                },
                "initiators": {
                    "children": {
                        g: groups[g]
                        for g in (
                            "linux_initiators",
                            "libiscsi_initiators",
                            "qemu_initiators",
                            "ipxe_initiators",
                        )
                    }
                },
                "targets": groups["targets"],
                "vm_runners": groups["vm_runners"],
            },
        }
    }


def write_inventory(inventory: Mapping[str, Any], path: Path) -> Path:
    """Write the inventory YAML (0600: it holds CHAP secrets and key paths)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(dict(inventory), f, sort_keys=False, default_flow_style=False)
    return path


def hosts_of(inventory: Mapping[str, Any], group: str) -> dict[str, dict[str, Any]]:
    """Hosts (name -> vars) of a group anywhere in the inventory tree, its child groups included."""

    def all_hosts(node: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        found = dict(node.get("hosts") or {})
        for child in (node.get("children") or {}).values():
            found.update(all_hosts(child))
        return found

    def find(node: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
        if name == group:
            return node
        for child_name, child in (node.get("children") or {}).items():
            if (hit := find(child, child_name)) is not None:
                return hit
        return None

    node = find(inventory["all"], "all")
    return all_hosts(node) if node is not None else {}
