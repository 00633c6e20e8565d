"""`sanlab run` of a failover drill: images -> bring-up -> prepare -> workload (+ faults) -> verify -> tear-down.

What each phase does is in lab.scenario.failover; this module wires the lab to it: the workloads
(lab.workloads) on each initiator's device, the faults (lab.faults) through executors and container names,
metrics (lab.metrics), checks (lab.scenario.checks), plots (lab.plots), the HTML report (lab.report.html) and
the regression index (lab.report.index). Writes results/<scenario>/<run-id>/: summary.json, records.jsonl,
timeline.png, stalls.png, report.md, report.html, ansible/.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from lab.drivers.exec import DockerExec, Executor
from lab.inventory import container_name
from lab.results import RunDir
from lab.scenario import checks as checks_mod
from lab.scenario.failover import (
    FaultRun,
    Timeline,
    WorkloadLike,
    collected,
    measurement_faults,
    verify_verdict,
)
from lab.scenario.model import Scenario
from lab.scenario.runner import LabRun, _base_summary, executor_for, lab_down, lab_up, report_markdown
from lab.topology.model import InitiatorKind

#: seconds a workload's start or stop may take (fio's prefill on a loaded TCG VM is the slow one; every
#: command inside is bounded by the workload itself too)
WORKLOAD_CALL_S = 420


@dataclass
class WorkloadRun:
    initiator: str
    kind: str
    workload: WorkloadLike
    started_at_s: float | None = None
    stopped_at_s: float | None = None
    ok: bool = True
    details: list[str] = field(default_factory=list)


@dataclass
class DrillState:
    devices: dict[str, str] = field(default_factory=dict)
    faults: list[FaultRun] = field(default_factory=list)
    workloads: list[WorkloadRun] = field(default_factory=list)
    timeline: Timeline | None = None
    t0: float = 0.0
    origin_s: float = 0.0
    stop_at_s: float = 0.0
    end_s: float = 0.0
    fault_records: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    workload_rows: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    verify: dict[str, Any] = field(default_factory=lambda: {"ok": False, "detail": "not run"})
    figures: dict[str, Path] = field(default_factory=dict)


def node_container(lab: LabRun, node: str) -> str:
    """The docker container of a topology node (a VM initiator: the qemu-runner container that hosts it)."""
    for ini in lab.topo.initiators:
        if ini.name == node and ini.kind is InitiatorKind.LINUX_VM:
            return container_name(lab.topo, f"{node}-runner")
    return container_name(lab.topo, node)


def node_executor(lab: LabRun, node: str) -> Executor:
    """A VM initiator over SSH; any other node (targets, container initiators) by docker exec."""
    if any(i.name == node for i in lab.topo.initiators):
        return executor_for(lab.topo, node, lab.inventory)
    return DockerExec(container_name(lab.topo, node))


def _prepare(lab: LabRun, sc: Scenario, st: DrillState) -> str:
    from lab.faults import FaultContext, FaultSpec, make_fault
    from lab.workloads import device_for

    for name in dict.fromkeys(n for w in sc.workloads for n in w.initiators):
        ini = next(i for i in lab.topo.initiators if i.name == name)
        st.devices[name] = device_for(lab.topo, ini, node_executor(lab, name))
    ctx = FaultContext(
        topo=lab.topo,
        inventory=lab.inventory,
        container=lambda n: node_container(lab, n),
        executor=lambda n: node_executor(lab, n),
        log=lambda m: lab.console.log(m),
    )
    for f in sc.faults:
        spec = FaultSpec(f.kind, f.at_s, f.name, f.duration_s, dict(f.params))
        st.faults.append(FaultRun(f, make_fault(spec, ctx)))
    devs = ", ".join(f"{k}: {v}" for k, v in st.devices.items())
    return f"devices {devs or 'none'}; {len(st.faults)} faults ready"


def _parallel(
    runs: list[WorkloadRun], call: Callable[[WorkloadRun], str], what: str, now: Callable[[], float]
) -> list[tuple[WorkloadRun, float]]:
    """`call` on every run at once (each bounded by WORKLOAD_CALL_S); returns (run, drill time it returned) for
    the runs whose call succeeded; failures are noted on the run."""
    done: list[tuple[WorkloadRun, float]] = []
    if not runs:
        return done

    def one(run: WorkloadRun) -> float:
        run.details.append(call(run))
        return now()

    pool = ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix=f"workload-{what}")
    try:
        futures = [(run, pool.submit(one, run)) for run in runs]
        for run, fut in futures:
            try:
                done.append((run, fut.result(timeout=WORKLOAD_CALL_S)))
            except Exception as e:  # recorded on the run; the drill goes on (the checks will fail it)
                run.ok = False
                run.details.append(f"{what} failed: {type(e).__name__}: {e}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return done


def _workload_phase(lab: LabRun, sc: Scenario, st: DrillState, rd: RunDir) -> str:
    from lab.workloads import WorkloadSpec, make_workload

    st.t0 = time.time()

    def now() -> float:
        return time.time() - st.t0

    for w in sc.workloads:
        for slot, name in enumerate(w.initiators):
            wl = make_workload(
                WorkloadSpec(w.kind, dict(w.params)),
                name,
                node_executor(lab, name),
                st.devices[name],
                st.t0,
                max_duration_s=sc.duration_s + 2 * WORKLOAD_CALL_S,
                slot=slot,
            )
            st.workloads.append(WorkloadRun(name, w.kind, wl))
    for run, at in _parallel(st.workloads, lambda r: r.workload.start(), "start", now):
        run.started_at_s = at
    # the timeline starts when every workload runs: `at_s` of each fault counts from here
    st.origin_s = now()
    rd.record("drill-clock", t0=st.t0, timeline_origin_s=round(st.origin_s, 3), duration_s=sc.duration_s)
    lab.console.log(f"workloads running at {st.origin_s:.1f} s on the drill clock; timeline starts")
    timeline = Timeline(st.faults, st.t0, st.origin_s, log=lambda m: lab.console.log(m))
    st.timeline = timeline
    try:
        timeline.run(sc.duration_s)
    finally:
        started = [r for r in st.workloads if r.started_at_s is not None]
        st.stop_at_s = now()  # the workloads' I/O ends here (stop() itself drains and verifies: not a stall)
        for run, at in _parallel(started, lambda r: r.workload.stop(), "stop", now):
            run.stopped_at_s = at
        st.end_s = now()
        timeline.clear_remaining()
        for fr in st.faults:
            rec = fr.record()
            st.fault_records.append(rec)
            rd.record("fault", **rec)
    bad = [fr.entry.name for fr in st.faults if not fr.record()["ok"]]
    failed_wl = [f"{r.kind}@{r.initiator}" for r in st.workloads if not r.ok]
    summary = (
        f"{len(st.workloads)} workloads running from {st.origin_s:.1f} s for {sc.duration_s:g} s; "
        f"{len(st.faults) - len(bad)}/{len(st.faults)} faults injected"
    )
    if bad or failed_wl:
        raise RuntimeError(
            f"{summary}; failed faults: {', '.join(bad) or 'none'}; "
            f"failed workloads: {', '.join(failed_wl) or 'none'}"
        )
    return summary


def _collect(lab: LabRun, st: DrillState, rd: RunDir) -> None:
    for run in st.workloads:
        try:
            got = collected(run.workload.collect(), run.initiator)
        except Exception as e:
            run.ok = False
            run.details.append(f"collect failed: {type(e).__name__}: {e}")
            got = collected({"ok": False}, run.initiator)
        for p in got.probes:
            rd.record("probe", **p)
        for t in got.throughput:
            rd.record("throughput", **t)
        st.probes += got.probes
        st.throughput += got.throughput
        run.ok = run.ok and got.ok
        if got.detail:
            run.details.append(got.detail)
        row = {
            "initiator": run.initiator,
            "workload": run.kind,
            "started_at_s": None if run.started_at_s is None else round(run.started_at_s, 3),
            "stopped_at_s": None if run.stopped_at_s is None else round(run.stopped_at_s, 3),
            "ok": run.ok,
            "errors": got.errors,
            "verify_ok": got.verify_ok,
            "detail": "; ".join(d for d in run.details if d)[-2000:],
        }
        st.workload_rows.append(row)
        rd.record("workload", **row, **got.extra)
        lab.console.log(
            f"{run.kind}@{run.initiator}: {len(got.probes)} probes, {len(got.throughput)} windows, "
            f"errors {got.errors}, verify {got.verify_ok}"
        )


def _verify(lab: LabRun, sc: Scenario, st: DrillState, rd: RunDir) -> str:
    from lab.metrics import summarize_faults

    _collect(lab, st, rd)
    # the last fault's window ends when the workloads were told to stop (their I/O ends there)
    st.rows = summarize_faults(measurement_faults(st.fault_records), st.probes, st.throughput, st.stop_at_s)
    st.verify = verify_verdict(st.workload_rows)
    st.checks = checks_mod.evaluate(sc.checks, st.rows, st.workload_rows, st.fault_records)
    for r in st.rows:
        lab.console.log(
            f"{r['name']}@{r['initiator']}: stall {r['max_stall_s']} s, back to 90% {r['recovered_90_s']} s, "
            f"errors {r['io_errors']}"
        )
    failed = [c["name"] for c in st.checks if c["status"] != "passed"]
    if failed or not st.verify["ok"]:
        raise RuntimeError(f"{st.verify['detail']}; failed checks: {', '.join(failed) or 'none'}")
    return f"{st.verify['detail']}; {len(st.checks)} checks passed"


def _plots(sc: Scenario, st: DrillState, rd: RunDir) -> list[str]:
    """timeline.png and stalls.png; returns problems (a plot that fails is reported, not fatal)."""
    problems = []
    try:
        from lab.plots.timeline import timeline_figure

        title = f"{sc.name} ({sc.target_kind})"
        fig = timeline_figure(st.probes, st.throughput, st.fault_records, st.rows, title)
        fig.savefig(rd.path / "timeline.png", dpi=100)
        st.figures["timeline"] = rd.path / "timeline.png"
    except Exception as e:
        problems.append(f"timeline plot: {type(e).__name__}: {e}")
    try:
        from lab.plots.stalls import stall_bars_figure

        bars = [
            {
                "drill": sc.name,
                "initiator": r["initiator"],
                "target_kind": sc.target_kind,
                "max_stall_s": r["max_stall_s"],
                "recovered_90_s": r["recovered_90_s"],
            }
            for r in st.rows
        ]
        fig = stall_bars_figure(bars, f"{sc.name}: stalls and recovery ({sc.target_kind})")
        fig.savefig(rd.path / "stalls.png", dpi=100)
        st.figures["stalls"] = rd.path / "stalls.png"
    except Exception as e:
        problems.append(f"stall plot: {type(e).__name__}: {e}")
    return problems


def failover_markdown(summary: Mapping[str, Any]) -> str:
    lines = [report_markdown(dict(summary)).rstrip("\n"), "", "## Faults", ""]
    lines += [
        "| fault | kind | initiator | injected (s) | longest stall (s) | first I/O after (s) | 90% back (s) | I/O errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.get("faults", []):
        lines.append(
            f"| {r['name']} | {r['kind']} | {r.get('initiator', '')} | {r['injected_at_s']} | {r['max_stall_s']} | "
            f"{r.get('first_io_after_s')} | {r['recovered_90_s'] if r['recovered_90_s'] is not None else 'never'} | "
            f"{r['io_errors']} |"
        )
    v = summary.get("verify", {})
    lines += ["", f"Data verification: **{'ok' if v.get('ok') else 'FAILED'}** ({v.get('detail', '')})", ""]
    lines += ["## Checks", "", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| `{c['name']}` | {c['status']} | {c.get('detail', '')} |" for c in summary.get("checks", [])]
    for name in ("timeline", "stalls"):
        lines += ["", f"![{name}]({name}.png)"]
    return "\n".join(lines) + "\n"


def run_failover(
    sc: Scenario,
    rd: RunDir,
    results_root: Path,
    *,
    keep: bool,
    console: Console,
    started: dt.datetime,
    t0: float,
) -> tuple[Path, bool]:
    lab = LabRun(sc.topology, rd.path, console)
    st = DrillState()
    ran = False
    if lab_up(lab, sc.bring_up_s) and lab.phase("prepare", lambda: _prepare(lab, sc, st)):
        ran = True
        lab.phase("workload", lambda: _workload_phase(lab, sc, st, rd))
        lab.phase("verify", lambda: _verify(lab, sc, st, rd))
    if not keep:
        lab.phase("tear-down", lambda: lab_down(sc.topology, rd.path))
    problems = _plots(sc, st, rd) if ran else []
    for p in lab.phases:
        rd.record("phase", name=p.name, passed=p.passed, seconds=p.seconds, detail=p.detail)
    passed = (
        ran
        and all(p.passed for p in lab.phases)
        and st.verify["ok"]
        and all(c["status"] == "passed" for c in st.checks)
    )
    summary = _base_summary(sc, rd, started, t0, keep)
    summary.update(
        passed=passed,
        phases=[
            {"name": p.name, "passed": p.passed, "seconds": p.seconds, "detail": p.detail} for p in lab.phases
        ],
        node_checks=lab.node_checks,
        drill_clock={
            "t0": st.t0,
            "timeline_origin_s": round(st.origin_s, 3),
            "duration_s": sc.duration_s,
            "stop_at_s": round(st.stop_at_s, 3),
        },
        faults=st.rows,
        fault_timeline=st.fault_records,
        verify=st.verify,
        checks=st.checks,
        workloads=st.workload_rows,
        devices=st.devices,
    )
    if problems:
        summary["problems"] = problems
    rd.write_summary(summary)
    rd.write_text("report.md", failover_markdown(summary))
    try:
        from lab.report.html import render_html

        rd.write_text("report.html", render_html(summary, st.figures))
    except Exception as e:  # the report is a view: its failure is told, the run's verdict stands
        console.print(f"[red]report.html: {type(e).__name__}: {e}[/red]")
    try:
        from lab.report.index import index_run

        index_run(results_root, summary, rd.path)
    except Exception as e:
        console.print(f"[red]index: {type(e).__name__}: {e}[/red]")
    return rd.path, passed
