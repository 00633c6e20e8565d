"""Debian's 6.1 kernel for the lab VM: downloaded as a package, unpacked, never installed.

`apt-get download linux-image-<ver>` + `dpkg -x` into `<cache>/kernel/<ver>/root`, then `depmod -b` so the
module closure for the initramfs can be read from modules.dep. The version is the newest 6.1 ABI that
`apt-cache` knows for the running Debian 12 suite (or $SANLAB_KERNEL).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.vm.cache import build_once, cache_root

#: Debian 12's kernel series; the ABI number (6.1.0-NN) changes with each point release.
KERNEL_SERIES = "6.1.0"
_VERSION_RE = re.compile(rf"^linux-image-({re.escape(KERNEL_SERIES)}-(\d+)-amd64)\s")
_CMD_TIMEOUT_S = 600

Log = Callable[[str], None]


class KernelError(RuntimeError):
    """The kernel package could not be found, downloaded or unpacked."""


@dataclass(frozen=True)
class KernelImage:
    version: str  # e.g. "6.1.0-56-amd64"
    root: Path  # the unpacked package (boot/, lib/modules/<version>/)

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.version


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelError(f"{' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise KernelError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def parse_versions(apt_cache_output: str) -> list[str]:
    """Kernel versions from `apt-cache search` output, oldest ABI first (amd64 flavour only)."""
    found: dict[str, int] = {}
    for line in apt_cache_output.splitlines():
        m = _VERSION_RE.match(line)
        if m:
            found[m.group(1)] = int(m.group(2))
    return sorted(found, key=found.__getitem__)


def available_versions() -> list[str]:
    out = _run(
        ["apt-cache", "search", "--names-only", rf"^linux-image-{re.escape(KERNEL_SERIES)}-[0-9]+-amd64$"]
    )
    return parse_versions(out)


def _cached_versions(kernel_dir: Path) -> list[str]:
    if not kernel_dir.is_dir():
        return []
    names = [p.name for p in kernel_dir.iterdir() if (p / "root").is_dir()]
    return parse_versions("".join(f"linux-image-{n} x\n" for n in names))


def choose_version(log: Log = print) -> str:
    """$SANLAB_KERNEL, else the newest 6.1 ABI apt knows; apt lists are refreshed once if empty; a cached
    kernel is used when apt knows none (offline machine)."""
    pinned = os.environ.get("SANLAB_KERNEL")
    if pinned:
        return pinned
    versions = available_versions()
    if not versions:
        cached = _cached_versions(cache_root() / "kernel")
        if cached:
            return cached[-1]
        log("kernel: apt-cache knows no linux-image-6.1 package; running apt-get update once")
        _run(["apt-get", "update", "-qq"])
        versions = available_versions()
    if not versions:
        raise KernelError("no linux-image-6.1.0-NN-amd64 package is known to apt")
    return versions[-1]


def fetch_kernel(version: str | None = None, *, log: Log = print) -> KernelImage:
    """Return the unpacked kernel `version` (default: `choose_version()`), downloading it on first use."""
    ver = version or choose_version(log)
    dest = cache_root() / "kernel" / ver

    def build(tmp: Path) -> None:
        log(f"kernel: downloading linux-image-{ver}")
        _run(["apt-get", "download", f"linux-image-{ver}"], cwd=tmp)
        debs = sorted(tmp.glob(f"linux-image-{ver}_*.deb"))
        if not debs:
            raise KernelError(f"apt-get download left no linux-image-{ver} .deb")
        log(f"kernel: unpacking {debs[0].name}")
        _run(["dpkg", "-x", str(debs[0]), str(tmp / "root")])
        _run(["depmod", "-b", str(tmp / "root"), ver])
        debs[0].unlink()

    build_once(dest, build)
    image = KernelImage(version=ver, root=dest / "root")
    if not image.vmlinuz.is_file() or not (image.modules_dir / "modules.dep").is_file():
        raise KernelError(f"cached kernel {dest} is incomplete; remove it and retry")
    log(f"kernel: {ver} at {image.root}")
    return image
