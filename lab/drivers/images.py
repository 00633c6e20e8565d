"""Adapter to the images team's API (`lab.images`): ensure the images a topology needs, as `ImageInfo`.

`lab.images.build.ensure_image(name) -> ImageRef` builds (or finds, by recipe hash) an image;
`lab.images.vm.vm_command(ref, nics=..., memory_mib=..., ssh_port=..., extra_cmdline=...)` is the qemu
command a runner container runs for a VM image. Attribute names of ImageRef are read defensively.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from lab.inventory import SSH_PORT, VM_MEMORY_MIB, ImageInfo, images_needed, vm_image_key
from lab.topology.model import InitiatorKind, Topology


class ImagesUnavailable(RuntimeError):
    pass


def _attr(ref: Any, *names: str) -> Any:
    for n in names:
        v = getattr(ref, n, None)
        if v:
            return v
    return None


def image_info(ref: Any, vm_command: tuple[str, ...] = ()) -> ImageInfo:
    versions = _attr(ref, "versions", "package_versions") or {}
    mounts = _attr(ref, "mounts", "volumes") or ()
    return ImageInfo(
        tag=str(_attr(ref, "tag", "name", "image") or ""),
        kernel=str(_attr(ref, "kernel", "kernel_path") or ""),
        initrd=str(_attr(ref, "initrd", "initrd_path") or ""),
        rootfs=str(_attr(ref, "rootfs", "disk", "rootfs_path") or ""),
        ssh_key=str(_attr(ref, "ssh_key", "ssh_private_key", "key") or ""),
        versions={str(k): str(v) for k, v in dict(versions).items()},
        vm_command=tuple(vm_command),
        mounts=tuple(str(m) for m in mounts),
    )


def ensure_images(topo: Topology, progress: Callable[[str], None] = lambda _: None) -> dict[str, ImageInfo]:
    """Build or find every image the topology needs; VM images come with their runner command."""
    try:
        build = importlib.import_module("lab.images.build")
        vm = importlib.import_module("lab.images.vm")
    except ImportError as e:
        raise ImagesUnavailable(f"lab.images is not available: {e}") from e
    refs: dict[str, Any] = {}
    for name in images_needed(topo):
        progress(f"image {name}")
        refs[name] = build.ensure_image(name)
    out: dict[str, ImageInfo] = {k: image_info(v) for k, v in refs.items()}
    mgmt = topo.mgmt()
    for ini in topo.initiators:
        if ini.kind is not InitiatorKind.LINUX_VM:
            continue
        key = vm_image_key(ini)
        nics = [
            {"network": p, "subnet": str(topo.network(p).subnet), "address": topo.address(ini.name, p)}
            for p in ini.paths
        ]
        cmd = vm.vm_command(
            refs[key],
            nics=nics,
            memory_mib=VM_MEMORY_MIB,
            ssh_port=SSH_PORT,
            extra_cmdline="",
            hostname=ini.name,
            initiator_iqn=ini.iqn,
        )
        info = image_info(refs[key], tuple(cmd))
        if mgmt is None:
            raise ImagesUnavailable("a linux-vm needs a mgmt network")
        out[f"{key}@{ini.name}"] = info
        out[key] = info
    return out


def versions_of(images: Mapping[str, ImageInfo], key: str) -> dict[str, str]:
    info = images.get(key)
    return dict(info.versions) if info else {}
