from matplotlib.figure import Figure

from lab.metrics import summarize_faults
from lab.plots.stalls import bar_table, stall_bars_figure
from lab.plots.timeline import fault_labels, timeline_figure
from lab.plots.trend import trend_figure, trend_metrics


def _gids(fig: Figure, gid: str) -> list:
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


def _drill():
    probes, tp = [], []
    for ini, stall in (("vm1", (20.0, 29.3)), ("vm2", (20.0, 21.0))):
        for i in range(400):
            t = round(i / 10, 2)
            if not stall[0] < t < stall[1]:
                probes.append({"initiator": ini, "t": t, "ok": True, "lat_s": 0.002, "err": ""})
        probes.append({"initiator": ini, "t": 29.0, "ok": False, "lat_s": 9.0, "err": "EIO"})
        for s in range(1, 41):
            rate = 0 if stall[0] < s <= stall[1] + 1 else 100e6
            tp.append(
                {
                    "initiator": ini,
                    "t": float(s),
                    "window_s": 1.0,
                    "bytes": rate,
                    "ios": rate / 4096,
                    "errors": 0,
                    "source": "fio",
                }
            )
    faults = [
        {"name": "cut-a", "fault": "cut-path", "injected_at_s": 20.04, "cleared_at_s": 35.0, "ok": True}
    ]
    return probes, tp, faults


def test_timeline_marks_faults_stalls_recovery(tmp_path):
    probes, tp, faults = _drill()
    rows = summarize_faults(faults, probes, tp, 40.0)
    fig = timeline_figure(probes, tp, faults, rows, title="path-failover")
    assert isinstance(fig, Figure)
    main_axes = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert [ax.get_title(loc="left") for ax in main_axes] == ["vm1", "vm2"]
    assert len(_gids(fig, "injection")) == 2 and len(_gids(fig, "fault-span")) == 2
    # vm1 stalls 9.3 s (drawn), vm2 only ~1 s (drawn: >= 0.5 s)
    assert len(_gids(fig, "stall")) == 2
    assert any("stall 9.3 s" in t.get_text() for ax in fig.axes for t in ax.texts)
    rec = [a for a in _gids(fig, "recovery") if hasattr(a, "get_xdata")]
    recovered_at = sorted(r["injected_at_s"] + r["recovered_90_s"] for r in rows)
    assert sorted(round(float(a.get_xdata()[0]), 2) for a in rec if len(a.get_xdata()) == 1) == [
        round(x, 2) for x in recovered_at
    ]
    assert len(_gids(fig, "probe-failed")) == 2
    fig.savefig(tmp_path / "t.png", dpi=60)
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_timeline_without_records():
    fig = timeline_figure([], [], [], [], title="empty")
    assert any(t.get_text() == "no records" for ax in fig.axes for t in ax.texts)


def test_stall_bars_side_by_side(tmp_path):
    rows = [
        {
            "drill": "path-failover",
            "initiator": "vm1",
            "target_kind": "sanlab",
            "max_stall_s": 9.0,
            "recovered_90_s": 11.0,
        },
        {
            "drill": "path-failover",
            "initiator": "vm1",
            "target_kind": "sanlab",
            "max_stall_s": 9.4,
            "recovered_90_s": 10.0,
        },
        {
            "drill": "path-failover",
            "initiator": "vm1",
            "target_kind": "tgt",
            "max_stall_s": 9.3,
            "recovered_90_s": None,
        },
    ]
    groups, kinds, values = bar_table(rows)
    assert groups == [("path-failover", "vm1")] and kinds == ["sanlab", "tgt"]
    assert values[("path-failover", "vm1", "sanlab", "max_stall_s")] == 9.4
    assert values[("path-failover", "vm1", "sanlab", "recovered_90_s")] == 11.0
    assert values[("path-failover", "vm1", "tgt", "recovered_90_s")] is None
    fig = stall_bars_figure(rows, title="stalls")
    stall_ax, rec_ax = fig.axes[0], fig.axes[1]
    assert sorted(round(p.get_height(), 1) for p in stall_ax.patches) == [9.3, 9.4]
    assert [round(p.get_height(), 1) for p in rec_ax.patches] == [11.0]
    assert any(t.get_text() == "never" for t in rec_ax.texts)
    fig.savefig(tmp_path / "s.png", dpi=60)


def test_trend_over_runs(tmp_path):
    entries = [
        {
            "run_id": f"2026112{i}T000000Z-abcd",
            "scenario": "path-failover",
            "target_kind": k,
            "git_rev": f"r{i}",
            "passed": i != 2,
            "metrics": {"max_stall_s": 9.0 + i, "throughput_bps": 1e8, "bench.read_iops": None},
        }
        for i in range(4)
        for k in ("sanlab", "tgt")
    ]
    assert trend_metrics(entries) == ["max_stall_s", "throughput_bps"]
    assert trend_metrics(entries, ["throughput_bps", "nope"]) == ["throughput_bps"]
    fig = trend_figure(entries, title="trend")
    assert [ax.get_ylabel() for ax in fig.axes] == ["max_stall_s", "throughput (MB/s)"]
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() != "failed-run"]
    assert len(lines) == 2 and list(lines[0].get_ydata()) == [9.0, 10.0, 11.0, 12.0]
    assert len([ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "failed-run"]) == 2
    fig.savefig(tmp_path / "trend.png", dpi=60)
    empty = trend_figure([], title="none")
    assert any(t.get_text() == "no indexed metrics" for t in empty.axes[0].texts)


def test_fault_labels_at_the_same_time_do_not_overlap():
    faults = [
        {"name": "cut-a", "injected_at_s": 20.0},
        {"name": "cut-b", "injected_at_s": 20.3},  # the same instant at this scale: one label
        {"name": "kill", "injected_at_s": 23.0},  # close: the next height
        {"name": "restore", "injected_at_s": 60.0},  # far: the first height again
        {"fault": "lun-reset", "injected_at_s": None},  # never injected: no label
    ]
    assert fault_labels(faults, 100.0) == [
        (20.0, "cut-a + cut-b", 0),
        (23.0, "kill", 1),
        (60.0, "restore", 0),
    ]
    probes, tp, _ = _drill()
    fig = timeline_figure(probes, tp, faults[:4], [], title="two at once")
    texts = sorted(a.get_text() for a in _gids(fig, "fault-label"))
    assert texts == ["cut-a + cut-b", "kill", "restore"]  # on the first subplot only
