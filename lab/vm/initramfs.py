"""A busybox initramfs that turns the lab VM into a Linux kernel iSCSI initiator.

Contents: the host's busybox-static (with every applet linked), open-iscsi's iscsid/iscsiadm, sg3-utils,
sfdisk/fdisk, mkfs.ext4, optional multipath-tools and udevadm, the shared libraries those need (from `ldd`),
the kernel modules in `MODULES` plus their modules.dep closure, a deterministic pseudo-random data pattern
(`/pattern.bin`, see `pattern_bytes()`) and `/init` = lab/vm/guest_init.sh, which reads its job from the
kernel command line (see that file's header).

The image is cached under `<cache>/initramfs/<key>/initrd.img`; the key hashes every input (this file, the
init script, the kernel version, each copied host file's path, size and mtime).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from lab.vm.cache import build_once, cache_root
from lab.vm.kernel import KernelImage

Log = Callable[[str], None]

GUEST_INIT = Path(__file__).with_name("guest_init.sh")
#: the multipath / persistent reservation jobs (sourced by guest_init.sh)
MULTIPATH_JOB = Path(__file__).with_name("multipath_job.sh")

#: Kernel modules the guest loads (names as in modules.dep, '-' and '_' equivalent). Their dependencies
#: are added from modules.dep.
MODULES: tuple[str, ...] = (
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "crc32c_generic",
    "crc32c-intel",
    "scsi_transport_iscsi",
    "libiscsi",
    "libiscsi_tcp",
    "iscsi_tcp",
    "sd_mod",
    "sg",
    "ext4",
    "dm-mod",
    "dm-multipath",
    "dm-round-robin",
    "dm-service-time",
    "scsi_dh_alua",
    "sch_netem",
)

#: Host programs copied with their libraries; a missing required one is an error, a missing optional one
#: is skipped (the guest script checks for it).
REQUIRED_PROGRAMS: tuple[str, ...] = (
    "iscsid",
    "iscsiadm",
    "sg_inq",
    "sg_readcap",
    "sg_vpd",
    "sg_turs",
    "sfdisk",
    "mke2fs",
    "mkfs.ext4",
)
OPTIONAL_PROGRAMS: tuple[str, ...] = (
    "fdisk",
    "udevadm",
    "multipath",
    "multipathd",
    "dmsetup",
    "kpartx",
    "sg_persist",
    "sg_rtpg",
    "sg_stpg",
    "mpathpersist",
)
#: Host data files copied as they are when present.
HOST_FILES: tuple[str, ...] = ("/etc/mke2fs.conf", "/etc/iscsi/iscsid.conf")
#: glibc dlopens libgcc_s for pthread_cancel (multipathd); ldd does not list it.
EXTRA_LIBS: tuple[str, ...] = ("/lib/x86_64-linux-gnu/libgcc_s.so.1",)

PATTERN_SIZE = 4 * 1024 * 1024
PATTERN_SEED = "sanlab-vm-pattern-v1"

_LDD_PATH_RE = re.compile(r"(/\S+)")


class InitramfsError(RuntimeError):
    """The initramfs could not be built (a required host program or module is missing)."""


def pattern_bytes(size: int = PATTERN_SIZE) -> bytes:
    """The guest's /pattern.bin: deterministic pseudo-random bytes, so the host can check what landed."""
    return random.Random(PATTERN_SEED).randbytes(size)


def _find_program(name: str) -> Path | None:
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    found = shutil.which(name)
    return Path(found) if found else None


def _library_closure(binary: Path) -> list[Path]:
    """Shared libraries `binary` loads, as `ldd` resolves them (absolute paths; vdso excluded)."""
    try:
        out = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    libs = []
    for line in out.splitlines():
        m = _LDD_PATH_RE.search(line.split("=>")[-1])
        if m and Path(m.group(1)).exists():
            libs.append(Path(m.group(1)))
    return libs


def module_closure(modules_dep: str, wanted: Iterable[str]) -> tuple[list[str], list[str]]:
    """Relative .ko paths for `wanted` module names and everything they depend on (modules.dep format:
    `path.ko: dep1.ko dep2.ko`); returns (paths sorted, names not found). Built-in modules are not listed in
    modules.dep, so a name missing here may just be built in: the caller decides."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        path = path.strip()
        deps[path] = rest.split()
        base = Path(path).name.split(".ko")[0].replace("-", "_")
        by_name[base] = path
    result: set[str] = set()
    missing: list[str] = []
    for name in wanted:
        found = by_name.get(name.replace("-", "_"))
        if found is None:
            missing.append(name)
            continue
        stack = [found]
        while stack:
            p = stack.pop()
            if p not in result:
                result.add(p)
                stack.extend(deps.get(p, []))
    return sorted(result), missing


def _host_inputs() -> tuple[list[Path], list[Path], list[str]]:
    """(programs, data files, missing required program names)."""
    programs: list[Path] = []
    missing: list[str] = []
    for name in REQUIRED_PROGRAMS:
        p = _find_program(name)
        if p is None:
            missing.append(name)
        else:
            programs.append(p)
    for name in OPTIONAL_PROGRAMS:
        p = _find_program(name)
        if p is not None:
            programs.append(p)
    files = [Path(f) for f in (*HOST_FILES, *EXTRA_LIBS) if Path(f).is_file()]
    return programs, files, missing


def _busybox() -> Path:
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(cand).is_file():
            return Path(cand)
    raise InitramfsError("busybox not found (Debian package busybox-static)")


def cache_key(kernel: KernelImage) -> str:
    programs, files, _ = _host_inputs()
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(GUEST_INIT.read_bytes())
    h.update(MULTIPATH_JOB.read_bytes())
    h.update(kernel.version.encode())
    h.update(repr(MODULES).encode())
    for p in [_busybox(), *programs, *files]:
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def _copy(src: Path, stage: Path, dest: Path | None = None) -> None:
    target = stage / (dest or src).relative_to("/")
    if target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.resolve(), target)


def _stage(stage: Path, kernel: KernelImage, log: Log) -> None:
    programs, files, missing = _host_inputs()
    if missing:
        raise InitramfsError(f"host programs missing: {', '.join(missing)}")
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/iscsi",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "mnt",
        "root",
        "var/lib/iscsi",
        "var/lock",
        "lib/x86_64-linux-gnu",
        "lib64",
    ):
        (stage / d).mkdir(parents=True, exist_ok=True)
    (stage / "var" / "run").symlink_to("../run")

    busybox = _busybox()
    shutil.copy2(busybox, stage / "bin" / "busybox")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    for applet in applets:
        link = stage / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")

    libs: set[Path] = set()
    for prog in programs:
        _copy(prog, stage)
        libs.update(_library_closure(prog))
    for f in files:
        _copy(f, stage)
        if f.suffix.startswith(".so") or ".so." in f.name:
            libs.update(_library_closure(f))
    for lib in sorted(libs):
        _copy(lib, stage)
    log(f"initramfs: {len(programs)} programs, {len(libs)} libraries")

    dep = (kernel.modules_dir / "modules.dep").read_text()
    paths, not_found = module_closure(dep, MODULES)
    builtin = (
        (kernel.modules_dir / "modules.builtin").read_text()
        if (kernel.modules_dir / "modules.builtin").exists()
        else ""
    )
    builtin_names = {Path(line).name.split(".ko")[0].replace("-", "_") for line in builtin.split()}
    really_missing = [m for m in not_found if m.replace("-", "_") not in builtin_names]
    if really_missing:
        log(f"initramfs: modules not in this kernel (skipped): {', '.join(really_missing)}")
    mod_root = stage / "lib" / "modules" / kernel.version
    for rel in paths:
        dst = mod_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules_dir / rel, dst)
    for extra in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (kernel.modules_dir / extra).exists():
            shutil.copy2(kernel.modules_dir / extra, mod_root / extra)
    subprocess.run(["depmod", "-b", str(stage), kernel.version], check=True, timeout=120, capture_output=True)
    log(f"initramfs: {len(paths)} kernel modules")

    (stage / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (stage / "etc" / "group").write_text("root:x:0:\ndisk:x:6:\n")
    (stage / "etc" / "iscsi" / "initiatorname.iscsi").write_text(
        "InitiatorName=iqn.2026-11.org.example:labvm\n"
    )
    (stage / "pattern.bin").write_bytes(pattern_bytes())
    init = stage / "init"
    shutil.copy2(GUEST_INIT, init)
    init.chmod(0o755)
    job = stage / "multipath_job.sh"
    shutil.copy2(MULTIPATH_JOB, job)
    job.chmod(0o755)
    _stage_multipath(stage)


#: multipath-tools loads its checker/prioritizer plugins from here (dlopen: ldd does not list them)
_MULTIPATH_PLUGINS = (
    "libcheckdirectio.so",
    "libchecktur.so",
    "libprioalua.so",
    "libprioconst.so",
    "libpriosysfs.so",
)


def _stage_multipath(stage: Path) -> None:
    """multipath-tools' plugins and their libraries; /etc/multipath is created (bindings, wwids)."""
    (stage / "etc" / "multipath").mkdir(parents=True, exist_ok=True)
    for d in (Path("/lib/multipath"), Path("/usr/lib/multipath"), Path("/lib/x86_64-linux-gnu/multipath")):
        if not d.is_dir():
            continue
        for name in _MULTIPATH_PLUGINS:
            src = d / name
            if src.is_file():
                _copy(src, stage)
                for lib in _library_closure(src):
                    _copy(lib, stage)


def _write_cpio(stage: Path, out: Path) -> None:
    """newc cpio of `stage` (sorted, so the archive is reproducible), gzip level 1."""
    names = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    proc = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "--reproducible"],
        input=("\n".join([".", *names]) + "\n").encode(),
        cwd=stage,
        capture_output=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise InitramfsError(f"cpio failed: {proc.stderr.decode(errors='replace')[-1000:]}")
    with gzip.open(out, "wb", compresslevel=1) as gz:
        gz.write(proc.stdout)


def build_initramfs(kernel: KernelImage, *, log: Log = print) -> Path:
    """Return the path of the initramfs for `kernel`, building it if its inputs changed."""
    key = cache_key(kernel)
    dest = cache_root() / "initramfs" / key

    def build(tmp: Path) -> None:
        log(f"initramfs: building {key} for {kernel.version}")
        stage = tmp / "stage"
        stage.mkdir()
        _stage(stage, kernel, log)
        _write_cpio(stage, tmp / "initrd.img")
        shutil.rmtree(stage)
        log(f"initramfs: {(tmp / 'initrd.img').stat().st_size // 1024} KiB")

    build_once(dest, build)
    return dest / "initrd.img"
