"""`sanlab bench` arguments: defaults, --quick, --scenario, overrides, filters and usage errors (no run)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lab.bench.cli import add_arguments, cmd_bench, options_from_args, register
from lab.bench.workloads import WorkloadError

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_are_three_rounds_of_every_workload_against_both() -> None:
    o = options_from_args(parse())
    assert o.rounds == 3 and o.seconds == 4.0 and o.lun_size == 1024**3
    assert o.kinds == ("sanlab", "tgtd") and len(o.workloads) == 12 and o.iperf3 and not o.scale


def test_quick_is_one_short_round() -> None:
    o = options_from_args(parse("--quick"))
    assert o.rounds == 1 and o.seconds == 1.0 and o.lun_size == 256 * 1024 * 1024


def test_scenario_then_command_line_overrides() -> None:
    o = options_from_args(parse("--scenario", str(ROOT / "scenarios/bench-qd1.yml")))
    assert o.scenario == "bench-qd1" and all(w.qd == 1 for w in o.workloads) and not o.iperf3
    o = options_from_args(
        parse(
            "--scenario",
            str(ROOT / "scenarios/bench-qd32.yml"),
            "--rounds",
            "5",
            "--seconds",
            "2",
            "--workloads",
            "qemu-*-128k-*",
            "--tgt-only",
            "--lun-size",
            "512m",
        )
    )
    assert (o.rounds, o.seconds, o.lun_size, o.kinds) == (5, 2.0, 512 * 1024 * 1024, ("tgtd",))
    assert [w.name for w in o.workloads] == ["qemu-read-128k-qd32", "qemu-write-128k-qd32"]


def test_scale_only_has_no_workloads() -> None:
    o = options_from_args(parse("--scale-only", "--scale-luns", "10", "--scale-sessions", "3"))
    assert o.workloads == [] and o.scale and (o.scale_luns, o.scale_sessions) == (10, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ("--rounds", "0"),
        ("--seconds", "0.1"),
        ("--lun-size", "1m"),
        ("--workloads", "fio-*"),
        ("--scale-sessions", "5000"),
        ("--lun-size", "lots"),
    ],
)
def test_bad_options(argv: tuple[str, ...]) -> None:
    with pytest.raises(WorkloadError):
        options_from_args(parse(*argv))


def test_cmd_exit_codes_without_running(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_bench(parse("--workloads", "nothing-matches")) == 2
    assert "no workload matches" in capsys.readouterr().err
    assert cmd_bench(parse("--list", "--workloads", "*qd1")) == 0
    listed = capsys.readouterr().out.split()
    assert listed and all(name.endswith("-qd1") for name in listed)


def test_sanlab_only_and_tgt_only_exclusive() -> None:
    with pytest.raises(SystemExit):
        parse("--sanlab-only", "--tgt-only")


def test_register_adds_bench_once() -> None:
    parser = argparse.ArgumentParser()
    subs = parser.add_subparsers()
    register(subs)
    register(subs)  # a second call leaves the verb alone
    args = parser.parse_args(["bench", "--quick", "--sanlab-only"])
    assert args.func is cmd_bench and args.quick and args.sanlab_only
