"""`sanlab bench` end to end, one short round: both targets come up on loopback, every workload is measured on
both, and the run directory holds a schema-valid summary, records, bench.md and bench.png. No performance
threshold is asserted (figures are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab.bench.runner import BenchOptions, run_bench
from lab.bench.workloads import Workload
from lab.results import summary_errors

pytestmark = pytest.mark.slow

WORKLOADS = [
    Workload("qemu", "read", 4096, 32),
    Workload("qemu", "write", 128 * 1024, 32),
    Workload("iscsiperf", "read", 128 * 1024, 32),
]


def test_one_short_round_measures_both_targets(tmp_path: Path) -> None:
    for tool in ("qemu-img", "iscsi-perf", "tgtd", "tgtadm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed: run scripts/setup-host.sh")
    lines: list[str] = []
    opts = BenchOptions(
        workloads=WORKLOADS,
        scenario="bench-smoke",
        rounds=1,
        seconds=1.0,
        lun_size=32 * 1024 * 1024,
        results=tmp_path / "results",
        workdir=tmp_path / "work",
        iperf3=shutil.which("iperf3") is not None,
        log=lines.append,
    )
    summary, rd = run_bench(opts)
    assert summary_errors(summary) == []
    on_disk = json.loads((rd.path / "summary.json").read_text())
    assert on_disk["run_id"] == rd.run_id
    assert summary["passed"], json.dumps(summary["phases"]) + "\n" + "\n".join(lines)
    samples = [r for r in rd.records() if r["kind"] == "sample"]
    measured = {(s["workload"], s["target"]) for s in samples if s["ok"]}
    assert measured == {(w.name, k) for w in WORKLOADS for k in ("sanlab", "tgtd")}
    for s in samples:
        assert s["iops"] > 0 and s["bytes"] > 0 and s["cpu_s"] >= 0 and s["rss_peak_kib"] > 0
    for w in WORKLOADS:
        assert f"{w.name}.sanlab_tgtd_ratio" in summary["bench"]
        figs = next(f for f in summary["bench_detail"]["workloads"] if f["name"] == w.name)
        assert set(figs["targets"]) == {"sanlab", "tgtd"}
        assert figs["ratio"]["n"] == 1
    # one round: the goals are reported but cannot be judged
    assert summary["goals"] and {g["status"] for g in summary["goals"]} == {"skipped"}
    md = (rd.path / "bench.md").read_text()
    assert all(w.name in md for w in WORKLOADS)
    assert (rd.path / "bench.png").read_bytes()[:4] == b"\x89PNG"
