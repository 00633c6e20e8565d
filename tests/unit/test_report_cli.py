import argparse
import json

import pytest

from lab.report import index as idx
from lab.report.cli import register


def sanlab(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sanlab")
    sub = parser.add_subparsers()
    register(sub)
    register(sub)  # idempotent: a second registration is left alone
    args = parser.parse_args(list(argv))
    return args.func(args)


def entry(
    day: int,
    *,
    stall: float = 9.3,
    bps: float = 100e6,
    errors: int = 0,
    passed: bool = True,
    kind: str = "sanlab",
) -> dict:
    return {
        "run_id": f"2026112{day}T000000Z-abcd",
        "scenario": "path-failover",
        "target_kind": kind,
        "git_rev": f"r{day}",
        "started": f"2026-11-2{day}T00:00:00+00:00",
        "passed": passed,
        "path": "",
        "metrics": {
            "max_stall_s": stall,
            "recovered_90_s": stall + 1,
            "io_errors": errors,
            "throughput_bps": bps,
        },
    }


@pytest.fixture
def results(tmp_path):
    def write(*entries: dict):
        (tmp_path / idx.INDEX).write_text("".join(json.dumps(e) + "\n" for e in entries))
        return str(tmp_path)

    return write


def test_no_regression_exit_0(results, capsys):
    root = results(entry(1), entry(2, stall=9.4, bps=99e6), entry(3, kind="tgt", stall=20.0))
    assert sanlab("report", "--results", root, "--target-kind", "sanlab") == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "20261122T000000Z-abcd" in out and "20261121T000000Z-abcd" in out


def test_regression_exit_1_names_the_metric(results, capsys):
    root = results(entry(1), entry(2, stall=12.0), entry(3, kind="tgt"))
    assert sanlab("report", "--results", root, "--target-kind", "sanlab") == 1
    out = capsys.readouterr().out
    assert "max_stall_s" in out and "regression" in out
    # the same with JSON, and an absolute tolerance that swallows the rise
    assert sanlab("report", "--results", root, "--target-kind", "sanlab", "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] == ["max_stall_s", "recovered_90_s"]
    assert data["baseline"]["run_id"] == "20261121T000000Z-abcd"
    assert sanlab("report", "--results", root, "--target-kind", "sanlab", "--min-delta-s", "3") == 0


def test_throughput_drop_and_explicit_runs(results, capsys):
    root = results(entry(1, bps=100e6), entry(2, bps=120e6), entry(3, bps=110e6), entry(4, bps=130e6))
    # run 3 against the previous passed one (2): -8.3 %
    assert sanlab("report", "--results", root, "--run", "20261123T000000Z-abcd") == 1
    assert "throughput_bps" in capsys.readouterr().out
    assert sanlab("report", "--results", root, "--run", "20261123T000000Z-abcd", "--threshold", "0.1") == 0
    assert sanlab("report", "--results", root, "--baseline", "20261121T000000Z-abcd") == 0
    assert sanlab("report", "--results", root, "--run", "20261123T000000Z-abcd", "--baseline", "best") == 1
    capsys.readouterr()


def test_failed_run_and_first_run(results, capsys):
    root = results(entry(1), entry(2, passed=False))
    assert sanlab("report", "--results", root) == 1
    assert "passed" in capsys.readouterr().out
    root = results(entry(1))
    assert sanlab("report", "--results", root) == 0
    assert "no baseline" in capsys.readouterr().out


def test_usage_errors_exit_2(results, tmp_path, capsys):
    assert sanlab("report", "--results", str(tmp_path / "none")) == 2
    root = results(entry(1), entry(2))
    assert sanlab("report", "--results", root, "--run", "20990101T000000Z-ffff") == 2
    assert sanlab("report", "--results", root, "--baseline", "20990101T000000Z-ffff") == 2
    assert sanlab("report", "--results", root, "--scenario", "other") == 2
    assert sanlab("report", "--results", root, "--threshold", "-1") == 2
    err = capsys.readouterr().err
    assert "unknown run id" in err and "unknown baseline" in err and "no indexed runs" in err


def test_trend_and_rebuild(results, tmp_path, capsys):
    root = results(entry(1), entry(2), entry(3, kind="tgt"))
    png = tmp_path / "trend.png"
    assert sanlab("report", "--results", root, "--trend", str(png)) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    run_dir = tmp_path / "path-failover" / "20261125T000000Z-abcd"
    run_dir.mkdir(parents=True)
    s = {
        "scenario": "path-failover",
        "run_id": "20261125T000000Z-abcd",
        "started": "2026-11-25T00:00:00+00:00",
        "passed": True,
        "target_kind": "tgt",
        "faults": [],
    }
    (run_dir / "summary.json").write_text(json.dumps(s))
    assert sanlab("report", "--results", root, "--rebuild-index") == 0
    assert [e["run_id"] for e in idx.load_index(tmp_path)] == ["20261125T000000Z-abcd"]
    assert "indexed 1 runs" in capsys.readouterr().out
    assert sanlab("report", "--results", str(tmp_path / "none"), "--rebuild-index") == 2


def test_stall_bars_of_both_target_kinds(results, tmp_path):
    sanlab_run, tgt_run = entry(2), entry(3, kind="tgt", stall=9.3)
    sanlab_run["path"] = "path-failover/" + sanlab_run["run_id"]
    run_dir = tmp_path / sanlab_run["path"]
    run_dir.mkdir(parents=True)
    faults = [
        {
            "name": "cut",
            "kind": "cut-path",
            "initiator": ini,
            "injected_at_s": 20.0,
            "max_stall_s": st,
            "recovered_90_s": None,
            "io_errors": 0,
        }
        for ini, st in (("vm1", 8.0), ("vm2", 9.0))
    ]
    (run_dir / "summary.json").write_text(json.dumps({"faults": faults}))
    root = results(entry(1), sanlab_run, tgt_run)
    rows = idx.stall_rows(tmp_path, idx.latest_per_kind(idx.load_index(tmp_path)))
    assert [(r["target_kind"], r["initiator"], r["max_stall_s"]) for r in rows] == [
        ("sanlab", "vm1", 8.0),
        ("sanlab", "vm2", 9.0),
        ("tgt", "(all)", 9.3),
    ]
    png = tmp_path / "stalls.png"
    assert sanlab("report", "--results", root, "--stalls", str(png), "--target-kind", "sanlab") == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
