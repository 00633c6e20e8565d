"""The two targets under test, as local processes on loopback, each the leader of its own session.

- ``sanlab``: ``sanlab target serve --config CFG --no-api --log-level warning`` with the project's native JSON
  config: one target, one fileio LUN (LUN 0, write-back) on the shared backing file;
- ``tgtd``: ``tgtd -f -C CTL --iscsi portal=...`` configured with ``tgtadm``: one target, the same file as a
  rdwr LUN 1 (tgtd keeps LUN 0 for its controller).

Both export the SAME pre-filled file (every byte written, non-zero data), so reads hit real data in the page
cache and both targets see identical LUN contents; only one target is driven at a time. Stopping: SIGTERM then
SIGKILL for sanlab; tgtd ignores SIGTERM, so it is killed outright (it keeps no state a benchmark needs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.bench.workloads import format_size

KINDS = ("sanlab", "tgtd")
IQN = {"sanlab": "iqn.2026-11.org.example.sanlab:bench", "tgtd": "iqn.2026-11.org.example.tgtd:bench"}
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
_FILL_CHUNK = 1024 * 1024


class TargetStartError(RuntimeError):
    """A target did not come up; the message carries its log tail."""


@dataclass(frozen=True)
class BenchTarget:
    kind: str
    pid: int
    host: str
    port: int
    iqn: str
    lun: int
    log: Path

    def url(self, lun: int | None = None) -> str:
        return f"iscsi://{self.host}:{self.port}/{self.iqn}/{self.lun if lun is None else lun}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def prefill(path: Path, size: int) -> Path:
    """`path` of exactly `size` bytes with every byte written (a 1 MiB pseudo-random block repeated), so no
    part is a hole; kept when it already has that size and no holes (reused across runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        st = path.stat()
        if st.st_size == size and st.st_blocks * 512 >= size:
            return path
    block = bytes((i * 131 + (i >> 8) * 17 + 1) & 0xFF or 1 for i in range(_FILL_CHUNK))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    os.replace(tmp, path)
    return path


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def sanlab_config(
    files: list[Path], size: int, host: str, port: int, state_dir: Path, iqn: str = IQN["sanlab"]
) -> dict[str, object]:
    """The project's native config: one target, one TPG in demo mode, fileio LUNs 0..N-1 on `files`."""
    from target.config.model import (
        Config,
        LunConfig,
        PortalConfig,
        StorageObjectConfig,
        TargetConfig,
        TpgConfig,
    )
    from target.config.native import dump_config

    sos = [
        StorageObjectConfig(plugin="fileio", name=f"bench{i}", size=size, dev=str(f), write_back=True)
        for i, f in enumerate(files)
    ]
    tpg = TpgConfig(
        tag=1,
        portals=[PortalConfig(host, port)],
        luns=[LunConfig(i, so.path) for i, so in enumerate(sos)],
        attributes={"generate_node_acls": 1, "demo_mode_write_protect": 0, "authentication": 0},
    )
    cfg = Config(
        storage_objects=sos,
        targets=[TargetConfig(wwn=iqn, tpgs=[tpg])],
        state_dir=str(state_dir),
        settings={"nopin_interval_s": 300},
    )
    return dump_config(cfg)


def _sanlab_command(config: Path) -> list[str]:
    exe = Path(sys.executable).parent / "sanlab"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "target.cli.main"]
    return [*base, "target", "serve", "--config", str(config), "--no-api", "--log-level", "warning"]


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


@contextmanager
def start_sanlab(
    files: list[Path], size: int, workdir: Path, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[BenchTarget]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    config = workdir / "sanlab-config.json"
    config.write_text(json.dumps(sanlab_config(files, size, host, port, workdir / "state"), indent=1))
    log = workdir / "sanlab-target.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _sanlab_command(config),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )
    try:
        if not wait_for_port(host, port, READY_TIMEOUT_S, proc):
            raise TargetStartError(f"sanlab target not accepting on {host}:{port}; log:\n{_tail(log)}")
        yield BenchTarget("sanlab", proc.pid, host, port, IQN["sanlab"], 0, log)
    finally:
        _stop(proc)


def tgtadm(control_port: int, log: Path, *args: str) -> None:
    cmd = ["tgtadm", "-C", str(control_port), "--lld", "iscsi", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        with open(log, "a") as f:
            f.write(f"[bench] {' '.join(cmd)} -> {proc.returncode} {proc.stdout}{proc.stderr}\n")
        raise TargetStartError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


@contextmanager
def start_tgtd(
    files: list[Path], workdir: Path, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[BenchTarget]:
    """tgtd with `files` as LUNs 1..N (rdwr backing store, tgtd's defaults: write cache on)."""
    if shutil.which("tgtd") is None:
        raise TargetStartError("tgtd is not installed: run scripts/setup-host.sh (Debian package tgt)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    control_port = 1 + port % 32767
    log = workdir / "tgtd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["tgtd", "-f", "-C", str(control_port), "--iscsi", f"portal={host}:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if not wait_for_port(host, port, READY_TIMEOUT_S, proc):
            raise TargetStartError(f"tgtd not accepting on {host}:{port}; log:\n{_tail(log)}")
        iqn = IQN["tgtd"]
        tgtadm(control_port, log, "--mode", "target", "--op", "new", "--tid", "1", "-T", iqn)
        for i, f in enumerate(files, start=1):
            tgtadm(
                control_port,
                log,
                "--mode",
                "logicalunit",
                "--op",
                "new",
                "--tid",
                "1",
                "--lun",
                str(i),
                "-b",
                str(f),
            )
        tgtadm(
            control_port, log, "--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL"
        )
        yield BenchTarget("tgtd", proc.pid, host, port, iqn, 1, log)
    finally:
        _stop(proc, signal.SIGKILL)


@contextmanager
def start(
    kind: str, files: list[Path], size: int, workdir: Path, host: str = "127.0.0.1"
) -> Iterator[BenchTarget]:
    if kind == "sanlab":
        with start_sanlab(files, size, workdir / "sanlab", host) as t:
            yield t
    elif kind == "tgtd":
        with start_tgtd(files, workdir / "tgtd", host) as t:
            yield t
    else:
        raise ValueError(f"unknown target kind {kind!r}; one of {KINDS}")


def describe_lun(size: int) -> str:
    return f"{format_size(size)} file, pre-filled (no holes), shared by both targets, page-cache resident"
