"""Start an iSCSI target as a subprocess for tests with real initiators; target-agnostic.

Two kinds:
- "sanlab": our target, `sanlab target serve --config <LIO saveconfig.json>` (the file is generated here from
  a `TargetSpec`, so the config import path is exercised too);
- "tgtd": Debian's STGT, `tgtd -f -C <control port> --iscsi portal=...` configured with `tgtadm`; the
  reference target the harness was proven against.

Both give a `RunningTarget` with the IQN, portals, the LUN number that holds the backing file (tgtd keeps LUN
0 for its controller, so its disk is LUN 1), the backing file path (tests check what landed on disk) and
`url()` for libiscsi-style URLs. The process log is kept in the work directory; `start_target()` stops the
process with SIGTERM (then SIGKILL) when the context ends.

Process and tgtd plumbing (spawning, stopping, `tgtadm`) is lab/bench/targets.py's, shared with the bench; the
TCP helpers `free_port` / `wait_for_port` are lab/netutil.py's, re-exported here for the tests that import them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from lab.bench.targets import TargetStartError, run_tgtd, sanlab_command, spawn_logged, stop_process
from lab.netutil import free_port, wait_for_port

__all__ = [
    "DEFAULT_IQN",
    "TARGET_KINDS",
    "Chap",
    "RunningTarget",
    "TargetSpec",
    "TargetStartError",
    "free_port",
    "lio_saveconfig",
    "make_backing_file",
    "sanlab_serving",
    "start_target",
    "wait_for_port",
    "write_native_config",
]

TARGET_KINDS = ("sanlab", "tgtd")
DEFAULT_IQN = "iqn.2026-11.org.example.sanlab:test"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Chap:
    user: str
    secret: str  # 12-16 characters, letters and digits (what every initiator accepts)

    def word(self) -> str:
        return f"{self.user}:{self.secret}"


@dataclass
class TargetSpec:
    backing_file: Path
    portals: list[tuple[str, int]]
    lun_size: int = 1024**3
    iqn: str = DEFAULT_IQN
    #: demo mode (generate_node_acls): any initiator may log in, no CHAP
    demo_mode: bool = True
    #: initiator names with an explicit ACL (LUN 0 mapped); used when demo_mode is False
    acl_initiators: list[str] = field(default_factory=list)
    chap: Chap | None = None  # the initiator's credentials the target checks
    mutual_chap: Chap | None = None  # the target's own credentials for mutual CHAP
    discovery_chap: Chap | None = None
    discovery_mutual_chap: Chap | None = None
    #: LIO storage object attributes (emulate_tpu, ...); tgtd ignores them
    lio_attributes: dict[str, int] = field(default_factory=dict)
    write_back: bool = True


@dataclass
class RunningTarget:
    kind: str
    spec: TargetSpec
    lun: int  # the LUN backed by spec.backing_file
    log_path: Path
    pid: int

    @property
    def iqn(self) -> str:
        return self.spec.iqn

    @property
    def portals(self) -> list[tuple[str, int]]:
        return self.spec.portals

    @property
    def backing_file(self) -> Path:
        return self.spec.backing_file

    def portal(self, index: int = 0) -> str:
        host, port = self.spec.portals[index]
        return f"{host}:{port}"

    def url(self, index: int = 0, *, lun: int | None = None, chap: Chap | None = None) -> str:
        """libiscsi URL: iscsi://[user%secret@]host:port/iqn/lun."""
        cred = f"{quote(chap.user, safe='')}%{quote(chap.secret, safe='')}@" if chap else ""
        return f"iscsi://{cred}{self.portal(index)}/{self.iqn}/{self.lun if lun is None else lun}"

    def log_tail(self, max_chars: int = 20000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except FileNotFoundError:
            return ""


def make_backing_file(path: Path, size: int) -> Path:
    """A sparse file of `size` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


# ---------------------------------------------------------------- LIO saveconfig.json for our target


def lio_saveconfig(spec: TargetSpec) -> dict[str, object]:
    """The spec as targetcli's saveconfig.json (rtslib's dump format)."""
    so_name = "disk0"
    storage_object = {
        "plugin": "fileio",
        "name": so_name,
        "dev": str(spec.backing_file),
        "size": spec.lun_size,
        "write_back": spec.write_back,
        "wwn": str(uuid.uuid5(uuid.NAMESPACE_URL, spec.iqn + so_name)),
        "attributes": dict(spec.lio_attributes),
    }
    auth_on = spec.chap is not None
    tpg_attributes: dict[str, int] = {
        "authentication": 1 if auth_on else 0,
        "generate_node_acls": 1 if spec.demo_mode else 0,
        "cache_dynamic_acls": 1 if spec.demo_mode else 0,
        "demo_mode_write_protect": 0,
        "prod_mode_write_protect": 0,
    }
    acls = []
    for initiator in spec.acl_initiators:
        acl: dict[str, object] = {
            "node_wwn": initiator,
            "attributes": {},
            "mapped_luns": [{"index": 0, "tpg_lun": 0, "write_protect": False}],
        }
        if spec.chap:
            acl["chap_userid"] = spec.chap.user
            acl["chap_password"] = spec.chap.secret
        if spec.mutual_chap:
            acl["chap_mutual_userid"] = spec.mutual_chap.user
            acl["chap_mutual_password"] = spec.mutual_chap.secret
        acls.append(acl)
    tpg = {
        "tag": 1,
        "enable": True,
        "attributes": tpg_attributes,
        "parameters": {"AuthMethod": "CHAP,None" if auth_on else "None"},
        "portals": [
            {"ip_address": ip, "port": port, "iser": False, "offload": False} for ip, port in spec.portals
        ],
        "luns": [
            {
                "index": 0,
                "storage_object": f"/backstores/fileio/{so_name}",
                "alua_tg_pt_gp_name": "default_tg_pt_gp",
            }
        ],
        "node_acls": acls,
    }
    fabric: dict[str, object] = {"name": "iscsi"}
    if spec.discovery_chap:
        fabric.update(
            discovery_enable_auth=True,
            discovery_userid=spec.discovery_chap.user,
            discovery_password=spec.discovery_chap.secret,
        )
        if spec.discovery_mutual_chap:
            fabric.update(
                discovery_mutual_userid=spec.discovery_mutual_chap.user,
                discovery_mutual_password=spec.discovery_mutual_chap.secret,
            )
    return {
        "fabric_modules": [fabric] if spec.discovery_chap else [],
        "storage_objects": [storage_object],
        "targets": [{"fabric": "iscsi", "wwn": spec.iqn, "tpgs": [tpg]}],
    }


def _sanlab_command(config_path: Path) -> list[str]:
    """`sanlab target serve --config CONFIG` (callers append options such as `--no-api`)."""
    return sanlab_command(config_path)


def _wait_ready(proc: subprocess.Popen[bytes], portals: list[tuple[str, int]], log: Path, what: str) -> None:
    """Return once every portal accepts (READY_TIMEOUT_S in all), else TargetStartError with the log tail."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for host, port in portals:
        if not wait_for_port(host, port, max(0.1, deadline - time.monotonic()), proc):
            status = f"exited {proc.returncode}" if proc.poll() is not None else "still running"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise TargetStartError(f"{what} not accepting on {host}:{port} ({status}); log:\n{tail}")


@contextmanager
def _start_sanlab(spec: TargetSpec, workdir: Path) -> Iterator[RunningTarget]:
    config_path = workdir / "saveconfig.json"
    config_path.write_text(json.dumps(lio_saveconfig(spec), indent=2))
    log = workdir / "sanlab-target.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = spawn_logged(_sanlab_command(config_path), log, cwd=workdir, env=env)
    try:
        _wait_ready(proc, spec.portals, log, "sanlab target")
        yield RunningTarget(kind="sanlab", spec=spec, lun=0, log_path=log, pid=proc.pid)
    finally:
        stop_process(proc, timeout_s=STOP_TIMEOUT_S, log=log, tag="harness")


@contextmanager
def _start_tgtd(spec: TargetSpec, workdir: Path) -> Iterator[RunningTarget]:
    host, port = spec.portals[0]
    with run_tgtd(
        host,
        port,
        workdir / "tgtd.log",
        ready_timeout_s=READY_TIMEOUT_S,
        tag="harness",
        log_success=True,
    ) as tgtd:
        for ip, extra_port in spec.portals[1:]:
            tgtd.add_portal(ip, extra_port)
        tgtd.add_target(spec.iqn, [spec.backing_file])
        if not spec.demo_mode:
            for initiator in spec.acl_initiators:
                tgtd.bind_initiator(initiator)
        if spec.chap:
            tgtd.add_account(spec.chap.user, spec.chap.secret, tid=1)
        if spec.mutual_chap:
            tgtd.add_account(spec.mutual_chap.user, spec.mutual_chap.secret, tid=1, outgoing=True)
        if spec.discovery_chap:  # no target id: tgtd's global account, used by SendTargets discovery sessions
            tgtd.add_account(spec.discovery_chap.user, spec.discovery_chap.secret)
        if spec.discovery_mutual_chap:
            dm = spec.discovery_mutual_chap
            tgtd.add_account(dm.user, dm.secret, outgoing=True)
        _wait_ready(tgtd.proc, spec.portals, tgtd.log, "tgtd")
        yield RunningTarget(kind="tgtd", spec=spec, lun=1, log_path=tgtd.log, pid=tgtd.proc.pid)


@contextmanager
def start_target(kind: str, spec: TargetSpec, workdir: Path) -> Iterator[RunningTarget]:
    """Run a target of `kind` ("sanlab" or "tgtd") for `spec` until the context ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    if not spec.backing_file.exists():
        make_backing_file(spec.backing_file, spec.lun_size)
    if kind == "sanlab":
        with _start_sanlab(spec, workdir) as running:
            yield running
    elif kind == "tgtd":
        with _start_tgtd(spec, workdir) as running:
            yield running
    else:
        raise ValueError(f"unknown target kind {kind!r}; one of {TARGET_KINDS}")


# ---------------------------------------------------------------- our target from its native config, by hand


def write_native_config(
    workdir: Path, port: int, state_dir: Path, *, host: str = "127.0.0.1", lun_size: int = 16 * 1024 * 1024
) -> tuple[Path, TargetSpec]:
    """A one-LUN target on `host:port` (sparse backing file `workdir/disk0.img`, demo mode) written as the
    project's native JSON config `workdir/config.json` through the LIO saveconfig import, with `state_dir` for
    its persistent state (APTPL files); returns the config path and the spec (its `iqn`)."""
    from target.config.lio import import_saveconfig
    from target.config.native import dump_config

    spec = TargetSpec(
        backing_file=make_backing_file(workdir / "disk0.img", lun_size),
        portals=[(host, port)],
        lun_size=lun_size,
    )
    cfg, _ = import_saveconfig(lio_saveconfig(spec))
    cfg.state_dir = str(state_dir)
    path = workdir / "config.json"
    path.write_text(json.dumps(dump_config(cfg), indent=1))
    return path, spec


@contextmanager
def sanlab_serving(
    config: Path,
    port: int | Sequence[int],
    log: Path,
    *extra: str,
    host: str = "127.0.0.1",
    api: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """`sanlab target serve --config CONFIG [--no-api] EXTRA...` (output appended to `log`, so restarts keep one
    log), yielded once it accepts on `host` at every port; SIGTERM (then SIGKILL) when the block ends unless it
    has already exited (a test may kill it itself). `api`: keep the management API (e.g. EXTRA = --socket S)."""
    ports = [port] if isinstance(port, int) else list(port)
    proc = spawn_logged(sanlab_command(config, *(() if api else ("--no-api",)), *extra), log, append=True)
    try:
        _wait_ready(proc, [(host, p) for p in ports], log, "sanlab target")
        yield proc
    finally:
        stop_process(proc, timeout_s=STOP_TIMEOUT_S, log=log, tag="harness")
