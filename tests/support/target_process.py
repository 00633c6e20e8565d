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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

TARGET_KINDS = ("sanlab", "tgtd")
DEFAULT_IQN = "iqn.2026-11.org.example.sanlab:test"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class TargetStartError(RuntimeError):
    """The target process did not come up; the message carries its log tail."""


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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_backing_file(path: Path, size: int) -> Path:
    """A sparse file of `size` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def wait_for_port(
    host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    """True once `host:port` accepts a TCP connection; False after `timeout_s` or if `proc` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.1)
    return False


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
    exe = Path(sys.executable).parent / "sanlab"
    if exe.exists():
        return [str(exe), "target", "serve", "--config", str(config_path)]
    return [sys.executable, "-m", "target.cli.main", "target", "serve", "--config", str(config_path)]


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with open(log, "a") as f:
            f.write(f"\n[harness] no exit {STOP_TIMEOUT_S:.0f} s after SIGTERM: SIGKILL\n")
        proc.kill()
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], spec: TargetSpec, log: Path, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    for host, port in spec.portals:
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
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _sanlab_command(config_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, spec, log, "sanlab target")
        yield RunningTarget(kind="sanlab", spec=spec, lun=0, log_path=log, pid=proc.pid)
    finally:
        _stop(proc, log)


def _tgtadm(control_port: int, log: Path, *args: str) -> None:
    cmd = ["tgtadm", "-C", str(control_port), "--lld", "iscsi", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    with open(log, "a") as f:
        f.write(f"[harness] {' '.join(cmd)} -> {proc.returncode} {proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise TargetStartError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


@contextmanager
def _start_tgtd(spec: TargetSpec, workdir: Path) -> Iterator[RunningTarget]:
    if shutil.which("tgtd") is None:
        raise TargetStartError("tgtd not installed (Debian package tgt)")
    log = workdir / "tgtd.log"
    # the control port (1..32767) names tgtd's management socket; derive it from the (free) iSCSI port
    control_port = 1 + spec.portals[0][1] % 32767
    first = spec.portals[0]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["tgtd", "-f", "-C", str(control_port), "--iscsi", f"portal={first[0]}:{first[1]}"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if not wait_for_port(first[0], first[1], READY_TIMEOUT_S, proc):
            raise TargetStartError(f"tgtd not accepting on {first}; log:\n{log.read_text(errors='replace')}")
        adm = lambda *a: _tgtadm(control_port, log, *a)  # noqa: E731
        for ip, port in spec.portals[1:]:
            adm("--mode", "portal", "--op", "new", "--param", f"portal={ip}:{port}")
        adm("--mode", "target", "--op", "new", "--tid", "1", "-T", spec.iqn)
        adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1", "-b", str(spec.backing_file))
        # tgtd checks the initiator address list (any address here) and, when non-empty, the name list
        adm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL")
        if not spec.demo_mode:
            for initiator in spec.acl_initiators:
                adm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-name", initiator)
        if spec.chap:
            adm("--mode", "account", "--op", "new", "--user", spec.chap.user, "--password", spec.chap.secret)
            adm("--mode", "account", "--op", "bind", "--tid", "1", "--user", spec.chap.user)
        if spec.mutual_chap:
            m = spec.mutual_chap
            adm("--mode", "account", "--op", "new", "--user", m.user, "--password", m.secret)
            adm("--mode", "account", "--op", "bind", "--tid", "1", "--user", m.user, "--outgoing")
        # an account bound without --tid is tgtd's global one, used for SendTargets discovery sessions
        if spec.discovery_chap:
            d = spec.discovery_chap
            adm("--mode", "account", "--op", "new", "--user", d.user, "--password", d.secret)
            adm("--mode", "account", "--op", "bind", "--user", d.user)
        if spec.discovery_mutual_chap:
            dm = spec.discovery_mutual_chap
            adm("--mode", "account", "--op", "new", "--user", dm.user, "--password", dm.secret)
            adm("--mode", "account", "--op", "bind", "--user", dm.user, "--outgoing")
        _wait_ready(proc, spec, log, "tgtd")
        yield RunningTarget(kind="tgtd", spec=spec, lun=1, log_path=log, pid=proc.pid)
    finally:
        # tgtd ignores SIGTERM: ask it to shut down through its control socket, then kill
        if proc.poll() is None:
            try:
                _tgtadm(control_port, log, "--mode", "system", "--op", "delete")
                proc.wait(timeout=5)
            except (TargetStartError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=10)


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
