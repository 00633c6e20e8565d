"""`sanlab report`: compare a run with a baseline from results/index.jsonl (a CI gate), plot trends.

    sanlab report [--results DIR] [--scenario NAME] [--target-kind KIND] [--run RUN_ID|latest]
                  [--baseline RUN_ID|previous|best|latest-passed] [--threshold 0.05] [--min-delta-s S]
                  [--trend PNG [--metrics M1,M2]] [--stalls PNG] [--json]
    sanlab report --rebuild-index [--results DIR]

The run defaults to the newest indexed run (of --scenario/--target-kind when given); the baseline to the
previous passed run of the same scenario and target kind. Regressions (lab.report.index.compare): a
higher-is-better metric (throughput, IOPS) dropping by more than --threshold, a lower-is-better one (stalls,
recovery times, errors) rising by more than --threshold and, for seconds, by more than --min-delta-s; a
metric the baseline has and the run lacks; a run that did not pass.

Exit codes: 0 no regression (or no baseline to compare with yet), 1 regressions, 2 usage or data errors
(no index, no runs, unknown run id).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lab.report import index as idx

ROOT = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    """Add `sanlab report` (left alone when a `report` verb is already registered)."""
    if "report" in (getattr(subparsers, "choices", {}) or {}):
        return
    p = subparsers.add_parser(
        "report",
        help="compare a run with a baseline (regression gate), plot trends, rebuild the index",
        description="Compare an indexed run (results/index.jsonl) with a baseline; flag throughput drops and "
        "stall/recovery/error rises beyond --threshold.",
        epilog="exit codes: 0 no regression (or nothing to compare with yet), 1 regressions, 2 usage or data "
        "errors (no index, no runs, unknown run id)",
    )
    p.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    p.add_argument("--scenario", help="only runs of this scenario")
    p.add_argument("--target-kind", help="only runs against this target kind (sanlab, tgt, ...)")
    p.add_argument(
        "--run", default="latest", metavar="RUN_ID|latest", help="the run to judge (default latest)"
    )
    p.add_argument(
        "--baseline",
        default="previous",
        metavar="RUN_ID|previous|best|latest-passed",
        help="what to compare with (default: the previous passed run of the same scenario and target kind)",
    )
    p.add_argument("--threshold", type=float, default=0.05, help="relative change that counts (default 0.05)")
    p.add_argument(
        "--min-delta-s",
        type=float,
        default=0.0,
        help="seconds metrics (stalls, recovery) must also rise by more than this absolute amount (default 0)",
    )
    p.add_argument("--trend", metavar="PNG", help="also plot the indexed runs' metrics over time into PNG")
    p.add_argument(
        "--stalls",
        metavar="PNG",
        help="also plot stall/recovery bars of the newest run of every (scenario, target kind) selected, "
        "target kinds side by side (e.g. sanlab vs tgt)",
    )
    p.add_argument(
        "--metrics",
        metavar="M1,M2",
        help="metrics to plot with --trend (default: stalls, errors, throughput)",
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    p.add_argument(
        "--rebuild-index", action="store_true", help="re-index every results/<scenario>/<run>/summary.json"
    )
    p.set_defaults(func=cmd_report)


def _console() -> Console:
    return Console(
        file=sys.stdout, soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200
    )


def _err(msg: str) -> int:
    print(f"sanlab report: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _fmt(v: Any, metric: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if metric.endswith("_bps"):
            return f"{v / 1e6:.1f} MB/s"
        return f"{v:.2f}"
    return str(v)


def _change(c: idx.Comparison) -> str:
    if c.change is None:
        return "-"
    if not math.isfinite(c.change):
        return "+inf" if c.change > 0 else "-inf"
    return f"{c.change:+.1%}"


VERDICT_STYLE = {
    "ok": "green",
    "better": "bold green",
    "regression": "bold red",
    "missing": "bold red",
    "new": "cyan",
}


def cmd_report(args: argparse.Namespace) -> int:
    root = Path(args.results)
    if args.rebuild_index:
        if not root.is_dir():
            return _err(f"no results directory {root}")
        n, problems = idx.rebuild_index(root)
        for p in problems:
            print(f"skipped {p}", file=sys.stderr)
        print(f"indexed {n} runs into {root / idx.INDEX}")
        return EXIT_OK
    if args.threshold < 0 or args.min_delta_s < 0:
        return _err("--threshold and --min-delta-s must not be negative")
    entries = idx.load_index(root)
    if not entries:
        return _err(f"no runs indexed in {root / idx.INDEX} (try --rebuild-index)")
    pool = idx.select(entries, args.scenario, args.target_kind)
    if not pool:
        return _err(
            f"no indexed runs of scenario={args.scenario or '*'} target-kind={args.target_kind or '*'}"
        )
    run = idx.find_run(pool, args.run)
    if run is None:
        return _err(f"unknown run id {args.run!r}")
    if args.trend:
        series = idx.select(entries, run["scenario"], args.target_kind)
        from lab.plots.trend import trend_figure

        wanted = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        fig = trend_figure(series, wanted, title=f"{run['scenario']}: metrics over runs")
        fig.savefig(args.trend, dpi=100)
        print(f"trend plot: {args.trend}", file=sys.stderr)
    if args.stalls:
        from lab.plots.stalls import stall_bars_figure

        bars = idx.stall_rows(
            root, idx.latest_per_kind(idx.select(entries, args.scenario or run["scenario"]))
        )
        stall_bars_figure(bars, title="longest stall and recovery: newest run per target kind").savefig(
            args.stalls, dpi=100
        )
        print(f"stall plot: {args.stalls}", file=sys.stderr)
    baseline = idx.find_baseline(entries, run, args.baseline)
    if baseline is None and args.baseline not in idx.BASELINE_MODES:
        return _err(f"unknown baseline run id {args.baseline!r}")
    rows = []
    if baseline is not None and not run.get("skipped"):
        rows = idx.compare_rows(run, baseline, args.threshold, args.min_delta_s)
    regressions = [c for c in rows if c.regression]
    if args.json:
        print(
            json.dumps(
                {
                    "run": run,
                    "baseline": baseline,
                    "threshold": args.threshold,
                    "min_delta_s": args.min_delta_s,
                    "rows": [c.as_dict() for c in rows],
                    "regressions": [c.metric for c in regressions],
                },
                indent=2,
            )
        )
    else:
        con = _console()
        con.print(
            f"run [bold]{run['run_id']}[/] ({run['scenario']}, {run['target_kind']}, rev {run.get('git_rev')}, "
            f"{'passed' if run.get('passed') else '[red]FAILED[/]'})"
        )
        if run.get("skipped"):
            con.print(f"the run was skipped ({run['skipped']}): nothing to judge")
            return EXIT_OK
        if baseline is None:
            con.print(f"no baseline ({args.baseline}) to compare with: nothing to judge yet")
            return EXIT_OK
        con.print(f"baseline [bold]{baseline['run_id']}[/] (rev {baseline.get('git_rev')}, {args.baseline})")
        table = Table("metric", "baseline", "run", "change", "verdict")
        for c in rows:
            table.add_row(
                c.metric,
                _fmt(c.baseline, c.metric),
                _fmt(c.run, c.metric),
                _change(c),
                f"[{VERDICT_STYLE.get(c.verdict, '')}]{c.verdict}[/]",
            )
        con.print(table)
        if regressions:
            con.print(
                f"[bold red]{len(regressions)} regression(s):[/] {', '.join(c.metric for c in regressions)}"
            )
        else:
            con.print(f"[green]no regression[/] (threshold {args.threshold:.0%})")
    return EXIT_REGRESSION if regressions else EXIT_OK
