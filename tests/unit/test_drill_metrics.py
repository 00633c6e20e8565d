import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.metrics import count_io_errors, fault_metrics, primary_throughput, summarize_faults


def _probes(ini: str, times: list[float], failed: tuple[float, ...] = ()) -> list[dict]:
    out = [
        {"initiator": ini, "t": t, "ok": True, "lat_s": 0.002, "op": "write+read", "err": ""} for t in times
    ]
    out += [
        {"initiator": ini, "t": t, "ok": False, "lat_s": 5.0, "op": "write+read", "err": "EIO"}
        for t in failed
    ]
    return out


def _windows(ini: str, rates: dict[int, float], source: str = "fio", errors: dict[int, int] | None = None):
    """1 s windows ending at t (int seconds) with `rate` MB/s."""
    return [
        {
            "initiator": ini,
            "t": float(t),
            "window_s": 1.0,
            "bytes": int(r * 1e6),
            "ios": int(r * 1e6 / 4096),
            "errors": (errors or {}).get(t, 0),
            "source": source,
        }
        for t, r in sorted(rates.items())
    ]


def _ticks(a: float, b: float) -> list[float]:
    """probe completions every 0.1 s in [a, b)"""
    return [round(a + i / 10, 3) for i in range(round((b - a) * 10))]


FAULT = {"name": "cut-a", "fault": "cut-path", "injected_at_s": 20.04, "cleared_at_s": 40.0, "ok": True}


def test_path_cut_stall_recovery_and_errors():
    # probes every 0.1 s, nothing completes between 20.0 and 29.3 (a 9.3 s stall), then back
    probes = _probes("vm1", _ticks(0, 20.1) + _ticks(29.3, 60), failed=(29.25,))
    # 100 MB/s before, 0 during the stall, 60 at 30, then 100 again from the window [30, 31]
    rates = {t: 100.0 for t in range(1, 21)} | dict.fromkeys(range(21, 30), 0.0) | {30: 60.0}
    rates |= {t: 100.0 for t in range(31, 61)}
    tp = _windows("vm1", rates, errors={31: 2})
    m = fault_metrics(FAULT, probes, tp, window_end_s=60.0)
    assert m["kind"] == "cut-path" and m["initiator"] == "vm1" and m["name"] == "cut-a"
    assert m["max_stall_s"] == pytest.approx(9.3)
    assert m["stall_start_s"] == pytest.approx(20.0) and m["stall_end_s"] == pytest.approx(29.3)
    assert m["first_io_after_s"] == pytest.approx(9.26)
    assert m["baseline_bps"] == pytest.approx(100e6)
    # first window with >= 90 MB/s followed by another one: [30, 31] -> 30 - 20.04
    assert m["recovered_90_s"] == pytest.approx(10.0)  # 9.96 rounded to 0.1
    assert m["io_errors"] == 3  # one failed probe + two fio errors
    assert m["cleared_at_s"] == 40.0 and m["window_end_s"] == 60.0


def test_never_recovers_and_stall_runs_to_window_end():
    probes = _probes("vm1", _ticks(0, 20.1))
    tp = _windows("vm1", {t: 100.0 for t in range(1, 21)} | dict.fromkeys(range(21, 41), 10.0))
    m = fault_metrics(FAULT, probes, tp, window_end_s=40.0)
    assert m["max_stall_s"] == pytest.approx(20.0)
    assert m["first_io_after_s"] is None
    assert m["recovered_90_s"] is None


def test_recovery_needs_two_consecutive_windows():
    probes = _probes("vm1", _ticks(0, 60))
    rates = {t: 100.0 for t in range(1, 21)} | {21: 0.0, 22: 95.0, 23: 50.0, 24: 91.0, 25: 92.0}
    m = fault_metrics(FAULT, probes, _windows("vm1", rates), window_end_s=30.0)
    assert m["recovered_90_s"] == pytest.approx(3.0)  # window [23, 24] starts 2.96 s after the injection
    assert m["max_stall_s"] == pytest.approx(0.1)


def test_no_baseline_no_probes():
    m = fault_metrics(FAULT, [], _windows("vm1", {30: 100.0, 31: 100.0}), window_end_s=40.0)
    assert m["max_stall_s"] is None and m["first_io_after_s"] is None
    assert m["baseline_bps"] is None and m["recovered_90_s"] is None
    failed = {"name": "x", "fault": "kill-target", "injected_at_s": None, "ok": False}
    m = fault_metrics(failed, _probes("vm1", [1.0]), [], window_end_s=10.0)
    assert m["max_stall_s"] is None and m["injected_ok"] is False and m["io_errors"] == 0


def test_primary_source_and_error_count():
    probe_w = _windows("vm1", {1: 0.01, 2: 0.01}, source="probe", errors={2: 5})
    fio_w = _windows("vm1", {1: 50.0, 2: 50.0}, source="fio", errors={2: 1})
    assert {w["source"] for w in primary_throughput(probe_w + fio_w)} == {"fio"}
    assert {w["source"] for w in primary_throughput(probe_w)} == {"probe"}
    probes = _probes("vm1", [0.5], failed=(1.5, 2.5))
    # probe windows' errors are the probes themselves: not counted twice
    assert count_io_errors(probes, probe_w + fio_w, 0.0, 2.0) == 2
    assert count_io_errors(probes, probe_w + fio_w, 2.0, 3.0) == 1


def test_summarize_windows_per_initiator():
    faults = [
        {"name": "flap-2", "fault": "flap-path", "injected_at_s": 30.0, "cleared_at_s": None, "ok": True},
        {"name": "cut-1", "fault": "cut-path", "injected_at_s": 10.0, "cleared_at_s": 20.0, "ok": True},
        {"name": "cut-1b", "fault": "cut-path", "injected_at_s": 10.0, "cleared_at_s": 20.0, "ok": True},
    ]
    probes = _probes("a", _ticks(0, 12) + _ticks(15, 45)) + _probes("b", _ticks(0, 45))
    rows = summarize_faults(faults, probes, [], {"a": 45.0, "b": 44.0})
    assert [(r["name"], r["initiator"]) for r in rows] == [
        ("cut-1", "a"),
        ("cut-1", "b"),
        ("cut-1b", "a"),
        ("cut-1b", "b"),
        ("flap-2", "a"),
        ("flap-2", "b"),
    ]
    assert rows[0]["window_end_s"] == 30.0 and rows[0]["max_stall_s"] == pytest.approx(3.1)
    assert rows[1]["max_stall_s"] == pytest.approx(0.1)
    assert rows[4]["window_end_s"] == 45.0 and rows[5]["window_end_s"] == 44.0
    # a fault without any initiator data still gets a row
    only = summarize_faults(faults[:1], [], [], 50.0)
    assert len(only) == 1 and only[0]["initiator"] == "" and only[0]["max_stall_s"] is None


@settings(max_examples=150, deadline=None)
@given(
    oks=st.lists(st.tuples(st.floats(0, 60, allow_nan=False), st.booleans()), max_size=60),
    inj=st.floats(0, 50, allow_nan=False),
    length=st.floats(0, 20, allow_nan=False),
)
def test_stall_bounds(oks, inj, length):
    end = inj + length
    probes = [{"initiator": "x", "t": t, "ok": ok, "lat_s": 0.0} for t, ok in oks]
    m = fault_metrics({"name": "f", "fault": "cut-path", "injected_at_s": inj}, probes, [], window_end_s=end)
    if not probes:
        assert m["max_stall_s"] is None
        return
    succ = sorted(t for t, ok in oks if ok)
    inside = [t for t in succ if inj < t <= end]
    largest_inside = max((b - a for a, b in itertools.pairwise(inside)), default=0.0)
    before = [t for t in succ if t <= inj]
    pre_gap = inj - before[-1] if before else 0.0
    # never below the largest gap between successes inside the window (0.05: rounding to 0.1 s) ...
    assert m["max_stall_s"] >= largest_inside - 0.05 - 1e-9
    # ... and never longer than the window plus the pre-fault gap
    assert m["max_stall_s"] <= length + pre_gap + 0.05 + 1e-9
    if m["first_io_after_s"] is not None:
        assert 0 <= m["first_io_after_s"] <= length + 0.005 + 1e-9
        assert m["max_stall_s"] >= m["first_io_after_s"] - 0.055 - 1e-9


@settings(max_examples=100, deadline=None)
@given(rates=st.lists(st.floats(0, 200, allow_nan=False), min_size=12, max_size=40))
def test_recovery_is_consistent(rates):
    tp = _windows("x", {i + 1: r for i, r in enumerate(rates)})
    inj = 10.0
    m = fault_metrics(
        {"name": "f", "fault": "cut-path", "injected_at_s": inj}, [], tp, window_end_s=len(rates)
    )
    rec = m["recovered_90_s"]
    if rec is None:
        return
    assert m["baseline_bps"] is not None and m["baseline_bps"] > 0
    start = round(inj + rec)  # windows are whole seconds: the window starting there and the next one
    got = [w for w in tp if w["t"] in (start + 1, start + 2)]
    assert len(got) == 2
    assert all(w["bytes"] >= 0.9 * m["baseline_bps"] - 1 for w in got)
