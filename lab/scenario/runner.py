"""Bring-up, drill and tear-down, in fixed phases: images -> bring-up -> prepare -> run -> verify -> tear-down.

`lab_up` renders the inventory into the run directory and runs playbooks/up.yml, then testinfra on every node;
`lab_down` runs playbooks/down.yml and sweeps anything left carrying the lab's label; `run_scenario` does a
whole drill and writes results/<scenario>/<run-id>/ (summary.json, records.jsonl, matrix.png, matrix.md,
report.md, ansible/). Every external step is bounded in time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from lab.drivers.exec import DockerExec, Executor, SshExec
from lab.drivers.initiators import (
    CHECKS,
    Check,
    InitiatorReport,
    ipxe_checks,
    libiscsi_checks,
    linux_vm_checks,
    qemu_driver_checks,
)
from lab.inventory import LABEL, ImageInfo, container_name, hosts_of, render_inventory, write_inventory
from lab.plots.matrix import matrix_figure, matrix_markdown
from lab.results import RunDir
from lab.scenario.model import Scenario
from lab.topology.model import InitiatorKind, Topology
from lab.topology.target_config import lun_path

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
BIN = Path(sys.executable).parent
#: ssh client settings for lab VMs, which make a fresh host key on every boot (testinfra reads them as ssh -F;
#: its --ssh-extra-args option is not passed on to the backend in 10.2.2)
SSH_LAB_CONFIG = """Host *
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 20
"""


@dataclass
class Phase:
    name: str
    passed: bool
    seconds: float
    detail: str = ""


@dataclass
class LabRun:
    topo: Topology
    run_dir: Path
    console: Console
    phases: list[Phase] = field(default_factory=list)
    images: dict[str, ImageInfo] = field(default_factory=dict)
    inventory: dict[str, Any] = field(default_factory=dict)
    node_checks: list[dict[str, Any]] = field(default_factory=list)  # testinfra, one entry per node

    def phase(self, name: str, fn: Callable[[], str]) -> bool:
        t0 = time.monotonic()
        with self.console.status(f"[bold]{name}[/bold] ..."):
            try:
                detail, ok = fn(), True
            except Exception as e:  # a phase failure is a result, reported in summary.json
                detail, ok = f"{type(e).__name__}: {e}", False
        p = Phase(name, ok, round(time.monotonic() - t0, 3), detail[-2000:])
        self.phases.append(p)
        colour = "green" if ok else "red"
        self.console.print(
            f"[{colour}]{name}: {'done' if ok else 'FAILED'}[/{colour}] ({p.seconds:.1f} s) {detail[-300:] if not ok else ''}"
        )
        return ok


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(PLAYBOOKS / "roles"),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    return env


def run_playbook(playbook: str, inventory: Path, log: Path, timeout: float) -> None:
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / playbook)]
    with log.open("w") as f:
        try:
            cp = subprocess.run(
                argv, stdout=f, stderr=subprocess.STDOUT, env=ansible_env(), timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{playbook} timed out after {timeout:.0f} s (log: {log})") from e
    if cp.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{playbook} failed (rc {cp.returncode}, log: {log}):\n" + "\n".join(tail))


def testinfra_targets(
    topo: Topology, inventory: dict[str, Any]
) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(node name, host URL, role, facts) for every node testinfra checks."""
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    for name, hv in hosts_of(inventory, "targets").items():
        facts = {
            "portals": hv["iscsi_target_portals"],
            "luns": hv["iscsi_target_luns"],
            "lun_dir": hv["iscsi_target_lun_dir"],
        }
        out.append((name, f"docker://{container_name(topo, name)}", "target", facts))
    for group, role in (
        ("linux_initiators", "linux"),
        ("libiscsi_initiators", "libiscsi"),
        ("qemu_initiators", "qemu"),
        ("ipxe_initiators", "qemu"),
    ):
        for name, hv in hosts_of(inventory, group).items():
            facts = {
                "iqn": hv["iscsi_initiator_name"],
                "target_iqn": hv["iscsi_target_iqn"],
                "portals": hv["iscsi_portals"],
                "multipath": hv["iscsi_multipath"],
            }
            if role == "linux":
                url = (
                    f"ssh://root@{hv['ansible_host']}:{hv['ansible_port']}"
                    f"?ssh_identity_file={hv['ansible_ssh_private_key_file']}"
                )
            else:
                url = f"docker://{container_name(topo, name)}"
            out.append((name, url, role, facts))
    return out


def junit_cases(xml_path: Path) -> list[dict[str, str]]:
    """Test cases of a pytest JUnit XML file: [{test, status, detail}] (status passed|failed|skipped)."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as e:
        return [{"test": "(junit)", "status": "failed", "detail": f"no readable report: {e}"}]
    cases = []
    for tc in root.iter("testcase"):
        status, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                status = "skipped" if tag == "skipped" else "failed"
                detail = (el.get("message") or el.text or "").strip()[:300]
                break
        cases.append({"test": tc.get("name", "?"), "status": status, "detail": detail})
    return cases


def run_testinfra(topo: Topology, inventory: dict[str, Any], log: Path, out: list[dict[str, Any]]) -> str:
    """testinfra (playbooks/testinfra/test_lab_node.py) on every node; one entry per node appended to `out`
    ({node, host, role, passed, seconds, tests: [{test, status, detail}]}), which lands in summary.json."""
    failed = []
    ssh_config = log.parent / "ssh_config"
    ssh_config.write_text(SSH_LAB_CONFIG)
    with log.open("w") as f:
        for node, url, role, facts in testinfra_targets(topo, inventory):
            env = dict(os.environ, SANLAB_NODE_ROLE=role, SANLAB_NODE_FACTS=json.dumps(facts))
            xml = log.parent / f"testinfra-{node}.xml"
            xml.unlink(missing_ok=True)
            argv = [
                str(BIN / "pytest"),
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=",
                f"--junitxml={xml}",
                f"--hosts={url}&ssh_config={ssh_config}" if url.startswith("ssh://") else f"--hosts={url}",
                str(PLAYBOOKS / "testinfra" / "test_lab_node.py"),
            ]
            f.write(f"== {node}: {url} ({role})\n")
            f.flush()
            t0 = time.monotonic()
            try:
                cp = subprocess.run(
                    argv,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=300,
                    check=False,
                    cwd=str(log.parent),
                )
                rc = cp.returncode
            except subprocess.TimeoutExpired:
                rc = 124
            tests = junit_cases(xml)
            ok = rc == 0 and all(t["status"] != "failed" for t in tests)
            out.append(
                {
                    "node": node,
                    "host": url.split("?")[0],
                    "role": role,
                    "passed": ok,
                    "seconds": round(time.monotonic() - t0, 3),
                    "tests": tests,
                }
            )
            if not ok:
                failed.append(url.split("?")[0])
    if failed:
        raise RuntimeError(f"testinfra failed on {', '.join(failed)} (log: {log})")
    return f"testinfra: {len(out)} nodes checked"


def lab_up(lab: LabRun, timeout: float = 3600) -> bool:
    from lab.drivers.images import ensure_images

    ansible_dir = lab.run_dir / "ansible"
    ansible_dir.mkdir(parents=True, exist_ok=True)

    def images() -> str:
        try:
            from lab.images.docker_setup import ensure_docker  # type: ignore[import-not-found,unused-ignore]

            ensure_docker()
        except ImportError:
            pass
        lab.images = ensure_images(lab.topo, progress=lambda m: lab.console.log(m))
        return ", ".join(sorted(k for k in lab.images if "@" not in k))

    def bring_up() -> str:
        lab.inventory = render_inventory(lab.topo, lab.images, lab.run_dir)
        inv = write_inventory(lab.inventory, ansible_dir / "inventory.yml")
        run_playbook("up.yml", inv, ansible_dir / "up.log", timeout)
        return run_testinfra(lab.topo, lab.inventory, ansible_dir / "testinfra.log", lab.node_checks)

    return lab.phase("images", images) and lab.phase("bring-up", bring_up)


def lab_down(topo: Topology, run_dir: Path, timeout: float = 600) -> str:
    """playbooks/down.yml, then a sweep by label with the docker CLI (nothing the lab made survives)."""
    ansible_dir = run_dir / "ansible"
    ansible_dir.mkdir(parents=True, exist_ok=True)
    inv = {
        "all": {
            "vars": {"lab_name": topo.name, "lab_label": LABEL},
            "children": {
                "lab_control": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                }
            },
        }
    }
    err = ""
    try:
        run_playbook(
            "down.yml",
            write_inventory(inv, ansible_dir / "down-inventory.yml"),
            ansible_dir / "down.log",
            timeout,
        )
    except RuntimeError as e:
        err = str(e)
    flt = f"label={LABEL}={topo.name}"
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", flt], capture_output=True, text=True, timeout=60, check=False
    ).stdout.split()
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=120, check=False)
    nets = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", flt],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.split()
    if nets:
        subprocess.run(["docker", "network", "rm", *nets], capture_output=True, timeout=120, check=False)
    vols = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", flt],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.split()
    if vols:
        subprocess.run(["docker", "volume", "rm", "-f", *vols], capture_output=True, timeout=120, check=False)
    return (
        f"removed {len(left)} leftover containers, {len(nets)} networks, {len(vols)} volumes after the playbook"
        + (f"; {err}" if err else "")
    )


def executor_for(topo: Topology, name: str, inventory: dict[str, Any]) -> Executor:
    hv = hosts_of(inventory, "initiators").get(name, {})
    if hv.get("ansible_connection") == "community.docker.docker":
        return DockerExec(hv["ansible_host"])
    return SshExec(name, hv["ansible_host"], int(hv["ansible_port"]), hv["ansible_ssh_private_key_file"])


def compat_drill(lab: LabRun, rd: RunDir) -> list[InitiatorReport]:
    reports: list[InitiatorReport] = []
    topo = lab.topo
    for ini in topo.initiators:
        lab.console.log(f"checks on {ini.name} ({ini.kind})")
        ex = executor_for(topo, ini.name, lab.inventory)
        try:
            if ini.kind is InitiatorKind.IPXE:
                tgt = topo.target(ini.target)
                lun = next(lu for lu in tgt.luns if lu.index == ini.lun)
                rep = ipxe_checks(
                    topo, ini, ex, DockerExec(container_name(topo, tgt.name)), lun_path(tgt, lun.name)
                )
            else:
                fn = {
                    InitiatorKind.LINUX_VM: linux_vm_checks,
                    InitiatorKind.LIBISCSI: libiscsi_checks,
                    InitiatorKind.QEMU_DRIVER: qemu_driver_checks,
                }[ini.kind]
                rep = fn(topo, ini, ex)
        except Exception as e:  # one initiator's crash must not hide the others' results
            rep = InitiatorReport(ini.name, ini.kind.value, ini.release.value if ini.release else None)
            rep.checks = [Check(c, "failed", f"{type(e).__name__}: {e}") for c in CHECKS]
        for c in rep.checks:
            rd.record(
                "check", initiator=ini.name, initiator_kind=ini.kind.value, release=rep.release, **c.as_dict()
            )
        lab.console.log(f"{ini.name}: {'passed' if rep.passed else 'FAILED'}")
        reports.append(rep)
    return reports


def git_rev() -> str:
    """`git rev-parse --short HEAD` of the project, with "-dirty" when the work tree has changes ("" if unknown)."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=20, check=False,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=20, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return f"{rev}-dirty" if rev and dirty else rev


def _base_summary(sc: Scenario, rd: RunDir, started: dt.datetime, t0: float, keep: bool) -> dict[str, Any]:
    return {
        "scenario": sc.name,
        "run_id": rd.run_id,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 3),
        "passed": False,
        "kept": keep,
        "target_kind": sc.target_kind,
        "git_rev": git_rev(),
        "phases": [],
        "targets": [{"name": t.name, "kind": t.kind.value, "iqn": t.iqn} for t in sc.topology.targets],
        "initiators": [],
    }


def run_scenario(
    sc: Scenario, results_root: Path, *, keep: bool = False, console: Console | None = None
) -> tuple[Path, bool]:
    console = console or Console(stderr=True)
    rd = RunDir.create(results_root, sc.name)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    rd.record(
        "scenario", name=sc.name, source=sc.source, topology=sc.topology.name, target_kind=sc.target_kind
    )
    if sc.skip_reason is not None:
        # the drill does not apply to this target kind: say why, run nothing, pass (nothing failed)
        summary = _base_summary(sc, rd, started, t0, keep)
        summary.update(passed=True, skipped=sc.skip_reason)
        rd.write_summary(summary)
        rd.write_text("report.md", f"# {sc.name}: skipped ({sc.target_kind})\n\n{sc.skip_reason}\n")
        console.print(f"[yellow]{sc.name}: not applicable to {sc.target_kind}: {sc.skip_reason}[/yellow]")
        return rd.path, True
    if sc.drill == "failover":
        from lab.scenario.drill import run_failover

        return run_failover(sc, rd, results_root, keep=keep, console=console, started=started, t0=t0)
    lab = LabRun(sc.topology, rd.path, console)
    reports: list[InitiatorReport] = []
    up = lab_up(lab, sc.bring_up_s)
    if up:
        lab.phase("prepare", lambda: "boot sector for iPXE is placed by its check; targets ready")

        def run() -> str:
            reports.extend(compat_drill(lab, rd))
            return f"{sum(r.passed for r in reports)}/{len(reports)} initiators passed"

        lab.phase("run", run)
    if reports:
        fig = matrix_figure([r.as_dict() for r in reports], title=f"{sc.name}: initiator x check")
        fig.savefig(rd.path / "matrix.png", dpi=110)
        rd.write_text("matrix.md", matrix_markdown([r.as_dict() for r in reports]))

    def verify() -> str:
        bad = [r.name for r in reports if not r.passed]
        if not reports or bad:
            raise RuntimeError(f"failed initiators: {', '.join(bad) or 'none ran'}")
        return "every initiator passed"

    lab.phase("verify", verify)
    if not keep:
        lab.phase("tear-down", lambda: lab_down(sc.topology, rd.path))
    passed = all(p.passed for p in lab.phases) and bool(reports)
    for p in lab.phases:
        rd.record("phase", name=p.name, passed=p.passed, seconds=p.seconds, detail=p.detail)
    summary = _base_summary(sc, rd, started, t0, keep)
    summary.update(
        passed=passed,
        phases=[
            {"name": p.name, "passed": p.passed, "seconds": p.seconds, "detail": p.detail} for p in lab.phases
        ],
        initiators=[r.as_dict() for r in reports],
        node_checks=lab.node_checks,
    )
    rd.write_summary(summary)
    rd.write_text("report.md", report_markdown(summary))
    return rd.path, passed


def report_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# {summary['scenario']}: {'passed' if summary['passed'] else 'FAILED'}",
        "",
        f"run `{summary['run_id']}`, started {summary['started']}, {summary['duration_s']:.0f} s",
        "",
        "| phase | result | s |",
        "|---|---|---|",
    ]
    lines += [
        f"| {p['name']} | {'done' if p['passed'] else 'FAILED'} | {p['seconds']:.1f} |"
        for p in summary["phases"]
    ]
    if summary["initiators"]:
        lines += [
            "",
            "## Initiators",
            "",
            matrix_markdown(summary["initiators"]),
            "![matrix](matrix.png)",
            "",
        ]
        for ini in summary["initiators"]:
            vers = ", ".join(f"{k} {v}" for k, v in ini["versions"].items())
            lines.append(
                f"- **{ini['name']}** ({ini['kind']}{', ' + ini['release'] if ini['release'] else ''}): {vers}"
            )
    if summary.get("node_checks"):
        lines += [
            "",
            "## Node checks (testinfra)",
            "",
            "| node | host | result | tests |",
            "|---|---|---|---|",
        ]
        for nc in summary["node_checks"]:
            counts = {s: sum(t["status"] == s for t in nc["tests"]) for s in ("passed", "failed", "skipped")}
            lines.append(
                f"| {nc['node']} | `{nc['host']}` | {'passed' if nc['passed'] else 'FAILED'} | "
                + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                + " |"
            )
    failed = [p for p in summary["phases"] if not p["passed"]]
    if failed:
        lines += ["", "## Failures", ""] + [f"- {p['name']}: `{p.get('detail', '')[-500:]}`" for p in failed]
    return "\n".join(lines) + "\n"
