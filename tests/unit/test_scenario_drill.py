"""The failover drill's workload and verify phases wired together, in process: fake workloads (records on the
drill clock with a stall after the fault) and a fake fault stand in for lab.workloads and lab.faults; the real
metrics (lab.metrics) and checks run on what they produce. Also the not-applicable path of run_scenario."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import lab.workloads as workloads_pkg
from lab.results import RunDir
from lab.scenario import drill
from lab.scenario.failover import FaultRun
from lab.scenario.model import CheckSpec, FaultEntry, load_scenario
from lab.scenario.runner import LabRun, run_scenario

SCEN = Path(__file__).resolve().parents[2] / "scenarios"


@dataclass
class FakeWorkload:
    """Reports probes every 0.1 s over 0..4 s of the timeline, with a 2 s gap right after 1.0 s."""

    spec: Any
    node: str
    t0: float
    origin: list[float]
    calls: list[str] = field(default_factory=list)

    def start(self) -> str:
        self.calls.append("start")
        return "started"

    def stop(self) -> str:
        self.calls.append("stop")
        return "stopped"

    def collect(self) -> dict[str, Any]:
        o = self.origin[0]
        times = [o + k / 10 for k in range(41) if not 1.0 < k / 10 < 3.0]
        probes = [{"t": t, "ok": True, "lat_s": 0.01, "op": "write+read", "err": ""} for t in times]
        windows = [
            {
                "t": o + k / 2,
                "window_s": 0.5,
                "bytes": 0 if 2.0 < k / 2 <= 3.0 else 1 << 20,
                "ios": 10,
                "errors": 0,
            }
            for k in range(1, 9)
        ]
        if self.spec.kind != "probe":
            probes = []
        return {"probes": probes, "throughput": windows, "errors": 0, "verify_ok": True, "detail": "ok"}


@dataclass
class FakeFault:
    log: list[str]

    def inject(self) -> str:
        self.log.append("inject")
        return "cut"

    def clear(self) -> str:
        self.log.append("clear")
        return "restored"


def test_workload_and_verify_phases(tmp_path, monkeypatch):
    sc = load_scenario(SCEN / "path-failover.yml")
    sc.duration_s = 0.6  # short: the fake records are placed relative to the timeline's origin anyway
    sc.faults = [FaultEntry("cut-path", 0.1, "cut", 0.2)]
    sc.checks = [
        CheckSpec("max_stall_s", max=5),
        CheckSpec("io_errors", max=0),
        CheckSpec("verify_ok", equals=True),
    ]
    rd = RunDir.create(tmp_path, sc.name)
    lab = LabRun(sc.topology, rd.path, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    st = drill.DrillState(devices={"deb12": "/dev/mapper/mpatha"})
    fault_log: list[str] = []
    st.faults = [FaultRun(sc.faults[0], FakeFault(fault_log))]
    made: list[FakeWorkload] = []
    origin: list[float] = [0.0]

    def make(spec, node, executor, device, t0, **kw):
        assert device == "/dev/mapper/mpatha" and kw["max_duration_s"] > sc.duration_s
        made.append(FakeWorkload(spec, node, t0, origin))
        return made[-1]

    monkeypatch.setattr(workloads_pkg, "make_workload", make)
    monkeypatch.setattr(drill, "node_executor", lambda lab_, node: object())
    drill._workload_phase(lab, sc, st, rd)
    origin[0] = st.origin_s
    # the fake fault was injected at origin + 0.1: move it onto the fake stall (origin + 1.0) for the metrics
    assert fault_log == ["inject", "clear"] and [w.calls for w in made] == [["start", "stop"]] * 2
    st.fault_records[0]["injected_at_s"] = st.origin_s + 1.05
    st.stop_at_s = st.origin_s + 4.0
    detail = drill._verify(lab, sc, st, rd)
    assert "3 checks passed" in detail
    [row] = st.rows
    assert row["name"] == "cut" and row["initiator"] == "deb12" and row["io_errors"] == 0
    assert row["max_stall_s"] == pytest.approx(2.0, abs=0.11)
    assert st.verify["ok"] and [c["status"] for c in st.checks] == ["passed"] * 3
    kinds = [json.loads(line)["kind"] for line in (rd.path / "records.jsonl").read_text().splitlines()]
    assert {"drill-clock", "fault", "probe", "throughput", "workload"} <= set(kinds)
    problems = drill._plots(sc, st, rd)
    assert problems == [] and (rd.path / "timeline.png").exists() and (rd.path / "stalls.png").exists()


def test_not_applicable_runs_nothing(tmp_path):
    sc = load_scenario(SCEN / "alua-switch.yml", target_kind="tgt")
    path, passed = run_scenario(sc, tmp_path, console=Console(file=open("/dev/null", "w")))  # noqa: SIM115
    summary = json.loads((path / "summary.json").read_text())
    assert passed and summary["skipped"].startswith("tgtd has no ALUA") and summary["phases"] == []
    assert summary["target_kind"] == "tgt"
