"""Build the lab's images offline from Debian suites, cached by recipe hash.

Container images: `mmdebstrap --variant=minbase` -> tar -> `docker import` as `sanlab/<name>:<hash12>`, also
tagged `sanlab/<name>:latest`; no registry is involved (none is reachable). VM images: mmdebstrap into a
directory, the suite's kernel unpacked into it (never installed on the host), then packed as files in
`<cache>/images/<name>/<hash12>/`:

    vmlinuz       the suite's kernel
    initrd.img    a small busybox initramfs: loads virtio/ext4 modules, mounts the root disk, switch_root
    rootfs.img    ext4 root file system (raw, sparse); VMs open it with snapshot=on, so one file serves many
    image.json    the ImageRef (versions of the key packages, kernel, sizes, build time)

Each image records the package versions it was built with (`packages.tsv` + `image.json`), so drills can list
the initiator's versions. Build steps show progress (rich on a terminal, plain log lines otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.images.recipe import (
    ImageKind,
    Recipe,
    find_recipe,
    hash_files,
    images_dir,
    parse_dpkg_query,
    recipe_hash,
)
from lab.images.sshkey import ensure_lab_key, public_key_fingerprint, public_key_text
from lab.vm.cache import cache_root

Log = Callable[[str], None]

MIRROR = "http://deb.debian.org/debian"
REPOSITORY = "sanlab"
#: where `project: true` images install the project (a venv; `sanlab` is also linked into /usr/local/bin)
PROJECT_VENV = "/opt/sanlab"
MMDEBSTRAP_TIMEOUT_S = 1800
STEP_TIMEOUT_S = 900
#: a leftover build folder older than this is from a dead build (prune removes it)
_BUILD_STALE_S = 2 * 3600
#: modules the VM initramfs loads to reach its root disk (their modules.dep closure is included)
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")
#: the project's runtime dependencies that only the lab orchestrator uses: left out of the target image
#: (everything else in pyproject's `dependencies` goes in, so a new target dependency needs no change here)
LAB_ONLY_DEPS = frozenset({"docker", "ansible", "ansible-core", "pytest-testinfra", "matplotlib"})
#: commands run inside the chroot see none of the host's environment (PIP_*, proxies, ...)
_CLEAN_ENV = (
    "env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8"
)
_DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")


class ImageBuildError(RuntimeError):
    """A build step failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class ReleaseInfo:
    suite: str  # bookworm
    release: str  # "12"
    debian_version: str  # /etc/debian_version, e.g. "12.11"
    kernel: str | None = None  # VM images: kernel version (uname -r), e.g. "6.1.0-50-amd64"
    packages: dict[str, str] = field(default_factory=dict)  # the recipe's `versions` packages -> version


@dataclass(frozen=True)
class ImageRef:
    name: str
    kind: ImageKind
    hash: str  # full sha256 of the recipe inputs
    release: ReleaseInfo
    tag: str | None = None  # container: sanlab/<name>:<hash12>
    kernel: Path | None = None  # vm
    initrd: Path | None = None  # vm
    disk: Path | None = None  # vm: raw ext4 root disk (open with snapshot=on)
    ssh_key: Path | None = None  # vm: private key that logs in as root
    built_at: str = ""  # ISO 8601 UTC
    build_seconds: float = 0.0
    size_bytes: int = 0  # container: docker image size; vm: bytes allocated by the files

    @property
    def hash12(self) -> str:
        return self.hash[:12]

    @property
    def directory(self) -> Path | None:
        """VM images: the folder that holds kernel, initrd and disk (bind-mount it into the runner)."""
        return self.kernel.parent if self.kernel is not None else None

    @property
    def versions(self) -> dict[str, str]:
        """Flat versions for reports: debian, kernel (VMs) and the recipe's recorded packages."""
        out = {"debian": self.release.debian_version}
        if self.release.kernel:
            out["kernel"] = self.release.kernel
        out.update(self.release.packages)
        return out

    @property
    def mounts(self) -> tuple[str, ...]:
        """VM images: the runner container's bind mount, "host:container:ro" (docker -v syntax)."""
        d = self.directory
        return () if d is None else (f"{d}:/images/{self.name}:ro",)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kind"] = self.kind.value
        for k in ("kernel", "initrd", "disk", "ssh_key"):
            d[k] = None if d[k] is None else str(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageRef:
        rel = d["release"]
        return cls(
            name=d["name"],
            kind=ImageKind(d["kind"]),
            hash=d["hash"],
            release=ReleaseInfo(
                suite=rel["suite"],
                release=rel["release"],
                debian_version=rel.get("debian_version", ""),
                kernel=rel.get("kernel"),
                packages=dict(rel.get("packages", {})),
            ),
            tag=d.get("tag"),
            kernel=_opt_path(d.get("kernel")),
            initrd=_opt_path(d.get("initrd")),
            disk=_opt_path(d.get("disk")),
            ssh_key=_opt_path(d.get("ssh_key")),
            built_at=d.get("built_at", ""),
            build_seconds=float(d.get("build_seconds", 0.0)),
            size_bytes=int(d.get("size_bytes", 0)),
        )


def _opt_path(v: Any) -> Path | None:
    return None if v in (None, "") else Path(v)


# --------------------------------------------------------------------------------------------- cache layout


def images_cache() -> Path:
    return cache_root() / "images"


def image_dir(name: str, hash_: str) -> Path:
    return images_cache() / name / hash_[:12]


def container_tag(name: str, hash_: str) -> str:
    return f"{REPOSITORY}/{name}:{hash_[:12]}"


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def project_hash(root: Path | None = None) -> str:
    """Hash of what the target image installs: pyproject.toml and the `target` package (code and data)."""
    r = root or project_root()
    files = [r / "pyproject.toml"]
    files += [
        p
        for p in (r / "target").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json", ".typed")
    ]
    return hash_files(files, r)


def image_hash(recipe: Recipe) -> str:
    """The recipe's cache key, including the project source (project: true) and the lab key (VMs)."""
    extra: dict[str, str] = {}
    if recipe.project:
        extra["project"] = project_hash()
    if recipe.kind is ImageKind.VM:
        extra["ssh_key"] = public_key_fingerprint()
        extra["initramfs_modules"] = ",".join(INITRAMFS_MODULES)
    return recipe_hash(recipe, extra=extra)


# --------------------------------------------------------------------------------------------- progress


class _Progress:
    """One line per step in the log; on a terminal, a rich spinner showing the running step's last line."""

    def __init__(self, name: str, log: Log) -> None:
        self.name = name
        self.log = log
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self._status: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status(f"[{name}] starting", spinner="dots")
            self._status.start()

    def update(self, step: str, line: str) -> None:
        if self._status is not None:
            elapsed = time.monotonic() - self.t0
            self._status.update(f"[{self.name}] {step} ({elapsed:.0f} s): {line[:90]}")

    @contextlib.contextmanager
    def step(self, step: str) -> Iterator[None]:
        self.log(f"images: [{self.name}] {step} ...")
        self.update(step, "")
        t = time.monotonic()
        yield
        self.timings[step] = round(time.monotonic() - t, 1)
        self.log(f"images: [{self.name}] {step}: {self.timings[step]:.1f} s")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _run(
    cmd: list[str],
    *,
    progress: _Progress | None = None,
    step: str = "",
    timeout_s: float = STEP_TIMEOUT_S,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run `cmd`, streaming its merged output into the progress line; bounded by `timeout_s`.
    Returns stdout+stderr; raises ImageBuildError with the output's tail on failure or timeout."""
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise ImageBuildError(f"cannot run {cmd[0]}: {exc}") from exc
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            tail.append(line)
            if progress is not None and line.strip():
                progress.update(step, line.strip())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        t.join(timeout=5)
        raise ImageBuildError(
            f"{shlex.join(cmd[:3])} ... timed out after {timeout_s:.0f} s:\n" + "\n".join(tail)
        ) from None
    t.join(timeout=30)
    if rc != 0:
        raise ImageBuildError(f"{shlex.join(cmd[:3])} ... exited {rc}:\n" + "\n".join(tail))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- mmdebstrap


def mmdebstrap_command(
    recipe: Recipe,
    output: Path,
    *,
    files_dir: Path,
    record_dir: Path,
    mirror: str = MIRROR,
) -> list[str]:
    """The mmdebstrap command line that builds `recipe` into `output` (a .tar or a directory).

    Customize hooks (in order): copy the recipe's files in; VM extras (the lab SSH key, the kernel downloaded
    and unpacked into /sanlab-kernel); the recipe's own hooks; then record `dpkg-query` versions and
    /etc/debian_version into `record_dir`. `project: true` images get the project later (`_project_layer`).
    """
    cmd = [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root" if os.geteuid() == 0 else "--mode=unshare",
        f"--include={','.join(recipe.packages)}",
        '--aptopt=APT::Install-Recommends "false"',
        '--aptopt=Acquire::Retries "3"',
        *(f"--dpkgopt=path-exclude={p}" for p in _DPKG_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    ]
    hooks: list[str] = []
    for f in recipe.files:
        src = files_dir / f.src
        hooks.append(f'mkdir -p "$1{Path(f.dest).parent}"')
        hooks.append(f'cp {shlex.quote(str(src))} "$1{f.dest}" && chmod {f.mode:o} "$1{f.dest}"')
    if recipe.kind is ImageKind.VM:
        assert recipe.kernel is not None
        pub = public_key_text()
        hooks.append(
            'mkdir -p "$1/root/.ssh" && chmod 700 "$1/root/.ssh" && '
            f'echo {shlex.quote(pub)} > "$1/root/.ssh/authorized_keys" && chmod 600 "$1/root/.ssh/authorized_keys"'
        )
        # the kernel is downloaded and unpacked inside the chroot at /sanlab-kernel (never installed: no
        # initramfs-tools; and dpkg -x onto / would replace merged-/usr symlinks); _place_kernel moves it after
        kernel = (
            f"pkg=$(apt-cache depends {recipe.kernel.package} | "
            "sed -n 's/^ *Depends: \\(linux-image-[0-9][^ ]*\\)$/\\1/p' | head -n 1); "
            '[ -n "$pkg" ]; cd /tmp; apt-get -q -o APT::Sandbox::User=root download "$pkg"; '
            'dpkg -x /tmp/linux-image-*.deb /sanlab-kernel; rm -f /tmp/linux-image-*.deb; echo "kernel package $pkg"'
        )
        hooks.append(f'chroot "$1" {_CLEAN_ENV} sh -ec {shlex.quote(kernel)}')
    for h in recipe.hooks:
        hooks.append(f'chroot "$1" {_CLEAN_ENV} sh -ec {shlex.quote(h)}')
    rec = shlex.quote(str(record_dir))
    hooks.append(f"chroot \"$1\" dpkg-query -W -f '${{Package}}\\t${{Version}}\\n' > {rec}/packages.tsv")
    hooks.append(f'cp "$1/etc/debian_version" {rec}/debian_version')
    cmd += [f"--customize-hook={h}" for h in hooks]
    cmd += [recipe.suite, str(output), mirror]
    return cmd


# --------------------------------------------------------------------------------------------- wheels


def _pinned_runtime_requirements(root: Path) -> list[str]:
    """The target's runtime requirements, pinned as in pyproject.toml (all but LAB_ONLY_DEPS)."""
    import tomllib

    deps: list[str] = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    keep = []
    for d in deps:
        name = re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].strip().lower().replace("_", "-")
        if name not in LAB_ONLY_DEPS:
            keep.append(d)
    return keep


def build_wheels(dest: Path, progress: _Progress) -> None:
    """The project wheel (the working tree) plus its target runtime dependencies, into `dest`."""
    root = project_root()
    pip = [sys.executable, "-m", "pip"]
    dest.mkdir(parents=True, exist_ok=True)
    with progress.step("wheel of the working tree"):
        _run([*pip, "wheel", "-q", "--no-deps", "-w", str(dest), str(root)], progress=progress, step="wheel")
    reqs = _pinned_runtime_requirements(root)
    with progress.step(f"runtime wheels ({', '.join(r.split('=')[0] for r in reqs)})"):
        wheel_cache = cache_root() / "wheels"
        wheel_cache.mkdir(parents=True, exist_ok=True)
        _run(
            [*pip, "download", "-q", "--only-binary=:all:", "-d", str(wheel_cache), *reqs],
            progress=progress,
            step="pip download",
        )
        _run(
            [*pip, "wheel", "-q", "--no-index", "--find-links", str(wheel_cache), "-w", str(dest), *reqs],
            progress=progress,
            step="pip wheel",
        )


# --------------------------------------------------------------------------------------------- builds


def _docker() -> Any:
    import docker

    return docker.from_env(timeout=600)


def _read_release(recipe: Recipe, record_dir: Path, kernel: str | None = None) -> ReleaseInfo:
    pkgs = parse_dpkg_query((record_dir / "packages.tsv").read_text())
    debian_version = (record_dir / "debian_version").read_text().strip()
    wanted = recipe.versions or ()
    return ReleaseInfo(
        suite=recipe.suite,
        release=recipe.release,
        debian_version=debian_version,
        kernel=kernel,
        packages={p: pkgs[p] for p in wanted if p in pkgs},
    )


def _import_changes(recipe: Recipe, hash_: str) -> list[str]:
    changes = [f"LABEL org.sanlab.image={recipe.name} org.sanlab.hash={hash_}"]
    if recipe.cmd:
        changes.append(f"CMD {json.dumps(list(recipe.cmd))}")
    for k, v in sorted(recipe.env.items()):
        changes.append(f"ENV {k}={json.dumps(v)}")
    if recipe.project:
        changes.append(
            f'ENV PATH="{PROJECT_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'
        )
    return changes


def _docker_import(recipe: Recipe, hash_: str, tar: Path, tag: str, progress: _Progress) -> None:
    with progress.step(f"docker import {tag}"):
        cmd = ["docker", "import"]
        for c in _import_changes(recipe, hash_):
            cmd += ["--change", c]
        _run([*cmd, str(tar), tag], progress=progress, step="docker import")


def base_tag(recipe: Recipe) -> str:
    """project: true images are two steps: the Debian base (rebuilt only when the recipe changes) and the
    project layer on top (rebuilt when the project source changes, in seconds)."""
    return f"{REPOSITORY}/{recipe.name}-base:{recipe_hash(recipe)[:12]}"


def _project_layer(recipe: Recipe, hash_: str, base: str, tag: str, work: Path, progress: _Progress) -> None:
    """`docker build` (no network) FROM the local base: copy the wheels in, install them into the venv."""
    ctx = work / "context"
    ctx.mkdir()
    build_wheels(ctx / "wheels", progress)
    # the wheel directory holds exactly the target's runtime closure (build_wheels): install it as is,
    # without resolving sanlab's lab-side dependencies (docker, ansible, ...) the target never imports
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\n"
        "COPY wheels /tmp/wheels\n"
        f"RUN python3 -m venv {PROJECT_VENV} && {PROJECT_VENV}/bin/pip install -q --no-index --no-cache-dir "
        f"--no-deps /tmp/wheels/*.whl && ln -sf {PROJECT_VENV}/bin/sanlab /usr/local/bin/sanlab && rm -rf /tmp/wheels\n"
        f"LABEL org.sanlab.image={recipe.name} org.sanlab.hash={hash_}\n"
    )
    with progress.step("project layer (docker build)"):
        client = _docker()
        try:
            client.images.build(
                path=str(ctx), tag=tag, network_mode="none", rm=True, forcerm=True, pull=False
            )
        except Exception as exc:  # docker.errors.BuildError / APIError: one message with the build log tail
            log = getattr(exc, "build_log", None) or []
            tail = "".join(str(x.get("stream", "")) for x in list(log)[-20:] if isinstance(x, dict))
            raise ImageBuildError(f"docker build of the project layer failed: {exc}\n{tail}") from exc


def _release_from_image(recipe: Recipe, tag: str) -> tuple[ReleaseInfo, str]:
    """Release info and the full `dpkg-query` listing, read from the built image."""
    out = _run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c",
         "cat /etc/debian_version; dpkg-query -W -f '${Package}\\t${Version}\\n'"]
    )  # fmt: skip
    first, _, rest = out.partition("\n")
    pkgs = parse_dpkg_query(rest)
    info = ReleaseInfo(
        suite=recipe.suite,
        release=recipe.release,
        debian_version=first.strip(),
        packages={p: pkgs[p] for p in recipe.versions if p in pkgs},
    )
    return info, rest


def _build_container(recipe: Recipe, hash_: str, work: Path, progress: _Progress) -> ImageRef:
    files_dir = images_dir() / "files"
    record = work / "record"
    record.mkdir()
    tag = container_tag(recipe.name, hash_)
    base = base_tag(recipe) if recipe.project else tag
    if not (recipe.project and _container_exists(base)):
        tar = work / "rootfs.tar"
        cmd = mmdebstrap_command(recipe, tar, files_dir=files_dir, record_dir=record)
        with progress.step(f"mmdebstrap {recipe.suite} ({len(recipe.packages)} packages)"):
            _run(cmd, progress=progress, step="mmdebstrap", timeout_s=MMDEBSTRAP_TIMEOUT_S)
        _docker_import(recipe, recipe_hash(recipe) if recipe.project else hash_, tar, base, progress)
        tar.unlink()
    else:
        progress.log(f"images: [{recipe.name}] base {base} cached")
    if recipe.project:
        _project_layer(recipe, hash_, base, tag, work, progress)
        release, listing = _release_from_image(recipe, tag)
        (record / "packages.tsv").write_text(listing)
    else:
        release = _read_release(recipe, record)
    _run(["docker", "tag", tag, f"{REPOSITORY}/{recipe.name}:latest"])
    size = int(_run(["docker", "image", "inspect", "-f", "{{.Size}}", tag]).strip() or 0)
    return ImageRef(name=recipe.name, kind=recipe.kind, hash=hash_, release=release, tag=tag, size_bytes=size)


def _module_closure(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Module files (relative to modules_dir) for `wanted` and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
        base = Path(mod).name.split(".ko")[0].replace("-", "_")
        by_name[base] = mod
    order: list[str] = []

    def visit(mod: str, depth: int = 0) -> None:
        if mod in order or depth > 50:
            return
        for d in deps.get(mod, []):
            visit(d, depth + 1)
        order.append(mod)

    for w in wanted:
        found = by_name.get(w.replace("-", "_"))
        if found is not None:  # absent: built into this kernel
            visit(found)
    return order


def _uncompressed_module(src: Path) -> bytes:
    data = src.read_bytes()
    if src.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if src.name.endswith(".ko.zst"):
        return subprocess.run(["zstd", "-dc", str(src)], capture_output=True, check=True, timeout=60).stdout
    return data


def _build_initramfs(root: Path, kver: str, out: Path, files_dir: Path) -> None:
    """Small busybox initramfs: modules to reach /dev/vda (ext4), then switch_root into the root disk."""
    stage = out.parent / "initramfs"
    (stage / "bin").mkdir(parents=True)
    (stage / "modules").mkdir()
    busybox = root / "bin" / "busybox"
    if not busybox.is_file():
        raise ImageBuildError(
            "the VM rootfs has no /bin/busybox (add busybox-static to the recipe's packages)"
        )
    shutil.copy2(busybox, stage / "bin" / "busybox")
    mdir = root / "lib" / "modules" / kver
    names = []
    for i, rel in enumerate(_module_closure(mdir, INITRAMFS_MODULES)):
        name = f"{i:02d}-{Path(rel).name.split('.ko')[0]}.ko"
        (stage / "modules" / name).write_bytes(_uncompressed_module(mdir / rel))
        names.append(name)
    (stage / "modules.list").write_text("\n".join(names) + "\n")
    shutil.copy2(files_dir / "vm" / "initramfs-init", stage / "init")
    (stage / "init").chmod(0o755)
    listing = subprocess.run(
        ["find", ".", "-mindepth", "1"], cwd=stage, capture_output=True, check=True, timeout=60
    ).stdout
    with open(out, "wb") as f:
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
            cwd=stage,
            input=listing,
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        f.write(cpio)
    shutil.rmtree(stage)


def _place_kernel(root: Path, work: Path) -> tuple[str, Path]:
    """Move the kernel unpacked in the chroot's /sanlab-kernel into place; returns (version, vmlinuz copy)."""
    unpacked = root / "sanlab-kernel"
    vmlinuz = sorted((unpacked / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise ImageBuildError("the kernel package held no /boot/vmlinuz-*")
    kver = vmlinuz[0].name.removeprefix("vmlinuz-")
    src_mods = next(
        (
            p
            for p in (unpacked / "lib" / "modules" / kver, unpacked / "usr" / "lib" / "modules" / kver)
            if p.is_dir()
        ),
        None,
    )
    if src_mods is None:
        raise ImageBuildError(f"the kernel package held no modules for {kver}")
    dest_mods = (root / "lib").resolve() / "modules" / kver  # /lib may be a merged-/usr symlink
    dest_mods.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src_mods), str(dest_mods))
    out = work / "vmlinuz"
    shutil.copy2(vmlinuz[0], out)
    for f in (unpacked / "boot").iterdir():
        if f.name.startswith("config-"):
            shutil.copy2(f, root / "boot" / f.name)
    shutil.rmtree(unpacked)
    return kver, out


def _du_bytes(path: Path) -> int:
    """Bytes allocated on disk (sparse files count what they use)."""
    total = 0
    for p in [path] if path.is_file() else path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_blocks * 512
    return total


def _build_vm(recipe: Recipe, hash_: str, work: Path, progress: _Progress) -> ImageRef:
    assert recipe.kernel is not None
    if os.geteuid() != 0:
        raise ImageBuildError("building VM images needs root (the root file system keeps owners and devices)")
    files_dir = images_dir() / "files"
    record = work / "record"
    record.mkdir()
    root = work / "root"
    cmd = mmdebstrap_command(recipe, root, files_dir=files_dir, record_dir=record)
    with progress.step(f"mmdebstrap {recipe.suite} ({len(recipe.packages)} packages + kernel)"):
        _run(cmd, progress=progress, step="mmdebstrap", timeout_s=MMDEBSTRAP_TIMEOUT_S)
    with progress.step("kernel, modules, initramfs"):
        kver, _ = _place_kernel(root, work)
        mdir = root / "lib" / "modules" / kver
        for rel in recipe.kernel.prune:
            shutil.rmtree(mdir / "kernel" / rel, ignore_errors=True)
        _run(["chroot", str(root), "depmod", kver])
        _build_initramfs(root, kver, work / "initrd.img", files_dir)
        # a fixed machine-id-less, systemd-less root: the VM's /sbin/sanlab-init is PID 1
        (root / "etc" / "fstab").write_text("# root is mounted by the initramfs\n")
    release = _read_release(recipe, record, kernel=kver)
    with progress.step("ext4 root disk"):
        used = _du_bytes(root)
        size_mib = max(512, int(used * 1.4 / 2**20) + 256)  # free room for logs, iSCSI node db, test files
        disk = work / "rootfs.img"
        _run(
            ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "sanlab-root", "-E", "root_owner=0:0", "-d", str(root),
             str(disk), f"{size_mib}M"],
            progress=progress,
            step="mke2fs",
        )  # fmt: skip
        shutil.rmtree(root)
    return ImageRef(
        name=recipe.name,
        kind=recipe.kind,
        hash=hash_,
        release=release,
        kernel=work / "vmlinuz",
        initrd=work / "initrd.img",
        disk=work / "rootfs.img",
        ssh_key=ensure_lab_key(),
    )


def _relocate(ref: ImageRef, final: Path) -> ImageRef:
    def move(p: Path | None) -> Path | None:
        return None if p is None else final / p.name

    return dataclasses.replace(ref, kernel=move(ref.kernel), initrd=move(ref.initrd), disk=move(ref.disk))


# --------------------------------------------------------------------------------------------- public API


def _load_ref(directory: Path) -> ImageRef | None:
    try:
        return ImageRef.from_dict(json.loads((directory / "image.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _container_exists(tag: str) -> bool:
    try:
        return (
            subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=30).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _is_complete(ref: ImageRef) -> bool:
    if ref.kind is ImageKind.CONTAINER:
        return ref.tag is not None and _container_exists(ref.tag)
    return all(p is not None and p.is_file() for p in (ref.kernel, ref.initrd, ref.disk))


def cached_image(name: str) -> ImageRef | None:
    """The built image for the current recipe of `name`, or None when it must be (re)built."""
    recipe = find_recipe(name)
    h = image_hash(recipe)
    ref = _load_ref(image_dir(name, h))
    return ref if ref is not None and ref.hash == h and _is_complete(ref) else None


def _use_cached(name: str, h: str, log: Log) -> ImageRef | None:
    final = image_dir(name, h)
    ref = _load_ref(final)
    if ref is None or ref.hash != h or not _is_complete(ref):
        return None
    if ref.tag is not None:  # keep :latest on the image this recipe builds today
        subprocess.run(
            ["docker", "tag", ref.tag, f"{REPOSITORY}/{name}:latest"], capture_output=True, timeout=30
        )
    log(f"images: [{name}] cached {ref.tag or final} ({h[:12]})")
    return ref


@contextlib.contextmanager
def _build_lock(name: str, log: Log, timeout_s: float = MMDEBSTRAP_TIMEOUT_S) -> Iterator[None]:
    """One builder per image name across processes (a parallel `sanlab up` waits, then finds the cache)."""
    path = images_cache() / name / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log(f"images: [{name}] another build is running; waiting for it")
                    waited = True
                if time.monotonic() >= deadline:
                    raise ImageBuildError(
                        f"{name}: gave up waiting {timeout_s:.0f} s for another build"
                    ) from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_image(name: str, *, log: Log = print, force: bool = False) -> ImageRef:
    """Return image `name`, building it first if its recipe hash has no complete build (or `force`)."""
    recipe = find_recipe(name)
    if recipe.kind is ImageKind.VM:
        ensure_lab_key()
    h = image_hash(recipe)
    if recipe.kind is ImageKind.CONTAINER:
        from lab.images.docker_setup import ensure_docker

        ensure_docker(log)  # before looking for the image: a stopped engine is not a missing image
    if not force and (ref := _use_cached(name, h, log)) is not None:
        return ref
    with _build_lock(name, log):
        if not force and (ref := _use_cached(name, h, log)) is not None:
            return ref
        return _build(recipe, h, log)


def _build(recipe: Recipe, h: str, log: Log) -> ImageRef:
    name = recipe.name
    final = image_dir(name, h)
    from lab.images.docker_setup import ensure_docker, ensure_tools

    ensure_tools(log)
    if recipe.kind is ImageKind.CONTAINER:
        ensure_docker(log)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{h[:12]}.", dir=final.parent))
    progress = _Progress(name, log)
    t0 = time.monotonic()
    try:
        log(f"images: [{name}] building {recipe.kind.value} image from Debian {recipe.suite} ({h[:12]})")
        if recipe.kind is ImageKind.CONTAINER:
            ref = _build_container(recipe, h, work, progress)
        else:
            ref = _build_vm(recipe, h, work, progress)
        seconds = round(time.monotonic() - t0, 1)
        ref = dataclasses.replace(
            ref,
            built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            build_seconds=seconds,
        )
        for junk in ("rootfs.tar", "wheels", "context"):
            p = work / junk
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        shutil.move(str(work / "record" / "packages.tsv"), str(work / "packages.tsv"))
        shutil.rmtree(work / "record", ignore_errors=True)
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        final.chmod(0o755)
        ref = _relocate(ref, final)
        if ref.kind is ImageKind.VM:
            ref = dataclasses.replace(ref, size_bytes=_du_bytes(final))
        (final / "image.json").write_text(json.dumps(ref.to_dict(), indent=2) + "\n")
        log(
            f"images: [{name}] built in {seconds:.0f} s, {ref.size_bytes / 2**20:.0f} MiB: {ref.tag or final}"
        )
        return ref
    finally:
        progress.close()
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def list_images() -> list[ImageRef]:
    """Every built image in the cache (all hashes), newest first per name; incomplete builds are skipped."""
    refs: list[ImageRef] = []
    base = images_cache()
    if not base.is_dir():
        return refs
    for name_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        found = [r for d in name_dir.iterdir() if d.is_dir() and (r := _load_ref(d)) is not None]
        found.sort(key=lambda r: r.built_at, reverse=True)
        refs += [r for r in found if _is_complete(r)]
    return refs


def _prune_bases(name: str, keep_latest: bool, log: Log) -> list[str]:
    """Remove `sanlab/<name>-base:*` images (project: true recipes) other than the current recipe's base."""
    keep = None
    if keep_latest:
        with contextlib.suppress(Exception):
            keep = base_tag(find_recipe(name))
    try:
        out = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{REPOSITORY}/{name}-base"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    removed = []
    for tag in out.split():
        if (
            tag != keep
            and subprocess.run(["docker", "image", "rm", tag], capture_output=True, timeout=120).returncode
            == 0
        ):
            removed.append(tag)
            log(f"images: removed {tag}")
    return removed


def prune(keep_latest: bool = True, *, log: Log = print) -> list[str]:
    """Remove built images: all but the one the current recipe builds (keep_latest) or everything.
    Also removes failed-build leftovers. Returns what was removed (tags and folders)."""
    removed: list[str] = []
    base = images_cache()
    if not base.is_dir():
        return removed
    for name_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        current: str | None = None
        if keep_latest:
            with contextlib.suppress(Exception):
                current = image_hash(find_recipe(name_dir.name))[:12]
        for d in sorted(name_dir.iterdir()):
            if not d.is_dir() or d.name == current:
                continue
            if d.name.startswith(".build-") and time.time() - d.stat().st_mtime < _BUILD_STALE_S:
                continue  # a build may be running right now
            ref = _load_ref(d)
            if ref is not None and ref.tag is not None:
                r = subprocess.run(
                    ["docker", "image", "rm", ref.tag], capture_output=True, text=True, timeout=120
                )
                if r.returncode == 0:
                    removed.append(ref.tag)
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
            log(f"images: removed {ref.tag if ref and ref.tag else d}")
        if not keep_latest:
            subprocess.run(
                ["docker", "image", "rm", f"{REPOSITORY}/{name_dir.name}:latest"],
                capture_output=True,
                timeout=120,
            )
        removed += _prune_bases(name_dir.name, keep_latest, log)
        with contextlib.suppress(OSError):
            name_dir.rmdir()
    return removed
