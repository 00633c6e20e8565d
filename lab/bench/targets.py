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
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.bench.workloads import format_size
from lab.netutil import free_port, wait_for_port

__all__ = [
    "IQN",
    "KINDS",
    "BenchTarget",
    "TargetStartError",
    "Tgtd",
    "describe_lun",
    "free_port",
    "prefill",
    "run_tgtd",
    "sanlab_command",
    "sanlab_config",
    "spawn_logged",
    "start",
    "start_sanlab",
    "start_tgtd",
    "stop_process",
    "tgtadm",
    "tgtd_control_port",
    "wait_for_port",
]

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


def sanlab_command(config: Path, *extra: str) -> list[str]:
    """`sanlab target serve --config CONFIG EXTRA...` with this interpreter's `sanlab` (else `-m target.cli.main`)."""
    exe = Path(sys.executable).parent / "sanlab"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "target.cli.main"]
    return [*base, "target", "serve", "--config", str(config), *extra]


def spawn_logged(
    cmd: list[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session, stdin from /dev/null, stdout and stderr into `log` (truncated first, or
    appended to); `env` None inherits this process's environment."""
    with open(log, "ab" if append else "wb") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def stop_process(
    proc: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    *,
    timeout_s: float = STOP_TIMEOUT_S,
    log: Path | None = None,
    tag: str = "bench",
) -> None:
    """Send `sig`, wait up to `timeout_s`, then SIGKILL (a line in `log` says so when given) and wait again."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        if log is not None:
            with open(log, "a") as f:
                f.write(f"\n[{tag}] no exit {timeout_s:.0f} s after {signal.Signals(sig).name}: SIGKILL\n")
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
    proc = spawn_logged(
        sanlab_command(config, "--no-api", "--log-level", "warning"),
        log,
        cwd=workdir,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        if not wait_for_port(host, port, READY_TIMEOUT_S, proc):
            raise TargetStartError(f"sanlab target not accepting on {host}:{port}; log:\n{_tail(log)}")
        yield BenchTarget("sanlab", proc.pid, host, port, IQN["sanlab"], 0, log)
    finally:
        stop_process(proc)


# ---------------------------------------------------------------- tgtd (also used by tests/support/target_process.py)


def tgtadm(control_port: int, log: Path, *args: str, tag: str = "bench", log_success: bool = False) -> None:
    """One `tgtadm -C CTL --lld iscsi ARGS` call; failures (and with `log_success` every call) are noted in `log`
    as `[tag] command -> status output`; a failure raises TargetStartError."""
    cmd = ["tgtadm", "-C", str(control_port), "--lld", "iscsi", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if log_success or proc.returncode != 0:
        with open(log, "a") as f:
            f.write(f"[{tag}] {' '.join(cmd)} -> {proc.returncode} {proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise TargetStartError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def tgtd_control_port(port: int) -> int:
    """The control port (1..32767) that names tgtd's management socket, derived from its (free) iSCSI port."""
    return 1 + port % 32767


@dataclass(frozen=True)
class Tgtd:
    """A running `tgtd -f` and the `tgtadm` verbs that configure it (each call logged as `tgtadm()` says)."""

    proc: subprocess.Popen[bytes]
    control_port: int
    log: Path
    tag: str = "bench"
    log_success: bool = False

    def adm(self, *args: str) -> None:
        tgtadm(self.control_port, self.log, *args, tag=self.tag, log_success=self.log_success)

    def add_portal(self, host: str, port: int) -> None:
        self.adm("--mode", "portal", "--op", "new", "--param", f"portal={host}:{port}")

    def add_target(self, iqn: str, files: list[Path], tid: int = 1) -> None:
        """Target `tid` named `iqn` with `files` as LUNs 1..N (rdwr backing store; tgtd keeps LUN 0 for its
        controller), open to every initiator address (tgtd then checks the name list when it is non-empty)."""
        self.adm("--mode", "target", "--op", "new", "--tid", str(tid), "-T", iqn)
        for lun, f in enumerate(files, start=1):
            self.adm(
                "--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun", str(lun), "-b", str(f)
            )
        self.adm("--mode", "target", "--op", "bind", "--tid", str(tid), "--initiator-address", "ALL")

    def bind_initiator(self, name: str, tid: int = 1) -> None:
        self.adm("--mode", "target", "--op", "bind", "--tid", str(tid), "--initiator-name", name)

    def add_account(
        self, user: str, password: str, *, tid: int | None = None, outgoing: bool = False
    ) -> None:
        """A CHAP account bound to target `tid`, or with `tid` None tgtd's global one (what SendTargets discovery
        sessions use); `outgoing`: the target's own credentials for mutual CHAP."""
        self.adm("--mode", "account", "--op", "new", "--user", user, "--password", password)
        where = [] if tid is None else ["--tid", str(tid)]
        self.adm(
            "--mode", "account", "--op", "bind", *where, "--user", user, *(["--outgoing"] if outgoing else [])
        )


@contextmanager
def run_tgtd(
    host: str,
    port: int,
    log: Path,
    *,
    ready_timeout_s: float = READY_TIMEOUT_S,
    tag: str = "bench",
    log_success: bool = False,
) -> Iterator[Tgtd]:
    """`tgtd -f` with its first portal on `host:port` (output into `log`), yielded once it accepts connections.
    When the context ends tgtd is killed outright: it ignores SIGTERM, and Debian 12's tgtadm answers
    `--mode system --op delete` (with or without --force) with "invalid request"."""
    if shutil.which("tgtd") is None:
        raise TargetStartError("tgtd is not installed: run scripts/setup-host.sh (Debian package tgt)")
    control_port = tgtd_control_port(port)
    proc = spawn_logged(["tgtd", "-f", "-C", str(control_port), "--iscsi", f"portal={host}:{port}"], log)
    tgtd = Tgtd(proc, control_port, log, tag, log_success)
    try:
        if not wait_for_port(host, port, ready_timeout_s, proc):
            raise TargetStartError(f"tgtd not accepting on {host}:{port}; log:\n{_tail(log)}")
        yield tgtd
    finally:
        stop_process(proc, signal.SIGKILL)


@contextmanager
def start_tgtd(
    files: list[Path], workdir: Path, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[BenchTarget]:
    """tgtd with `files` as LUNs 1..N (rdwr backing store, tgtd's defaults: write cache on)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    with run_tgtd(host, port, workdir / "tgtd.log") as tgtd:
        tgtd.add_target(IQN["tgtd"], files)
        yield BenchTarget("tgtd", tgtd.proc.pid, host, port, IQN["tgtd"], 1, tgtd.log)


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
