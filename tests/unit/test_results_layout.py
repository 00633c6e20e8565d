import datetime as dt
import json

import pytest

from lab.results import RECORDS, RunDir, new_run_id, summary_errors
from lab.scenario.runner import report_markdown


def _summary(run_id: str) -> dict:
    return {
        "scenario": "quickstart",
        "run_id": run_id,
        "started": "2026-11-23T12:00:00+00:00",
        "duration_s": 12.5,
        "passed": True,
        "phases": [{"name": "bring-up", "passed": True, "seconds": 3.0, "detail": ""}],
        "initiators": [
            {
                "name": "lib1",
                "kind": "libiscsi",
                "release": None,
                "versions": {"libiscsi": "1.19"},
                "passed": True,
                "checks": [{"name": "login", "status": "passed", "detail": "ok", "seconds": 0.1}],
            }
        ],
    }


def test_run_id_format():
    rid = new_run_id(dt.datetime(2026, 11, 23, 12, 0, 1, tzinfo=dt.UTC))
    assert rid.startswith("20261123T120001Z-") and len(rid) == 21


def test_layout_records_and_summary(tmp_path):
    rd = RunDir.create(tmp_path, "quickstart")
    assert rd.path == tmp_path / "quickstart" / rd.run_id
    rd.record("check", initiator="lib1", name="login", status="passed")
    rd.record("phase", name="run", passed=True)
    lines = (rd.path / RECORDS).read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["check", "phase"]
    s = _summary(rd.run_id)
    p = rd.write_summary(s)
    assert json.loads(p.read_text()) == s
    assert "| bring-up | done | 3.0 |" in report_markdown(s)


def test_summary_schema_errors(tmp_path):
    s = _summary("20261123T120001Z-abcd")
    s["initiators"][0]["checks"][0]["status"] = "maybe"
    del s["passed"]
    errs = summary_errors(s)
    assert "(top level): 'passed' is a required property" in errs
    assert "initiators[0].checks[0].status: 'maybe' is not one of ['passed', 'failed', 'skipped']" in errs
    rd = RunDir.create(tmp_path, "x")
    with pytest.raises(ValueError):
        rd.write_summary(s)
    with pytest.raises(ValueError):
        RunDir.create(tmp_path, "../escape")


_JUNIT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="test_lab_node" name="test_target_listens_on_every_portal[docker://t]" time="0.1"/>
<testcase classname="test_lab_node" name="test_libiscsi_tools[docker://t]" time="0.0">
<skipped type="pytest.skip" message="libiscsi initiators only">skip</skipped></testcase>
<testcase classname="test_lab_node" name="test_target_process_and_luns[docker://t]" time="0.2">
<failure message="AssertionError: lun missing">trace</failure></testcase>
</testsuite></testsuites>"""


def test_testinfra_junit_lands_in_summary(tmp_path):
    from lab.scenario.runner import junit_cases

    xml = tmp_path / "t.xml"
    xml.write_bytes(_JUNIT)
    cases = junit_cases(xml)
    assert [c["status"] for c in cases] == ["passed", "skipped", "failed"]
    assert cases[2]["detail"] == "AssertionError: lun missing"
    assert junit_cases(tmp_path / "missing.xml")[0]["status"] == "failed"
    s = _summary("20261123T120001Z-abcd")
    s["node_checks"] = [
        {
            "node": "tgt1",
            "host": "docker://t",
            "role": "target",
            "passed": False,
            "seconds": 1.0,
            "tests": cases,
        }
    ]
    assert summary_errors(s) == []
    assert "| tgt1 | `docker://t` | FAILED | 1 passed, 1 failed, 1 skipped |" in report_markdown(s)
    s["node_checks"][0]["tests"][0]["status"] = "odd"
    assert summary_errors(s) == [
        "node_checks[0].tests[0].status: 'odd' is not one of ['passed', 'failed', 'skipped']"
    ]
