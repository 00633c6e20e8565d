"""lab.bench.stats and lab.bench.report on synthetic samples; the summary a run writes matches the schema."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.bench import report, stats
from lab.bench.runner import Bench, BenchOptions, order
from lab.bench.stats import Sample
from lab.bench.workloads import Workload
from lab.results import RunDir, summary_errors

R4K = Workload("qemu", "read", 4096, 32)
W128K = Workload("qemu", "write", 131072, 32)
QD1 = Workload("qemu", "read", 4096, 1)


def sample(w: Workload, target: str, rnd: int, iops: float, cpu_s: float = 1.0, ok: bool = True) -> Sample:
    seconds = 4.0
    ios = int(iops * seconds)
    return Sample(
        workload=w.name,
        target=target,
        round=rnd,
        ok=ok,
        iops=iops if ok else 0.0,
        bytes_per_s=iops * w.bs if ok else 0.0,
        ios=ios if ok else 0,
        bytes=ios * w.bs if ok else 0,
        seconds=seconds,
        wall_s=seconds + 0.2,
        cpu_s=cpu_s,
        rss_peak_kib=60_000 if target == "sanlab" else 9_000,
        load1=1.5,
        error="" if ok else "qemu-img exited 1",
    )


def three_rounds() -> list[Sample]:
    out = []
    for rnd, (a, b) in enumerate([(8000, 20000), (9000, 20000), (12000, 24000)], start=1):
        out += [sample(R4K, "sanlab", rnd, a), sample(R4K, "tgtd", rnd, b)]
    for rnd, (a, b) in enumerate([(900, 800), (1000, 800), (700, 1000)], start=1):
        out += [sample(W128K, "sanlab", rnd, a, cpu_s=2.0), sample(W128K, "tgtd", rnd, b)]
    out += [sample(QD1, "sanlab", 1, 1000), sample(QD1, "tgtd", 1, 2000)]
    return out


def test_paired_ratios_and_spread() -> None:
    figs = stats.workload_figures([R4K, W128K], three_rounds())
    r4k, w128 = figs
    assert r4k.ratio is not None and w128.ratio is not None
    assert r4k.ratio.median == pytest.approx(0.45) and r4k.ratio.min == pytest.approx(0.4)
    assert r4k.ratio.max == pytest.approx(0.5) and r4k.ratio.n == 3
    assert w128.ratio.median == pytest.approx(1.125)
    t = r4k.targets["tgtd"]
    assert t.iops is not None and t.iops.median == 20000 and t.iops.max == 24000


def test_cpu_per_gb_and_per_10k_io() -> None:
    samples = [sample(W128K, "sanlab", r, 1000, cpu_s=2.0) for r in (1, 2)]
    f = stats.target_figures(samples)
    total_bytes = sum(s.bytes for s in samples)
    total_ios = sum(s.ios for s in samples)
    assert f.cpu_s_per_gb == pytest.approx(4.0 / (total_bytes / 1e9))
    assert f.cpu_s_per_10k_io == pytest.approx(4.0 / (total_ios / 1e4))
    assert f.rss_peak_mib == pytest.approx(60_000 / 1024)


def test_failed_rounds_are_left_out_of_ratios() -> None:
    samples = [
        sample(R4K, "sanlab", 1, 1000),
        sample(R4K, "tgtd", 1, 2000),
        sample(R4K, "sanlab", 2, 0, ok=False),
        sample(R4K, "tgtd", 2, 2000),
    ]
    (f,) = stats.workload_figures([R4K], samples)
    assert f.ratio is not None and f.ratio.n == 1 and f.ratio.median == pytest.approx(0.5)
    assert f.targets["sanlab"].failures == 1 and f.targets["sanlab"].errors == ["qemu-img exited 1"]


@given(
    st.lists(
        st.tuples(st.floats(min_value=1, max_value=1e6), st.floats(min_value=1, max_value=1e6)),
        min_size=1,
        max_size=9,
    )
)
def test_ratio_median_is_the_median_of_round_ratios(pairs: list[tuple[float, float]]) -> None:
    samples = []
    for rnd, (a, b) in enumerate(pairs, start=1):
        samples += [sample(R4K, "sanlab", rnd, a), sample(R4K, "tgtd", rnd, b)]
    (f,) = stats.workload_figures([R4K], samples)
    ratios = [a / b for a, b in pairs]
    assert f.ratio is not None
    assert f.ratio.median == pytest.approx(statistics.median(ratios))
    assert f.ratio.min <= f.ratio.median <= f.ratio.max


def test_goals() -> None:
    figs = stats.workload_figures([R4K, W128K, QD1], three_rounds())
    goals = {g["workload"]: g for g in stats.goals(figs, rounds=3)}
    assert set(goals) == {R4K.name, W128K.name}  # QD1 has no goal
    assert goals[R4K.name]["status"] == "failed" and goals[R4K.name]["min_ratio"] == 0.8
    assert goals[W128K.name]["status"] == "passed"
    one_round = stats.goals(figs, rounds=1)
    assert {g["status"] for g in one_round} == {"skipped"}


def test_order_alternates() -> None:
    kinds = ("sanlab", "tgtd")
    assert order(kinds, 1, 0) != order(kinds, 2, 0)
    assert order(kinds, 1, 0) != order(kinds, 1, 1)
    assert order(("tgtd",), 1, 0) == ["tgtd"]


def test_flat_metrics_names_and_units() -> None:
    figs = stats.workload_figures([R4K, W128K], three_rounds())
    m = stats.flat_metrics(figs, loopback_mb_s=2300.0, scale={"sanlab.logins_per_s": 150.0})
    assert m[f"{R4K.name}.sanlab_iops"] == 9000
    assert m[f"{R4K.name}.sanlab_tgtd_ratio"] == pytest.approx(0.45)
    assert m["loopback.iperf3_mb_s"] == 2300.0
    assert m["scale.sanlab.logins_per_s"] == 150.0
    assert m["sanlab.peak_rss_mib"] == pytest.approx(58.6, abs=0.1)
    suffixes = ("_iops", "_mb_s", "_ratio", "_cpu_s_per_gb", "_cpu_s_per_10k_io", "_rss_mib", "_logins_per_s")
    assert all(k.replace(".", "_").endswith(suffixes) for k in m)
    assert all(isinstance(v, float | int) for v in m.values())


def test_loopback_fraction_only_for_128k_reads() -> None:
    r128 = Workload("iscsiperf", "read", 131072, 32)
    samples = [sample(r128, "sanlab", 1, 4000), sample(r128, "tgtd", 1, 8000), *three_rounds()]
    figs = stats.workload_figures([r128, R4K, W128K], samples)
    fr = stats.loopback_fractions(figs, 2000.0)
    assert set(fr) == {f"{r128.name}.sanlab", f"{r128.name}.tgtd"}
    assert fr[f"{r128.name}.tgtd"] == pytest.approx(8000 * 131072 / 1e6 / 2000.0)


def _bench(tmp_path: Path, samples: list[Sample]) -> tuple[Bench, RunDir]:
    opts = BenchOptions(workloads=[R4K, W128K, QD1], rounds=3, results=tmp_path, log=lambda _: None)
    b = Bench(opts)
    b.samples = samples
    b.loopback = [2.3e9, 2.2e9, 2.4e9]
    b.versions = {
        "qemu-img": "qemu-img version 7.2",
        "iscsi-perf": "1.19",
        "tgtd": "1.0.85",
        "iperf3": "3.12",
    }
    return b, RunDir.create(tmp_path, "bench")


def test_summary_matches_the_results_schema(tmp_path: Path) -> None:
    b, rd = _bench(tmp_path, three_rounds())
    phases = [{"name": "run", "passed": True, "seconds": 10.0, "detail": ""}]
    summary = b.summary(rd, "2026-11-24T01:00:00+00:00", 12.5, phases, {})
    assert summary_errors(summary) == []
    assert summary["passed"] is True
    rd.write_summary(summary)
    back = json.loads((rd.path / "summary.json").read_text())
    assert back["bench"][f"{R4K.name}.sanlab_tgtd_ratio"] == pytest.approx(0.45)
    assert back["bench_detail"]["loopback"]["mb_s"]["median"] == pytest.approx(2300)
    assert {i["name"] for i in back["initiators"]} == {"qemu-img"}
    assert len(back["initiators"][0]["checks"]) == len(three_rounds())


def test_summary_fails_when_a_measurement_failed(tmp_path: Path) -> None:
    b, rd = _bench(tmp_path, [*three_rounds(), sample(QD1, "sanlab", 2, 0, ok=False)])
    summary = b.summary(
        rd, "2026-11-24T01:00:00+00:00", 1.0, [{"name": "run", "passed": True, "seconds": 1.0}], {}
    )
    assert summary_errors(summary) == []
    assert summary["passed"] is False
    assert not summary["initiators"][0]["passed"]


def test_markdown_and_console_table(tmp_path: Path) -> None:
    b, rd = _bench(tmp_path, three_rounds())
    summary = b.summary(
        rd, "2026-11-24T01:00:00+00:00", 1.0, [{"name": "run", "passed": True, "seconds": 1.0}], {}
    )
    figs = stats.workload_figures([R4K, W128K, QD1], three_rounds())
    md = report.markdown(summary, figs)
    assert "| workload | sanlab | tgtd | ratio median [min-max]" in md
    assert (
        "| qemu-read-4k-qd32 | 9,000 IOPS, 36.9 MB/s | 20,000 IOPS, 81.9 MB/s | 0.45x [0.40-0.50] (n=3)" in md
    )
    assert "qemu-write-128k-qd32 >= 1.0x tgtd | passed" in md
    assert "loopback limit (iperf3, one stream): 2,300 MB/s" in md
    table = report.console_table(figs)
    assert table.row_count == 3


def test_chart_is_a_figure_with_both_panels(tmp_path: Path) -> None:
    figs = stats.workload_figures([R4K, W128K, QD1], three_rounds())
    fig = report.chart(figs, "t")
    assert len(fig.axes) == 2
    rel = fig.axes[0]
    heights = sorted(round(p.get_height(), 3) for p in rel.patches)
    assert 0.45 in heights and 1.0 in heights  # sanlab's ratio median and tgtd's reference bar
    out = tmp_path / "bench.png"
    fig.savefig(out, dpi=50)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_with_one_target_only() -> None:
    samples = [s for s in three_rounds() if s.target == "sanlab"]
    figs = stats.workload_figures([R4K, W128K], samples)
    fig = report.chart(figs, "sanlab only")
    assert len(fig.axes) == 2
