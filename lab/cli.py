"""Lab verbs for the `sanlab` CLI (loaded by target.cli.main through EXTENSION_MODULES):

    sanlab up   TOPOLOGY.yml [--results DIR] [--keep]   build/find images, bring the lab up (Ansible), testinfra
    sanlab down TOPOLOGY.yml                            remove every container and network the lab created
    sanlab run  SCENARIO.yml [--results DIR] [--keep] [--target-kind sanlab|tgt]
                                                        up, drill, verify, down (unless --keep); the results
                                                        directory is the LAST line printed; --target-kind runs
                                                        the same drill with every target of that kind
    sanlab report ...                                   from lab.report.cli: compare runs, trends, CI gate
    sanlab images ...                                   from lab.images.cli (the images team), when present

Exit codes: 0 passed, 1 failed, 2 invalid topology/scenario (every error printed with its path).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from lab.topology.model import TargetKind
from target.config.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def register(subparsers: Any) -> None:
    """Add up/down/run (and `images` when lab.images.cli exists); a verb already registered is left alone."""
    taken = set(getattr(subparsers, "choices", {}) or {})
    if {"up", "down", "run"} & taken:
        _register_images(subparsers, taken)
        _register_report(subparsers, taken)
        return
    up = subparsers.add_parser(
        "up", help="bring a lab topology up (images, networks, nodes, Ansible, testinfra)"
    )
    up.add_argument("topology", metavar="TOPOLOGY.yml")
    up.add_argument("--results", default=str(ROOT / "results"), help="where run directories go")
    up.add_argument("--keep", action="store_true", help="leave a failed lab up for debugging")
    up.set_defaults(func=cmd_up)
    down = subparsers.add_parser("down", help="remove everything a lab created (containers, networks)")
    down.add_argument("topology", metavar="TOPOLOGY.yml")
    down.set_defaults(func=cmd_down)
    run = subparsers.add_parser(
        "run", help="run a scenario: up, drill, verify, down; prints the results dir last"
    )
    run.add_argument("scenario", metavar="SCENARIO.yml")
    run.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    run.add_argument("--keep", action="store_true", help="leave the lab up afterwards (debugging)")
    run.add_argument(
        "--target-kind",
        choices=[k.value for k in TargetKind],
        default=None,
        help="run every target of the topology as this kind (e.g. tgt: the same drill against tgtd)",
    )
    run.set_defaults(func=cmd_run)
    _register_images(subparsers, taken)
    _register_report(subparsers, taken)


def _register_report(subparsers: Any, taken: set[str]) -> None:
    if "report" in taken:
        return
    try:
        report_cli = importlib.import_module("lab.report.cli")
    except ImportError:
        return
    reg = getattr(report_cli, "register", None)
    if callable(reg):
        reg(subparsers)


def _register_images(subparsers: Any, taken: set[str]) -> None:
    if "images" in taken:
        return
    try:
        images_cli = importlib.import_module("lab.images.cli")
    except ImportError:
        return
    reg = getattr(images_cli, "register", None)
    if callable(reg):
        reg(subparsers)


def _errors(e: ConfigError) -> int:
    print(str(e), file=sys.stderr)
    return 2


def cmd_up(args: argparse.Namespace) -> int:
    from lab.results import RunDir
    from lab.scenario.runner import LabRun, lab_down, lab_up
    from lab.topology import load_topology

    try:
        topo = load_topology(args.topology)
    except ConfigError as e:
        return _errors(e)
    rd = RunDir.create(Path(args.results), f"up-{topo.name}")
    console = Console(stderr=True)
    lab = LabRun(topo, rd.path, console)
    ok = lab_up(lab)
    if not ok and not args.keep:
        lab.phase("tear-down", lambda: lab_down(topo, rd.path))
    print(rd.path)
    return 0 if ok else 1


def cmd_down(args: argparse.Namespace) -> int:
    from lab.scenario.runner import lab_down
    from lab.topology import load_topology

    try:
        topo = load_topology(args.topology)
    except ConfigError as e:
        return _errors(e)
    with tempfile.TemporaryDirectory(prefix="sanlab-down-") as tmp:
        print(lab_down(topo, Path(tmp)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lab.scenario.model import load_scenario
    from lab.scenario.runner import run_scenario

    try:
        sc = load_scenario(args.scenario, target_kind=getattr(args, "target_kind", None))
    except ConfigError as e:
        return _errors(e)
    console = Console(stderr=True)
    path, passed = run_scenario(sc, Path(args.results), keep=args.keep, console=console)
    verdict = "skipped (not applicable)" if sc.skip_reason is not None else "passed" if passed else "FAILED"
    console.print(f"[{'green' if passed else 'red'}]{sc.name}: {verdict}[/]; report: {path / 'report.md'}")
    print(path, flush=True)
    return 0 if passed else 1
