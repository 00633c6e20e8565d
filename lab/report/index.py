"""The regression index: ``results/index.jsonl``, one JSON line per run.

    {run_id, scenario, target_kind, git_rev, started, passed, verify_ok, skipped, path, metrics: {...}}

(``skipped``: the reason when the scenario did not apply to the target kind; such runs are never baselines.)

Metrics of a run (None/absent when the run has no such figure):

- ``max_stall_s``       the longest stall over every (fault, initiator) row of summary["faults"]
- ``recovered_90_s``    the longest time back to 90 % of pre-fault throughput over the rows
- ``first_io_after_s``  the longest time from an injection to the first completed I/O
- ``unrecovered``       rows with a baseline whose throughput never came back (recovered_90_s None)
- ``io_errors``         I/O errors the applications saw: the larger of the faults' sum and the workloads' sum
                        (they count the same errors from two sides)
- ``throughput_bps``, ``iops``   the median pre-fault baseline over the rows
- ``initiators_failed`` compat drills: initiators with a failed check
- ``bench.<name>``      every number of summary["bench"] (benchmarks)

Direction (`lower_is_better`): rates and shares (``*_iops``, ``*_mb_s``, ``*_bps``, ``*_per_s``, ``*_ratio``,
``*_fraction``) are *higher is better*; names that speak of time (``*_s``), stalls, latency, errors, failures,
CPU or memory use are *lower is better*; anything else higher is better.
`compare(run, baseline, threshold)` returns the regressions: higher-is-better metrics that drop by more than
`threshold` (relative), lower-is-better metrics that rise by more than `threshold` AND, for metrics in seconds
(``*_s``), by more than ``min_delta_s`` absolute (a 0.1 s stall growing to 0.2 s is +100 % and noise), a
metric the baseline has and the run lacks, and a run that did not pass.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INDEX = "index.jsonl"
PROJECT_DIR = Path(__file__).resolve().parents[2]
BASELINE_MODES = ("previous", "best", "latest-passed")
#: rates and shares (checked first): higher is better, even when the unit ends in "_s" (MB/s, logins/s)
HIGHER_IS_BETTER = re.compile(r"(_mb_s|_per_s|_bps|iops|_ratio|_fraction|throughput)$", re.IGNORECASE)
#: times, stalls, errors, failures, resource use: lower is better
LOWER_IS_BETTER = re.compile(
    r"(stall|recover|error|lat|fail|time|duration|cpu|rss|kib_per_|_mib$|_s$|_ms$|_us$)", re.IGNORECASE
)


def git_rev(project_dir: Path = PROJECT_DIR) -> str:
    """``git rev-parse --short HEAD`` (+ ``-dirty`` when tracked files changed); "unknown" outside a repo."""
    try:
        head = subprocess.run(
            ["git", "-C", str(project_dir), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(project_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.returncode != 0 or dirty.stdout.strip() else "")


def lower_is_better(metric: str) -> bool:
    """The metric's direction from its name (the bench's unit suffixes included: ``_iops``, ``_mb_s``,
    ``_ratio``, ``_fraction``, ``_per_s`` higher; ``_cpu_s_per_gb``, ``_rss_mib``, ``_kib_per_lun``, seconds,
    stalls, errors lower)."""
    if HIGHER_IS_BETTER.search(metric):
        return False
    return bool(LOWER_IS_BETTER.search(metric))


def _nums(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def run_metrics(summary: Mapping[str, Any]) -> dict[str, float | int | None]:
    """The indexed metrics of one summary.json (see the module doc)."""
    out: dict[str, float | int | None] = {}
    faults = list(summary.get("faults") or [])
    workloads = list(summary.get("workloads") or [])
    if faults:
        for key in ("max_stall_s", "recovered_90_s", "first_io_after_s"):
            vals = _nums(f.get(key) for f in faults)
            out[key] = max(vals) if vals else None
        out["unrecovered"] = sum(
            1 for f in faults if f.get("baseline_bps") is not None and f.get("recovered_90_s") is None
        )
        bps = _nums(f.get("baseline_bps") for f in faults)
        iops = _nums(f.get("baseline_iops") for f in faults)
        out["throughput_bps"] = statistics.median(bps) if bps else None
        out["iops"] = statistics.median(iops) if iops else None
    if faults or workloads:
        out["io_errors"] = max(
            sum(int(f.get("io_errors") or 0) for f in faults),
            sum(int(w.get("errors") or 0) for w in workloads),
        )
    if summary.get("initiators"):
        out["initiators_failed"] = sum(1 for i in summary["initiators"] if not i.get("passed"))
    for name, value in (summary.get("bench") or {}).items():
        nums = _nums([value])
        out[f"bench.{name}"] = nums[0] if nums else None
    return out


def target_kind_of(summary: Mapping[str, Any]) -> str:
    if summary.get("target_kind"):
        return str(summary["target_kind"])
    kinds = sorted({str(t.get("kind")) for t in summary.get("targets") or [] if t.get("kind")})
    return "+".join(kinds) or "sanlab"


def index_entry(
    summary: Mapping[str, Any],
    run_dir: Path | None = None,
    results_root: Path | None = None,
    rev: str = "unknown",
) -> dict[str, Any]:
    path = ""
    if run_dir is not None:
        try:
            path = str(Path(run_dir).resolve().relative_to(Path(results_root or ".").resolve()))
        except ValueError:
            path = str(run_dir)
    verify = summary.get("verify")
    return {
        "run_id": str(summary["run_id"]),
        "scenario": str(summary["scenario"]),
        "target_kind": target_kind_of(summary),
        "git_rev": str(summary.get("git_rev") or rev),
        "started": str(summary.get("started") or ""),
        "passed": bool(summary.get("passed")),
        "verify_ok": verify.get("ok") if isinstance(verify, Mapping) else None,
        "skipped": str(summary["skipped"]) if summary.get("skipped") else None,
        "path": path,
        "metrics": run_metrics(summary),
    }


def _append_line(path: Path, entry: Mapping[str, Any]) -> None:
    data = (json.dumps(entry, sort_keys=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # one write on O_APPEND: lines of concurrent runs do not interleave
    finally:
        os.close(fd)


def index_run(
    results_root: Path,
    summary: Mapping[str, Any],
    run_dir: Path | None = None,
    *,
    project_dir: Path = PROJECT_DIR,
) -> dict[str, Any]:
    """Append this run to ``results_root/index.jsonl``; the git revision is the summary's ``git_rev`` or, when
    absent, the project's current one."""
    rev = str(summary.get("git_rev") or git_rev(project_dir))
    entry = index_entry(summary, run_dir, results_root, rev)
    _append_line(Path(results_root) / INDEX, entry)
    return entry


def load_index(results_root: Path) -> list[dict[str, Any]]:
    """Every well-formed entry of the index, in chronological order (started, run_id); bad lines skipped."""
    p = Path(results_root) / INDEX
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict) and e.get("run_id") and e.get("scenario"):
            e.setdefault("metrics", {})
            out.append(e)
    return sorted(out, key=when)


def when(e: Mapping[str, Any]) -> tuple[str, str]:
    """Chronological sort key: the start time as YYYYmmddTHHMMSS UTC (from ``started``, else the run id's
    timestamp prefix), then the run id."""
    rid = str(e.get("run_id") or "")
    stamp = rid[:15]
    try:
        t = dt.datetime.fromisoformat(str(e.get("started") or ""))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        stamp = t.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    except ValueError:
        pass
    return stamp, rid


def select(
    entries: Sequence[dict[str, Any]], scenario: str | None = None, target_kind: str | None = None
) -> list[dict[str, Any]]:
    return [
        e
        for e in entries
        if (scenario is None or e.get("scenario") == scenario)
        and (target_kind is None or e.get("target_kind") == target_kind)
    ]


def find_run(entries: Sequence[dict[str, Any]], run: str = "latest") -> dict[str, Any] | None:
    if not entries:
        return None
    if run == "latest":
        return max(entries, key=when)
    matches = [e for e in entries if e["run_id"] == run]
    return matches[-1] if matches else None


def find_baseline(
    entries: Sequence[dict[str, Any]], run: Mapping[str, Any], mode: str = "previous"
) -> dict[str, Any] | None:
    """previous: the last passed run of the same scenario and target kind before `run`; latest-passed: the
    newest passed one (other than `run`); best: the passed one with the highest throughput (then the lowest
    stall); anything else is a run id (any scenario). Skipped runs are never chosen by a mode."""
    if mode not in BASELINE_MODES:
        return find_run([e for e in entries if e["run_id"] != run["run_id"]], mode)
    same = [
        e
        for e in entries
        if e.get("scenario") == run.get("scenario")
        and e.get("target_kind") == run.get("target_kind")
        and e["run_id"] != run["run_id"]
        and e.get("passed")
        and not e.get("skipped")
    ]
    if mode == "previous":
        same = [e for e in same if when(e) < when(run)]
    if not same:
        return None
    if mode == "best":

        def score(e: Mapping[str, Any]) -> tuple[float, float]:
            m = e.get("metrics") or {}
            tp, stall = m.get("throughput_bps"), m.get("max_stall_s")
            return (
                float(tp) if tp is not None else -math.inf,
                -float(stall) if stall is not None else -math.inf,
            )

        return max(same, key=score)
    return max(same, key=when)


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: Any
    run: Any
    change: float | None  # relative (run - baseline) / |baseline|; None: not computable
    verdict: str  # ok, better, regression, missing (in the run), new (not in the baseline)
    lower_is_better: bool

    @property
    def regression(self) -> bool:
        return self.verdict in ("regression", "missing")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["change"] is not None and not math.isfinite(d["change"]):
            d["change"] = None
        d["regression"] = self.regression
        return d


def _relative(run: float, base: float) -> float:
    if base == 0:
        return 0.0 if run == 0 else math.copysign(math.inf, run)
    return (run - base) / abs(base)


def compare_rows(
    run: Mapping[str, Any], baseline: Mapping[str, Any], threshold: float = 0.05, min_delta_s: float = 0.0
) -> list[Comparison]:
    """Every metric of either entry, with its verdict (see the module doc); first row: did the run pass."""
    rows = [
        Comparison(
            "passed",
            bool(baseline.get("passed")),
            bool(run.get("passed")),
            None,
            "ok" if run.get("passed") else "regression",
            False,
        )
    ]
    bm: Mapping[str, Any] = baseline.get("metrics") or {}
    rm: Mapping[str, Any] = run.get("metrics") or {}
    for metric in dict.fromkeys([*bm, *rm]):
        b, r = bm.get(metric), rm.get(metric)
        low = lower_is_better(metric)
        if b is None and r is None:
            continue
        if r is None:
            rows.append(Comparison(metric, b, None, None, "missing", low))
            continue
        if b is None:
            rows.append(Comparison(metric, None, r, None, "new", low))
            continue
        change = _relative(float(r), float(b))
        if low:
            delta_ok = (float(r) - float(b)) <= (min_delta_s if metric.endswith("_s") else 0.0)
            worse = change > threshold and not delta_ok
            better = change < -threshold
        else:
            worse = change < -threshold
            better = change > threshold
        verdict = "regression" if worse else "better" if better else "ok"
        rows.append(Comparison(metric, b, r, change, verdict, low))
    return rows


def compare(
    run: Mapping[str, Any], baseline: Mapping[str, Any], threshold: float = 0.05, min_delta_s: float = 0.0
) -> list[Comparison]:
    """The regressions of `run` against `baseline` (empty: none)."""
    return [c for c in compare_rows(run, baseline, threshold, min_delta_s) if c.regression]


def rebuild_index(results_root: Path) -> tuple[int, list[str]]:
    """Re-index every ``results_root/<scenario>/<run>/summary.json`` (atomically replacing index.jsonl).
    A summary's own ``git_rev`` is kept, otherwise "unknown" (today's revision says nothing about an old run).
    Returns (entries written, problems)."""
    root = Path(results_root)
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    for p in sorted(root.glob("*/*/summary.json")):
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(s, dict) or not s.get("run_id") or not s.get("scenario"):
                problems.append(f"{p}: not a run summary (no run_id/scenario)")
                continue
            entries.append(index_entry(s, p.parent, root))
        except (OSError, ValueError, TypeError, AttributeError) as err:
            problems.append(f"{p}: {err}")
    entries.sort(key=when)
    tmp = root / f".{INDEX}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / INDEX)
    return len(entries), problems


def latest_per_kind(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest non-skipped run of every (scenario, target kind), in first-seen order."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for e in sorted(entries, key=when):
        if not e.get("skipped"):
            latest[(str(e.get("scenario")), str(e.get("target_kind")))] = e
    return list(latest.values())


def stall_rows(results_root: Path, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for lab.plots.stalls.stall_bars_figure from the runs' summaries (per initiator; the index's
    run-wide maximum, initiator "(all)", when a summary cannot be read)."""
    rows: list[dict[str, Any]] = []
    for e in entries:
        base = {"drill": e.get("scenario"), "target_kind": e.get("target_kind")}
        faults: list[Any] = []
        if e.get("path"):
            try:
                s = json.loads(
                    (Path(results_root) / str(e["path"]) / "summary.json").read_text(encoding="utf-8")
                )
                faults = list(s.get("faults") or []) if isinstance(s, dict) else []
            except (OSError, ValueError):
                faults = []
        if faults:
            rows += [
                base
                | {
                    "initiator": f.get("initiator") or "",
                    "max_stall_s": f.get("max_stall_s"),
                    "recovered_90_s": f.get("recovered_90_s"),
                }
                for f in faults
                if isinstance(f, dict)
            ]
            continue
        m = e.get("metrics") or {}
        if m.get("max_stall_s") is not None or m.get("recovered_90_s") is not None:
            rows.append(
                base
                | {
                    "initiator": "(all)",
                    "max_stall_s": m.get("max_stall_s"),
                    "recovered_90_s": m.get("recovered_90_s"),
                }
            )
    return rows
