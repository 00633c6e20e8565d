"""Make the Docker engine answer on this machine, idempotently (same steps as scripts/setup-docker.sh).

No engine is preinstalled on the lab machines and there is no systemd: when `docker info` fails, install
Debian's docker.io (after `apt-get update`), start `dockerd` in the background with its log under /var/log
(or the cache dir when /var/log is not writable), and wait, bounded, until `docker info` works. mmdebstrap,
which builds every lab image, is installed the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from lab.vm.cache import cache_root

Log = Callable[[str], None]

DOCKER_WAIT_S = 60.0
_APT_TIMEOUT_S = 900


class DockerSetupError(RuntimeError):
    """Docker could not be installed or started."""


def docker_ok(timeout_s: float = 20.0) -> bool:
    """True when `docker info` answers (client present and engine reachable)."""
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def apt_install(packages: list[str], log: Log = print) -> None:
    """apt-get update once, then install `packages` (no recommends). Raises DockerSetupError."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"setup: installing Debian packages: {' '.join(packages)}")
    for cmd in (
        [*_sudo(), "apt-get", "update", "-qq"],
        [*_sudo(), "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=_APT_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DockerSetupError(f"{' '.join(cmd)}: {exc}") from exc
        if proc.returncode != 0:
            raise DockerSetupError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")


def ensure_tools(log: Log = print) -> None:
    """Install docker.io and mmdebstrap when their commands are missing."""
    missing = [
        pkg
        for cmd, pkg in (("dockerd", "docker.io"), ("mmdebstrap", "mmdebstrap"))
        if shutil.which(cmd) is None
    ]
    if missing:
        apt_install(missing, log)


def dockerd_log_path() -> Path:
    env = os.environ.get("SANLAB_DOCKERD_LOG")
    if env:
        return Path(env)
    var_log = Path("/var/log")
    return var_log / "sanlab-dockerd.log" if os.access(var_log, os.W_OK) else cache_root() / "dockerd.log"


def _dockerd_running() -> bool:
    try:
        return (
            subprocess.run(
                ["pgrep", "-x", "dockerd"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_dockerd(log: Log = print) -> Path:
    """Start dockerd detached (its own session, survives us); returns the log path."""
    path = dockerd_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"setup: starting dockerd (log: {path})")
    with open(path, "ab") as out:
        try:
            subprocess.Popen(
                [*_sudo(), "dockerd"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise DockerSetupError(f"cannot start dockerd: {exc}") from exc
    return path


def ensure_docker(log: Log = print, *, wait_s: float = DOCKER_WAIT_S) -> None:
    """Idempotent: return at once if `docker info` works; else install what is missing, start dockerd and
    wait (at most `wait_s`) until the engine answers. Raises DockerSetupError with the engine's last log lines."""
    if shutil.which("mmdebstrap") is not None and docker_ok():
        return
    ensure_tools(log)
    if docker_ok():
        return
    path = dockerd_log_path()
    if not _dockerd_running():
        path = start_dockerd(log)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if docker_ok(timeout_s=5.0):
            log("setup: docker engine ready")
            return
        time.sleep(0.5)
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
    raise DockerSetupError(f"docker info still fails after {wait_s:.0f} s; dockerd log {path}:\n{tail}")
