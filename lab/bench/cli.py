"""`sanlab bench`: the project's target against tgtd on loopback, side by side, alternating rounds.

    sanlab bench [--scenario scenarios/bench-qd32.yml] [--rounds 3] [--seconds 4] [--workloads PATTERNS]
                 [--sanlab-only | --tgt-only] [--lun-size 1g] [--results results] [--workdir DIR]
                 [--no-iperf3] [--quick] [--scale [--scale-luns 1000 --scale-sessions 100]]
                 [--require-goals] [--list]

Writes results/<scenario>/<run-id>/{summary.json, records.jsonl, bench.md, bench.png}; prints a table and, last,
the run directory. Exit codes: 0 every measurement done (and, with --require-goals, every issue-7 goal met),
1 a measurement failed (or a goal missed with --require-goals), 2 usage error (bad workload, scenario, size).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from lab.bench.workloads import WorkloadError, load_scenario, parse_size, select, standard_workloads

ROOT = Path(__file__).resolve().parent.parent.parent
QUICK_SECONDS = 1.0


def register(subparsers: Any) -> None:
    """Add `sanlab bench` (left alone when a `bench` verb is already registered)."""
    if "bench" in (getattr(subparsers, "choices", {}) or {}):
        return
    p = subparsers.add_parser("bench", help="benchmark the sanlab target against tgtd (alternating rounds)")
    add_arguments(p)
    p.set_defaults(func=cmd_bench)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", metavar="YML", help="scenarios/bench-*.yml: workloads, rounds, seconds")
    p.add_argument("--rounds", type=int, help="alternating rounds (default 3; --quick 1)")
    p.add_argument("--seconds", type=float, help="seconds per measurement (default 4; --quick 1)")
    p.add_argument(
        "--workloads",
        action="append",
        metavar="PATTERNS",
        help="comma-separated names or globs, e.g. '*qd32' or 'qemu-read-4k-qd32,iscsiperf-*' (default: all)",
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument("--sanlab-only", action="store_true", help="measure only the sanlab target")
    who.add_argument("--tgt-only", action="store_true", help="measure only tgtd")
    p.add_argument("--lun-size", help="LUN size (default 1g; --quick 256m)")
    p.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    p.add_argument("--workdir", help="where the pre-filled LUN file lives (default /var/tmp/sanlab-bench)")
    p.add_argument("--no-iperf3", action="store_true", help="skip the iperf3 loopback limit")
    p.add_argument("--quick", action="store_true", help="1 round of 1 s measurements on a 256 MiB LUN")
    p.add_argument("--scale", action="store_true", help="also: many LUNs and sessions, login rate, memory")
    p.add_argument("--scale-only", action="store_true", help="only the scale part (no throughput workloads)")
    p.add_argument("--scale-luns", type=int, default=1000)
    p.add_argument("--scale-sessions", type=int, default=100)
    p.add_argument("--require-goals", action="store_true", help="exit 1 unless every issue-7 goal is met")
    p.add_argument("--list", action="store_true", help="print the selected workloads and exit")


def options_from_args(args: argparse.Namespace) -> Any:
    """BenchOptions from parsed arguments; WorkloadError on bad input."""
    from lab.bench.runner import (
        DEFAULT_LUN_SIZE,
        DEFAULT_ROUNDS,
        DEFAULT_SECONDS,
        DEFAULT_WORKDIR,
        BenchOptions,
    )

    scenario_name = "bench"
    rounds, seconds, lun_size, iperf3 = DEFAULT_ROUNDS, DEFAULT_SECONDS, DEFAULT_LUN_SIZE, True
    workloads = standard_workloads()
    if args.scenario:
        sc = load_scenario(args.scenario)
        scenario_name, workloads, iperf3 = sc.name, list(sc.workloads), sc.iperf3
        rounds = sc.rounds or rounds
        seconds = sc.seconds or seconds
        lun_size = sc.lun_size or lun_size
    if args.quick:
        rounds, seconds, lun_size = 1, QUICK_SECONDS, 256 * 1024 * 1024
    rounds = args.rounds if args.rounds is not None else rounds
    seconds = args.seconds if args.seconds is not None else seconds
    if args.lun_size:
        lun_size = parse_size(args.lun_size)
    if not 1 <= rounds <= 50:
        raise WorkloadError("--rounds must be in 1..50")
    if not 0.5 <= seconds <= 120:
        raise WorkloadError("--seconds must be in 0.5..120")
    if lun_size < 16 * 1024 * 1024 or lun_size % 4096:
        raise WorkloadError("--lun-size must be at least 16m and a multiple of 4k")
    if not 1 <= args.scale_luns <= 4096 or not 1 <= args.scale_sessions <= 1000:
        raise WorkloadError("--scale-luns must be in 1..4096 and --scale-sessions in 1..1000")
    kinds: tuple[str, ...] = ("sanlab", "tgtd")
    if args.sanlab_only:
        kinds = ("sanlab",)
    elif args.tgt_only:
        kinds = ("tgtd",)
    chosen = [] if args.scale_only else select(workloads, args.workloads)
    return BenchOptions(
        workloads=chosen,
        scenario=scenario_name,
        rounds=rounds,
        seconds=seconds,
        kinds=kinds,
        lun_size=lun_size,
        results=Path(args.results),
        workdir=Path(args.workdir) if args.workdir else DEFAULT_WORKDIR,
        iperf3=iperf3 and not args.no_iperf3,
        scale=args.scale or args.scale_only,
        scale_luns=args.scale_luns,
        scale_sessions=args.scale_sessions,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from lab.bench import report, stats
    from lab.bench.runner import run_bench

    out = Console(
        file=sys.stdout, soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200
    )
    try:
        opts = options_from_args(args)
    except WorkloadError as e:
        print(f"sanlab bench: {e}", file=sys.stderr)
        return 2
    if args.list:
        for w in opts.workloads:
            print(w.name)
        return 0
    opts.log = lambda line: out.print(line, markup=False)
    summary, rd = run_bench(opts)
    figs = stats.workload_figures(opts.workloads, [stats.Sample(**r) for r in _samples(rd.records())])
    if figs:
        out.print(report.console_table(figs, f"sanlab bench {rd.run_id}"))
    detail = summary["bench_detail"]
    loop = detail["loopback"]
    if loop.get("mb_s"):
        out.print(f"loopback limit (iperf3): {loop['mb_s']['median']:,.0f} MB/s", markup=False)
    elif loop.get("error"):
        out.print(f"loopback limit: {loop['error']}", markup=False)
    for name, frac in sorted(detail["loopback_fraction"].items()):
        out.print(f"{name}: {frac:.0%} of loopback", markup=False)
    for g in summary["goals"]:
        out.print(f"goal {g['name']}: {g['status']} ({g['detail']})", markup=False)
    for k, v in detail.get("scale", {}).items():
        out.print(f"scale {k}: {v}", markup=False)
    for p in summary["phases"]:
        if not p["passed"]:
            out.print(f"phase {p['name']} failed: {p.get('detail', '')}", markup=False)
    print(rd.path)
    if not summary["passed"]:
        return 1
    if args.require_goals and any(g["status"] != "passed" for g in summary["goals"]):
        return 1
    return 0


def _samples(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.items() if k not in ("t", "kind")} for r in records if r.get("kind") == "sample"
    ]
