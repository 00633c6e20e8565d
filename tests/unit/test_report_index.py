import json
import subprocess

import pytest

from lab.report import index as idx
from lab.results import summary_errors


def summary(
    run_id: str,
    *,
    stall: float = 9.3,
    bps: float = 100e6,
    errors: int = 0,
    passed: bool = True,
    kind: str = "sanlab",
    scenario: str = "path-failover",
    started: str | None = None,
) -> dict:
    rows = [
        {
            "name": "cut-a",
            "kind": "cut-path",
            "initiator": ini,
            "injected_at_s": 20.0,
            "cleared_at_s": 40.0,
            "max_stall_s": stall - d,
            "first_io_after_s": stall - d,
            "recovered_90_s": stall + 1 - d,
            "io_errors": errors,
            "baseline_bps": bps + d,
            "baseline_iops": (bps + d) / 4096,
        }
        for ini, d in (("vm1", 0.0), ("vm2", 0.5))
    ]
    return {
        "scenario": scenario,
        "run_id": run_id,
        "started": started or f"2026-11-2{run_id[7]}T00:00:00+00:00",
        "duration_s": 100.0,
        "passed": passed,
        "phases": [{"name": "workload", "passed": True, "seconds": 60.0}],
        "initiators": [],
        "target_kind": kind,
        "faults": rows,
        "verify": {"ok": True, "detail": "fio verify: 2/2"},
        "checks": [{"name": "io_errors max 0", "metric": "io_errors", "status": "passed", "detail": "0"}],
        "workloads": [
            {"initiator": "vm1", "workload": "fio", "ok": True, "errors": errors, "verify_ok": True}
        ],
    }


def rid(day: int) -> str:
    return f"2026112{day}T000000Z-abcd"


def test_drill_summary_is_valid_and_old_phases_still_are():
    s = summary(rid(1))
    assert summary_errors(s) == []
    s["faults"][0]["io_errors"] = -1
    s["checks"][0]["status"] = "maybe"
    s["phases"][0]["name"] = "party"
    errs = summary_errors(s)
    assert any(e.startswith("faults[0].io_errors") for e in errs)
    assert any(e.startswith("checks[0].status") for e in errs)
    assert any(e.startswith("phases[0].name") for e in errs)


def test_run_metrics():
    m = idx.run_metrics(summary(rid(1), errors=2) | {"bench": {"read_iops": 2e4, "note": "x"}})
    assert m["max_stall_s"] == 9.3 and m["recovered_90_s"] == 10.3
    assert m["io_errors"] == 4  # 2 per fault row, 2 in the workload: the larger count
    assert m["throughput_bps"] == pytest.approx(100e6 + 0.25)
    assert m["unrecovered"] == 0 and m["bench.read_iops"] == 2e4 and m["bench.note"] is None
    s = summary(rid(1))
    s["faults"][1]["recovered_90_s"] = None
    assert idx.run_metrics(s)["unrecovered"] == 1
    compat = {"initiators": [{"passed": True}, {"passed": False}]}
    assert idx.run_metrics(compat) == {"initiators_failed": 1}


def test_index_append_load_and_git_rev(tmp_path):
    root = tmp_path / "results"
    for day in (3, 1, 2):
        run_dir = root / "path-failover" / rid(day)
        e = idx.index_run(root, summary(rid(day)) | {"git_rev": f"r{day}"}, run_dir)
        assert e["path"] == f"path-failover/{rid(day)}"
    lines = (root / idx.INDEX).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["scenario"] == "path-failover" for x in lines)
    with (root / idx.INDEX).open("a") as f:
        f.write("{broken\n")
    loaded = idx.load_index(root)
    assert [e["run_id"] for e in loaded] == [rid(1), rid(2), rid(3)]  # chronological
    assert loaded[0]["git_rev"] == "r1" and loaded[0]["target_kind"] == "sanlab"
    # no git_rev in the summary: the project's revision; outside a repo "unknown"
    assert idx.git_rev(tmp_path) == "unknown"
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f").write_text("1")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    short = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert idx.git_rev(repo) == short
    (repo / "f").write_text("2")
    assert idx.git_rev(repo) == short + "-dirty"
    e = idx.index_run(root, summary(rid(4)), None, project_dir=repo)
    assert e["git_rev"] == short + "-dirty"


def test_baselines():
    entries = [
        idx.index_entry(summary(rid(d), bps=b, passed=p))
        for d, b, p in (
            (1, 90e6, True),
            (2, 120e6, True),
            (3, 100e6, False),
            (4, 95e6, True),
            (5, 80e6, True),
        )
    ]
    entries.append(idx.index_entry(summary(rid(6), kind="tgt")))
    entries.append(idx.index_entry(summary(rid(7)) | {"skipped": "no ALUA in tgt"}))
    run = entries[3]  # day 4
    assert idx.find_baseline(entries, run, "previous")["run_id"] == rid(2)  # day 3 failed
    assert idx.find_baseline(entries, run, "latest-passed")["run_id"] == rid(5)  # day 7 skipped
    assert idx.find_baseline(entries, run, "best")["run_id"] == rid(2)
    assert idx.find_baseline(entries, run, rid(6))["target_kind"] == "tgt"
    assert idx.find_baseline(entries, run, "nope") is None
    assert idx.find_baseline(entries, entries[0], "previous") is None
    assert idx.find_run(entries, "latest")["run_id"] == rid(7)
    assert idx.find_run(entries, rid(2))["run_id"] == rid(2) and idx.find_run(entries, "x") is None


def test_compare_directions_threshold_and_min_delta():
    base = idx.index_entry(summary(rid(1), stall=9.3, bps=100e6))
    same = idx.index_entry(summary(rid(2), stall=9.5, bps=97e6))
    assert idx.compare(same, base) == []  # +2 % stall, -3 % throughput: inside 5 %
    worse = idx.index_entry(summary(rid(2), stall=10.3, bps=90e6, errors=1))
    regressed = {c.metric for c in idx.compare(worse, base)}
    assert {
        "max_stall_s",
        "throughput_bps",
        "iops",
        "io_errors",
        "recovered_90_s",
        "first_io_after_s",
    } <= regressed
    rows = {c.metric: c for c in idx.compare_rows(worse, base)}
    assert rows["throughput_bps"].change == pytest.approx(-0.1, abs=1e-6)
    assert rows["io_errors"].as_dict()["change"] is None  # 0 -> 2: infinite, not JSON
    assert rows["max_stall_s"].lower_is_better and not rows["throughput_bps"].lower_is_better
    better = idx.index_entry(summary(rid(2), stall=5.0, bps=150e6))
    assert idx.compare(better, base) == []
    assert {c.verdict for c in idx.compare_rows(better, base) if c.metric != "passed"} == {"better", "ok"}
    # small absolute stalls: +100 % but only 0.1 s
    tiny_b = idx.index_entry(summary(rid(1), stall=0.6))
    tiny_r = idx.index_entry(summary(rid(2), stall=0.7))
    assert "max_stall_s" in {c.metric for c in idx.compare(tiny_r, tiny_b)}
    assert "max_stall_s" not in {c.metric for c in idx.compare(tiny_r, tiny_b, min_delta_s=0.5)}
    # a metric the run lost, a failed run
    lost = idx.index_entry(summary(rid(2)))
    lost["metrics"].pop("throughput_bps")
    lost["passed"] = False
    got = {c.metric: c.verdict for c in idx.compare(lost, base)}
    assert got == {"passed": "regression", "throughput_bps": "missing"}
    assert idx.compare(base, lost) == [] and "new" in {c.verdict for c in idx.compare_rows(base, lost)}


def test_rebuild_index(tmp_path):
    for d in (2, 1):
        p = tmp_path / "path-failover" / rid(d)
        p.mkdir(parents=True)
        (p / "summary.json").write_text(json.dumps(summary(rid(d))))
    bad = tmp_path / "conformance" / "x"
    bad.mkdir(parents=True)
    (bad / "summary.json").write_text('{"by_group": {}}')
    (tmp_path / idx.INDEX).write_text("stale\n")
    n, problems = idx.rebuild_index(tmp_path)
    assert n == 2 and len(problems) == 1 and "conformance" in problems[0]
    assert [e["run_id"] for e in idx.load_index(tmp_path)] == [rid(1), rid(2)]
    assert idx.load_index(tmp_path)[0]["git_rev"] == "unknown"


def test_direction_from_names():
    higher = [
        "throughput_bps",
        "iops",
        "bench.4k-read.sanlab_iops",
        "bench.128k-read.tgtd_mb_s",
        "bench.4k-read.sanlab_tgtd_ratio",
        "bench.4k-read_loopback_fraction",
        "bench.scale.logins_per_s",
    ]
    lower = [
        "max_stall_s",
        "recovered_90_s",
        "io_errors",
        "unrecovered",
        "initiators_failed",
        "bench.4k-read.sanlab_cpu_s_per_gb",
        "bench.sanlab.peak_rss_mib",
        "bench.scale.kib_per_lun",
        "bench.probe_lat_ms",
    ]
    assert [m for m in higher if idx.lower_is_better(m)] == []
    assert [m for m in lower if not idx.lower_is_better(m)] == []


def test_chronology_mixes_started_and_run_ids():
    entries = [
        {"run_id": "20261124T002253Z-8b5f", "started": "2026-11-24T00:22:53+00:00"},
        {"run_id": "20261123T221634Z", "started": ""},
        {"run_id": "20261124T010000Z-0000", "started": "2026-11-24T02:00:00+01:00"},
    ]
    assert [e["run_id"] for e in sorted(entries, key=idx.when)] == [
        "20261123T221634Z",
        "20261124T002253Z-8b5f",
        "20261124T010000Z-0000",
    ]
