"""The benchmark run: both targets up on loopback, alternating A/B measurements over rounds, results written.

Order: in round r, workload i, sanlab goes first when (r + i) is even and tgtd first otherwise, so neither
target always runs on a warmer (or busier) machine. Each measurement is a fresh load-generator process. The first
time a (workload, target) pair runs, a short qemu-img pilot (not counted) warms it up and sizes the op count
for ``seconds``; later rounds size the count from the previous measurement. iscsi-perf runs for ``seconds``
(whole seconds, at least 1). iperf3 on loopback once per round gives the physical limit.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.bench import procstat, report, scale, stats, targets, tools
from lab.bench.stats import Sample
from lab.bench.tools import ToolError
from lab.bench.workloads import Workload, format_size
from lab.results import RunDir

DEFAULT_ROUNDS = 3
DEFAULT_SECONDS = 4.0
DEFAULT_LUN_SIZE = 1024**3
DEFAULT_WORKDIR = Path("/var/tmp/sanlab-bench")
PILOT_OPS = {4096: 1000}
PILOT_BYTES = 32 * 1024 * 1024
MIN_OPS = 64
MAX_OPS = 50_000_000
ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class BenchOptions:
    workloads: list[Workload]
    scenario: str = "bench"
    rounds: int = DEFAULT_ROUNDS
    seconds: float = DEFAULT_SECONDS
    kinds: tuple[str, ...] = targets.KINDS
    lun_size: int = DEFAULT_LUN_SIZE
    results: Path = Path("results")
    workdir: Path = DEFAULT_WORKDIR
    iperf3: bool = True
    scale: bool = False
    scale_luns: int = 1000
    scale_sessions: int = 100
    host: str = "127.0.0.1"
    log: Callable[[str], None] = field(default=print)


def pilot_ops(w: Workload) -> int:
    return PILOT_OPS.get(w.bs, max(MIN_OPS, PILOT_BYTES // w.bs))


def ops_for(rate_iops: float, seconds: float) -> int:
    return int(min(MAX_OPS, max(MIN_OPS, rate_iops * seconds)))


def order(kinds: tuple[str, ...], rnd: int, index: int) -> list[str]:
    ks = list(kinds)
    return ks if (rnd + index) % 2 == 0 else ks[::-1]


def tool_versions() -> dict[str, str]:
    out = {}
    for name, cmd in (
        ("qemu-img", ["qemu-img", "--version"]),
        ("iperf3", ["iperf3", "--version"]),
        ("tgtd", ["dpkg-query", "-W", "-f=${Version}", "tgt"]),
        ("iscsi-perf", ["dpkg-query", "-W", "-f=${Version}", "libiscsi-bin"]),
    ):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            text = (proc.stdout or proc.stderr).strip().splitlines()
            out[name] = text[0] if text and proc.returncode == 0 else "unknown"
        except (OSError, subprocess.TimeoutExpired):
            out[name] = "missing"
    return out


def git_rev(root: Path = ROOT) -> str:
    """The project's revision (short hash, "-dirty" when the work tree has changes), "unknown" outside git:
    the sanlab side of a benchmark is whatever code the checkout holds."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class Bench:
    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.rates: dict[tuple[str, str], float] = {}
        self.samples: list[Sample] = []
        self.loopback: list[float] = []
        self.loopback_error = ""
        self.versions: dict[str, str] | None = None  # of the load generators and tgt; read once when None

    def measure(self, w: Workload, t: targets.BenchTarget, rnd: int, rd: RunDir) -> Sample:
        key = (w.name, t.kind)
        url = t.url()
        seconds = self.opts.seconds
        timeout = seconds * 8 + 60
        try:
            if w.tool == "qemu":
                if key not in self.rates:
                    n = pilot_ops(w)
                    out = tools.run_tool(tools.qemu_command(w, url, n), timeout)
                    pilot = tools.parse_qemu(out, w, n)
                    rd.record("pilot", workload=w.name, target=t.kind, ops=n, iops=pilot.iops)
                    self.rates[key] = pilot.iops
                count = ops_for(self.rates[key], seconds)
                cmd = tools.qemu_command(w, url, count)
            else:
                secs = max(1, round(seconds))
                cmd = tools.iscsi_perf_command(w, url, secs)
            before = procstat.usage(t.pid)
            started = time.monotonic()
            out = tools.run_tool(cmd, timeout)
            wall = time.monotonic() - started
            after = procstat.usage(t.pid)
            result = (
                tools.parse_qemu(out, w, count) if w.tool == "qemu" else tools.parse_iscsi_perf(out, w, secs)
            )
            self.rates[key] = result.iops
            return Sample(
                workload=w.name,
                target=t.kind,
                round=rnd,
                ok=True,
                iops=result.iops,
                bytes_per_s=result.bytes_per_s,
                ios=result.ios,
                bytes=result.bytes,
                seconds=result.seconds,
                wall_s=round(wall, 3),
                cpu_s=round(after.cpu_s - before.cpu_s, 3),
                rss_peak_kib=after.rss_peak_kib,
                load1=round(os.getloadavg()[0], 2),
                command=" ".join(cmd),
            )
        except ToolError as e:
            rss = procstat.usage(t.pid).rss_peak_kib
            return Sample(
                w.name, t.kind, rnd, ok=False, rss_peak_kib=rss, load1=os.getloadavg()[0], error=str(e)[:3000]
            )

    def loopback_round(self, rd: RunDir) -> None:
        try:
            bps = tools.iperf3_loopback(targets.free_port(self.opts.host), seconds=3, host=self.opts.host)
            self.loopback.append(bps)
            rd.record("iperf3", bytes_per_s=bps, load1=os.getloadavg()[0])
        except ToolError as e:
            self.loopback_error = str(e)
            rd.record("iperf3", error=str(e))

    def run(self) -> tuple[dict[str, Any], RunDir]:
        o = self.opts
        t0 = time.monotonic()
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rd = RunDir.create(o.results, o.scenario)
        o.log(f"bench: results in {rd.path}")
        missing = tools.missing_tools(o.workloads, o.iperf3)
        phases: list[dict[str, Any]] = []
        if "iperf3" in missing:
            o.log("bench: " + tools.install_hint("iperf3") + " -- the loopback limit is not measured")
            self.loopback_error = tools.install_hint("iperf3")
            missing.remove("iperf3")
        run_ok = not missing
        detail = "; ".join(tools.install_hint(m) for m in missing)
        lun_file = o.workdir / f"lun-{format_size(o.lun_size)}.img"
        scale_results: dict[str, dict[str, Any]] = {}
        if run_ok:
            try:
                if o.workloads:
                    o.log(f"bench: pre-filling {lun_file} ({format_size(o.lun_size)})")
                    targets.prefill(lun_file, o.lun_size)
                with ExitStack() as stack:
                    kinds = o.kinds if o.workloads else ()
                    up = {
                        k: stack.enter_context(
                            targets.start(k, [lun_file], o.lun_size, rd.path / "targets", o.host)
                        )
                        for k in kinds
                    }
                    for k, t in up.items():
                        rd.record("target", target=k, pid=t.pid, url=t.url())
                    for rnd in range(1, o.rounds + 1 if o.workloads else 1):
                        if o.iperf3 and not self.loopback_error:
                            self.loopback_round(rd)
                        for i, w in enumerate(o.workloads):
                            for k in order(o.kinds, rnd, i):
                                s = self.measure(w, up[k], rnd, rd)
                                self.samples.append(s)
                                rd.record("sample", **s.as_record())
                                shown = (
                                    f"{s.iops:,.0f} IOPS {s.bytes_per_s / 1e6:,.1f} MB/s"
                                    if s.ok
                                    else "FAILED"
                                )
                                o.log(f"round {rnd}/{o.rounds} {w.name:<24} {k:<6} {shown} (load {s.load1})")
            except targets.TargetStartError as e:
                run_ok, detail = False, str(e)[:3000]
            phases.append(
                {
                    "name": "run",
                    "passed": run_ok,
                    "seconds": round(time.monotonic() - t0, 3),
                    "detail": detail,
                }
            )
            if o.scale:
                t1 = time.monotonic()
                scale_ok = True
                for k in o.kinds:
                    o.log(f"bench: scale, {k}: {o.scale_luns} LUNs, {o.scale_sessions} sessions")
                    try:
                        scale_results[k] = scale.measure(
                            k, o.scale_luns, o.scale_sessions, o.workdir / f"scale-{k}"
                        )
                        scale_ok = scale_ok and not scale_results[k]["errors"]
                    except targets.TargetStartError as e:
                        scale_results[k] = {"errors": [str(e)[:2000]]}
                        scale_ok = False
                    rd.record("scale", target=k, **scale_results[k])
                phases.append(
                    {
                        "name": "verify",
                        "passed": scale_ok,
                        "seconds": round(time.monotonic() - t1, 3),
                        "detail": "scale",
                    }
                )
        else:
            phases.append({"name": "run", "passed": False, "seconds": 0.0, "detail": detail})
        summary = self.summary(rd, started, time.monotonic() - t0, phases, scale_results)
        rd.write_summary(summary)
        figs = stats.workload_figures(o.workloads, self.samples)
        rd.write_text("bench.md", report.markdown(summary, figs))
        if self.samples:
            report.chart(figs, f"sanlab bench {rd.run_id}").savefig(rd.path / "bench.png", dpi=100)
        _index(o.results, summary, rd)
        return summary, rd

    def summary(
        self,
        rd: RunDir,
        started: str,
        duration: float,
        phases: list[dict[str, Any]],
        scale_results: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        o = self.opts
        figs = stats.workload_figures(o.workloads, self.samples)
        loop = stats.Spread.of([b / stats.MB for b in self.loopback])
        loop_mb_s = loop.median if loop else None
        goals = stats.goals(figs, o.rounds) if set(o.kinds) == {"sanlab", "tgtd"} else []
        scale_flat = scale.flat({k: v for k, v in scale_results.items() if "start_s" in v})
        metrics = stats.flat_metrics(figs, loop_mb_s, scale_flat)
        if self.versions is None:
            self.versions = {**tool_versions(), "sanlab": git_rev()}
        versions = self.versions
        initiators = []
        for tool, kind in (("qemu", "qemu-img bench"), ("iscsiperf", "iscsi-perf")):
            mine = [s for s in self.samples if s.workload.startswith(tool + "-")]
            if not any(w.tool == tool for w in o.workloads):
                continue
            checks = [
                {
                    "name": f"{s.workload} {s.target} round {s.round}",
                    "status": "passed" if s.ok else "failed",
                    "detail": f"{s.iops:.0f} IOPS, {s.bytes_per_s / 1e6:.1f} MB/s" if s.ok else s.error[:500],
                    "seconds": round(s.wall_s, 3),
                }
                for s in mine
            ]
            name = "qemu-img" if tool == "qemu" else "iscsi-perf"
            initiators.append(
                {
                    "name": name,
                    "kind": kind,
                    "release": None,
                    "versions": {name: versions.get(name, "unknown")},
                    "checks": checks,
                    "passed": bool(checks) and all(c["status"] == "passed" for c in checks),
                }
            )
        measured = bool(self.samples) or not o.workloads
        all_ok = all(p["passed"] for p in phases) and measured and all(s.ok for s in self.samples)
        loads = [s.load1 for s in self.samples]
        detail: dict[str, Any] = {
            "config": {
                "rounds": o.rounds,
                "seconds": o.seconds,
                "kinds": list(o.kinds),
                "workloads": [w.name for w in o.workloads],
                "lun_size": o.lun_size,
                "lun": targets.describe_lun(o.lun_size),
                "order": "alternating A/B per round and workload",
                "host": o.host,
            },
            "versions": versions,
            "workloads": [f.as_dict() for f in figs],
            "loopback": {"mb_s": loop.as_dict() if loop else None, "error": self.loopback_error},
            "loopback_fraction": stats.loopback_fractions(figs, loop_mb_s),
            "load1": {"min": min(loads), "max": max(loads)} if loads else {},
            "cpu_count": os.cpu_count(),
        }
        if scale_results:
            detail["scale"] = {
                f"{k}.{n}": v for k, r in scale_results.items() for n, v in r.items() if n != "errors"
            }
            detail["scale_errors"] = {k: r.get("errors", []) for k, r in scale_results.items()}
        return {
            "scenario": rd.scenario,
            "run_id": rd.run_id,
            "started": started,
            "duration_s": round(duration, 3),
            "passed": all_ok,
            "phases": phases,
            "initiators": initiators,
            "targets": [{"name": k, "kind": k} for k in o.kinds],
            "target_kind": "sanlab",
            "git_rev": versions.get("sanlab", "unknown"),
            "bench": metrics,
            "goals": goals,
            "bench_detail": detail,
        }


def _index(results: Path, summary: dict[str, Any], rd: RunDir) -> None:
    """Feed the regression index (lab.report.index.index_run) when that module exists."""
    try:
        from lab.report import index  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        return
    fn = getattr(index, "index_run", None)
    if callable(fn):
        fn(results, summary, rd.path)


def run_bench(opts: BenchOptions) -> tuple[dict[str, Any], RunDir]:
    return Bench(opts).run()
