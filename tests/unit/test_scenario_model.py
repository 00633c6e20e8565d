"""Failover scenario files: schema and semantic validation (every problem at once, with its path), defaults,
the --target-kind override and the drills shipped in scenarios/."""

from pathlib import Path

import pytest
import yaml

from lab.scenario.model import CheckSpec, load_scenario
from lab.topology import TargetKind, TopologyError

SCEN = Path(__file__).resolve().parents[2] / "scenarios"
DRILLS = ("path-failover", "path-flap", "target-restart", "alua-switch", "node-failover")


def _write(tmp_path: Path, doc: dict) -> Path:
    (tmp_path / "t.topology.yml").write_text((SCEN / "path-failover.topology.yml").read_text())
    p = tmp_path / "s.yml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _doc() -> dict:
    return {
        "name": "drill",
        "topology": "t.topology.yml",
        "drill": "failover",
        "duration_s": 60,
        "workloads": [{"kind": "probe"}],
        "faults": [
            {
                "kind": "cut-path",
                "at_s": 10,
                "duration_s": 20,
                "params": {"target": "tgt1", "network": "san-a"},
            }
        ],
        "checks": [{"metric": "io_errors", "max": 0}],
    }


def _errors(tmp_path: Path, doc: dict) -> list[str]:
    with pytest.raises(TopologyError) as ei:
        load_scenario(_write(tmp_path, doc))
    return ei.value.errors


@pytest.mark.parametrize("drill", DRILLS)
def test_shipped_drills_are_valid(drill):
    sc = load_scenario(SCEN / f"{drill}.yml")
    assert sc.drill == "failover" and sc.name == drill
    assert sc.workloads and sc.faults and sc.checks
    assert all(0 <= f.at_s < sc.duration_s for f in sc.faults)
    assert {c.metric for c in sc.checks} >= {"io_errors", "verify_ok", "max_stall_s"}


def test_defaults_names_and_initiators(tmp_path):
    sc = load_scenario(_write(tmp_path, _doc()))
    assert sc.duration_s == 60.0
    assert sc.workloads[0].initiators == ("deb12",)  # every initiator by default
    assert sc.faults[0].name == "cut-path-1" and sc.faults[0].duration_s == 20.0
    assert sc.checks == [CheckSpec("io_errors", max=0)]
    assert sc.target_kind == "sanlab" and sc.skip_reason is None


def test_target_kind_override(tmp_path):
    doc = _doc() | {"not_applicable": {"tgt": "tgtd cannot"}}
    sc = load_scenario(_write(tmp_path, doc), target_kind="tgt")
    assert {t.kind for t in sc.topology.targets} == {TargetKind.TGT}
    assert sc.target_kind == "tgt" and sc.skip_reason == "tgtd cannot"
    assert load_scenario(_write(tmp_path, doc)).skip_reason is None


def test_schema_errors_with_paths(tmp_path):
    doc = _doc()
    doc["workloads"][0]["kind"] = "dd"
    doc["faults"][0]["colour"] = "red"
    del doc["faults"][0]["at_s"]
    doc["checks"][0]["metric"] = "speed"
    doc["not_applicable"] = {"lio": "no"}
    assert _errors(tmp_path, doc) == [
        "checks[0].metric: 'speed' is not one of ['io_errors', 'verify_ok', 'faults_ok', 'workloads_ok', "
        "'max_stall_s', 'first_io_after_s', 'recovered_90_s']",
        "faults[0].at_s: missing required key",
        "faults[0].colour: unknown key",
        "not_applicable: 'lio' is not one of ['sanlab', 'tgt']",
        "workloads[0].kind: 'dd' is not one of ['probe', 'fio', 'qemu-bench', 'iscsi-perf']",
    ]


def test_semantic_errors_with_paths(tmp_path):
    doc = _doc()
    doc["workloads"][0]["initiators"] = ["deb99"]
    doc["faults"].append({"kind": "lun-reset", "at_s": 70, "name": "reset"})
    doc["faults"].append({"kind": "lun-reset", "at_s": 50, "duration_s": 20, "name": "reset"})
    doc["checks"] = [
        {"metric": "io_errors"},
        {"metric": "verify_ok", "max": 1},
        {"metric": "max_stall_s", "max": 9, "equals": 3, "fault": "nope", "initiator": "x"},
    ]
    errors = [e for e in _errors(tmp_path, doc) if ".params" not in e]
    assert errors == [
        "checks[0]: a check needs max, min or equals",
        "checks[1]: verify_ok is true or false: use equals",
        "checks[2]: equals cannot be combined with max or min",
        "checks[2].fault: no fault named 'nope'",
        "checks[2].initiator: no initiator named 'x'",
        "faults[1].at_s: 70 s is not before the end of the workload (60 s)",
        "faults[2].duration_s: the fault would clear at 70 s, after the workload ends (60 s)",
        "faults[2].name: duplicate fault name 'reset' (first: faults[1])",
        "workloads[0].initiators[0]: no initiator named 'deb99'",
    ]


def test_failover_needs_duration_and_workloads_compat_has_none(tmp_path):
    doc = _doc()
    del doc["duration_s"], doc["workloads"]
    assert _errors(tmp_path, doc) == [
        "duration_s: missing required key (a failover drill needs it)",
        "workloads: missing required key (a failover drill needs it)",
    ]
    compat = {"name": "c", "topology": "t.topology.yml", "drill": "compat", "faults": []}
    assert _errors(tmp_path, compat) == ["faults: only a failover drill has faults (this one is compat)"]


def test_check_text():
    assert CheckSpec("max_stall_s", max=30, fault="cut").text == "max_stall_s <= 30 [fault cut]"
    assert CheckSpec("verify_ok", equals=True).text == "verify_ok == true"
    assert CheckSpec("recovered_90_s", max=40, min=1).text == "recovered_90_s <= 40 and >= 1"
