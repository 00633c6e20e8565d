"""The failover drill's pure parts: the fault timeline on a fake clock, workload results, the measurement
windows of simultaneous faults, data verification and the declarative checks."""

from dataclasses import dataclass, field

from lab.scenario.checks import evaluate
from lab.scenario.failover import FaultRun, Timeline, collected, measurement_faults, verify_verdict
from lab.scenario.model import CheckSpec, FaultEntry


class FakeClock:
    """time.time and time.sleep on a virtual clock (sleep advances it; nothing really waits)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def time(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert s > 0
        self.slept.append(s)
        self.t += s


@dataclass
class FakeFault:
    clock: FakeClock
    name: str
    log: list[tuple[str, str, float]]
    fail_inject: bool = False
    fail_clear: bool = False
    takes_s: float = 0.0
    calls: list[str] = field(default_factory=list)

    def inject(self) -> str:
        self.log.append((self.name, "inject", self.clock.t))
        self.clock.t += self.takes_s
        if self.fail_inject:
            raise RuntimeError("no such network")
        return f"{self.name} in"

    def clear(self) -> str:
        self.log.append((self.name, "clear", self.clock.t))
        if self.fail_clear:
            raise RuntimeError("still cut")
        return f"{self.name} out"


def _timeline(specs, clock, log, origin_s=0.0, **kw):
    runs = [
        FaultRun(FaultEntry(kind, at, name, dur), FakeFault(clock, name, log, **kw.get(name, {})))
        for name, kind, at, dur in specs
    ]
    return Timeline(runs, t0=clock.t - origin_s, origin_s=origin_s, clock=clock.time, sleep=clock.sleep), runs


def test_timeline_injects_and_clears_on_the_drill_clock():
    clock, log = FakeClock(), []
    tl, runs = _timeline(
        [
            ("cut", "cut-path", 10.0, 20.0),
            ("reset", "lun-reset", 15.0, None),
            ("late", "cut-path", 70.0, 5.0),
        ],
        clock,
        log,
    )
    tl.run(60.0)
    assert [(n, a, round(t - 1000.0, 3)) for n, a, t in log] == [
        ("cut", "inject", 10.0),
        ("reset", "inject", 15.0),
        ("cut", "clear", 30.0),
    ]
    assert round(tl.now(), 3) == 60.0  # waited for the end of the workload
    assert max(clock.slept) <= 0.5  # sleeps in slices (stays responsive)
    recs = [r.record() for r in runs]
    assert recs[0] | {"detail": ""} == {
        "name": "cut", "fault": "cut-path", "scheduled_at_s": 10.0, "injected_at_s": 10.0,
        "cleared_at_s": 30.0, "ok": True, "detail": "", "params": {},
    }  # fmt: skip
    assert recs[0]["detail"] == "cut in; cut out"
    assert recs[1]["cleared_at_s"] is None and recs[2]["injected_at_s"] is None  # never due


def test_timeline_counts_from_its_origin_and_records_drill_time():
    clock, log = FakeClock(), []
    # the workloads took 7.5 s to start: the drill clock reads 7.5 when the timeline starts
    tl, runs = _timeline([("cut", "cut-path", 10.0, 5.0)], clock, log, origin_s=7.5)
    tl.run(20.0)
    rec = runs[0].record()
    assert (rec["scheduled_at_s"], rec["injected_at_s"], rec["cleared_at_s"]) == (10.0, 17.5, 22.5)
    assert round(tl.now(), 3) == 27.5


def test_clear_before_inject_at_the_same_time_and_late_events_still_run():
    clock, log = FakeClock(), []
    tl, runs = _timeline(
        [("a", "cut-path", 5.0, 5.0), ("b", "cut-path", 10.0, 1.0)], clock, log, a={"takes_s": 7.0}
    )
    tl.run(30.0)
    # a's inject took 7 s: b (due at 10) runs late but runs; a's clear (due at 10) comes before b's inject
    assert [(n, a) for n, a, _ in log] == [("a", "inject"), ("a", "clear"), ("b", "inject"), ("b", "clear")]
    assert runs[1].record()["injected_at_s"] == 12.0


def test_failures_are_recorded_and_clear_remaining():
    clock, log = FakeClock(), []
    tl, runs = _timeline(
        [("bad", "cut-path", 1.0, 5.0), ("held", "cut-path", 2.0, None), ("stuck", "cut-path", 3.0, 100.0)],
        clock,
        log,
        bad={"fail_inject": True},
        stuck={"fail_clear": True},
    )
    tl.run(10.0)
    tl.clear_remaining()
    bad, held, stuck = (r.record() for r in runs)
    assert (
        not bad["ok"]
        and bad["injected_at_s"] is None
        and "inject failed: RuntimeError: no such network" in bad["detail"]
    )
    # a failed inject may have half-done its work: clear_remaining restores (once), with no clearing time
    assert [(n, a) for n, a, _ in log].count(("bad", "clear")) == 1
    assert bad["cleared_at_s"] is None and "restore after failed inject" in bad["detail"]
    # an until-the-end fault is cleared at the end but has no clearing time of its own
    assert held["ok"] and held["cleared_at_s"] is None and ("held", "clear") in [(n, a) for n, a, _ in log]
    assert not stuck["ok"] and "clear failed" in stuck["detail"]


def test_simultaneous_faults_share_one_window():
    recs = [
        {"name": "kill", "scheduled_at_s": 25.0, "injected_at_s": 25.01},
        {"name": "promote", "scheduled_at_s": 25.0, "injected_at_s": 25.4},
        {"name": "later", "scheduled_at_s": 40.0, "injected_at_s": 40.2},
        {"name": "failed", "scheduled_at_s": 50.0, "injected_at_s": None},
    ]
    out = measurement_faults(recs)
    assert [r["injected_at_s"] for r in out] == [25.01, 25.01, 40.2, None]
    assert out[1]["injected_self_s"] == 25.4 and recs[1]["injected_at_s"] == 25.4  # input untouched


def test_collected_reads_results_and_records():
    @dataclass
    class Result:
        probes: list
        throughput: list
        errors: int = 2
        verify_ok: bool | None = True
        detail: str = "fine"
        ok: bool = True
        clock: dict = field(default_factory=lambda: {"before": {"offset_s": 0.1}})
        extra: dict = field(default_factory=dict)

    got = collected(Result([{"t": 1.0, "ok": True}], [{"t": 1.0, "bytes": 5}]), "deb12")
    assert got.probes == [{"t": 1.0, "ok": True, "initiator": "deb12"}]
    assert got.throughput[0]["initiator"] == "deb12" and got.errors == 2 and got.verify_ok is True
    assert got.extra == {"clock": {"before": {"offset_s": 0.1}}}
    pairs = collected({"records": [("probe", {"t": 2.0, "ok": False}), ("workload", {"x": 1})]}, "v")
    assert pairs.probes == [{"t": 2.0, "ok": False, "initiator": "v"}] and pairs.throughput == []


def test_verify_verdict():
    ok = verify_verdict(
        [
            {"workload": "fio", "initiator": "a", "verify_ok": True},
            {"workload": "x", "initiator": "a", "verify_ok": None},
        ]
    )
    assert ok == {"ok": True, "detail": "data verified by fio@a"}
    bad = verify_verdict([{"workload": "fio", "initiator": "a", "verify_ok": False}])
    assert bad == {"ok": False, "detail": "verification FAILED on fio@a"}
    assert verify_verdict([])["ok"] is False  # nothing verified is not a pass


ROWS = [
    {
        "name": "cut",
        "initiator": "a",
        "max_stall_s": 9.3,
        "first_io_after_s": 9.1,
        "recovered_90_s": 12.0,
        "io_errors": 0,
    },
    {
        "name": "cut",
        "initiator": "b",
        "max_stall_s": 4.0,
        "first_io_after_s": 3.9,
        "recovered_90_s": None,
        "io_errors": 1,
    },
]
WORKLOADS = [
    {"initiator": "a", "workload": "fio", "ok": True, "errors": 0, "verify_ok": True},
    {"initiator": "b", "workload": "probe", "ok": True, "errors": 3, "verify_ok": True},
]
FAULTS = [{"name": "cut", "ok": True}]


def _status(check: CheckSpec) -> tuple[str, object]:
    [out] = evaluate([check], ROWS, WORKLOADS, FAULTS)
    return out["status"], out["value"]


def test_checks_row_metrics_take_the_worst_and_never_fails_max():
    assert _status(CheckSpec("max_stall_s", max=10)) == ("passed", 9.3)
    assert _status(CheckSpec("max_stall_s", max=9)) == ("failed", 9.3)
    assert _status(CheckSpec("max_stall_s", max=5, initiator="b")) == ("passed", 4.0)
    assert _status(CheckSpec("recovered_90_s", max=60)) == ("failed", None)  # b never recovered
    assert _status(CheckSpec("recovered_90_s", max=60, initiator="a")) == ("passed", 12.0)
    assert _status(CheckSpec("first_io_after_s", min=1, max=10)) == ("passed", 9.1)
    assert _status(CheckSpec("max_stall_s", max=10, fault="other")) == ("failed", None)  # nothing in scope


def test_checks_io_errors_verify_faults_workloads():
    assert _status(CheckSpec("io_errors", max=0)) == ("failed", 3)  # the workloads' total beats the windows'
    assert _status(CheckSpec("io_errors", max=0, initiator="a")) == ("passed", 0)
    assert _status(CheckSpec("io_errors", max=1, fault="cut")) == ("passed", 1)
    assert _status(CheckSpec("verify_ok", equals=True)) == ("passed", True)
    assert _status(CheckSpec("faults_ok", equals=True)) == ("passed", True)
    assert _status(CheckSpec("workloads_ok", equals=True)) == ("passed", True)
    [out] = evaluate([CheckSpec("verify_ok", equals=True)], ROWS, [], FAULTS)
    assert out["status"] == "failed" and out["value"] is None and "no workload verified" in out["detail"]
    [out] = evaluate([CheckSpec("faults_ok", equals=True)], ROWS, WORKLOADS, [{"name": "x", "ok": False}])
    assert out == {
        "name": "faults_ok == true", "metric": "faults_ok", "status": "failed", "value": False,
        "detail": "faults_ok = False (failed: x)",
    }  # fmt: skip
