"""lab.conformance: folding iscsi-test-cu's CUnit XML and its [SKIPPED] lines into a summary."""

from __future__ import annotations

import json
from pathlib import Path

from lab.conformance import group_of, parse_output, skip_reasons, summarize, summarize_dir, write_summary


def _record(test: str, ok: bool) -> str:
    if ok:
        return (
            f"<CUNIT_RUN_TEST_RECORD><CUNIT_RUN_TEST_SUCCESS><TEST_NAME> {test} </TEST_NAME>"
            "</CUNIT_RUN_TEST_SUCCESS></CUNIT_RUN_TEST_RECORD>"
        )
    return (
        f"<CUNIT_RUN_TEST_RECORD><CUNIT_RUN_TEST_FAILURE><TEST_NAME> {test} </TEST_NAME>"
        "<FILE_NAME> t.c </FILE_NAME><LINE_NUMBER> 84 </LINE_NUMBER>"
        "<CONDITION> CU_ASSERT_EQUAL(0,ret) </CONDITION></CUNIT_RUN_TEST_FAILURE></CUNIT_RUN_TEST_RECORD>"
    )


def _suite(name: str, *records: str) -> str:
    return (
        f"<CUNIT_RUN_SUITE><CUNIT_RUN_SUITE_SUCCESS><SUITE_NAME> {name} </SUITE_NAME>{''.join(records)}"
        "</CUNIT_RUN_SUITE_SUCCESS></CUNIT_RUN_SUITE>"
    )


CANNED_XML = (
    '<?xml version="1.0" ?>\n<?xml-stylesheet type="text/xsl" href="CUnit-Run.xsl" ?>\n'
    '<!DOCTYPE CUNIT_TEST_RUN_REPORT SYSTEM "CUnit-Run.dtd">\n'
    "<CUNIT_TEST_RUN_REPORT><CUNIT_HEADER/><CUNIT_RESULT_LISTING>"
    # ALL family
    + _suite("Read10", _record("Simple", True), _record("BeyondEol", True))
    + _suite("Verify10", _record("Mismatch", False), _record("Mismatch", False), _record("Simple", True))
    + _suite("ProutReserve", _record("OwnershipEA", False), _record("OwnershipWE", True))
    + _suite("MultipathIO", _record("Reset", True))
    + _suite("Reserve6", _record("Logout", True))
    # the SCSI family repeats Read10 and Reserve6: Read10.Simple passes again, Reserve6.Logout fails this time
    + _suite("Read10", _record("Simple", True))
    + _suite("Reserve6", _record("Logout", False))
    + "</CUNIT_RESULT_LISTING><CUNIT_RUN_SUMMARY/><CUNIT_FOOTER> CUnit </CUNIT_FOOTER></CUNIT_TEST_RUN_REPORT>"
)

CANNED_OUTPUT = """\
Suite: Read10
  Test: Simple ...passed
[SKIPPED] REPORT SUPPORTED OPCODES is not implemented.
[SKIPPED] ORWRITE is not implemented.
[SKIPPED] ORWRITE is not implemented.
[SKIPPED] LBPPB < 2. Skipping test.
Task Management function for WARM_RESET is not working on this target
"""


def test_groups() -> None:
    assert group_of("PrinReadKeys") == "pr"
    assert group_of("ProutRegister") == "pr"
    assert group_of("MultipathIO") == "multipath"
    assert group_of("Reserve6") == "core"
    assert group_of("iSCSIResiduals") == "core"


def test_parse_output_collects_skips_and_missing_commands() -> None:
    skipped, missing = parse_output(CANNED_OUTPUT)
    assert skipped == 4
    # names may contain spaces ("PERSISTENT RESERVE IN is not implemented."); repeats are listed once
    assert missing == ["ORWRITE", "REPORT SUPPORTED OPCODES", "TMF-WARM_RESET"]


def test_skip_reasons_are_counted() -> None:
    assert skip_reasons(CANNED_OUTPUT) == {
        "ORWRITE is not implemented": 2,
        "LBPPB < 2. Skipping test": 1,
        "REPORT SUPPORTED OPCODES is not implemented": 1,
    }


def test_summarize_folds_repeats_per_suite_and_test() -> None:
    s = summarize(CANNED_XML, CANNED_OUTPUT)
    assert s.error == ""
    # distinct tests: Read10.{Simple,BeyondEol}, Verify10.{Mismatch,Simple}, ProutReserve.{EA,WE},
    # MultipathIO.Reset, Reserve6.Logout
    assert (s.ran, s.passed, s.failed, s.skipped) == (8, 5, 3, 4)
    assert s.failed_in("core") == ["Reserve6.Logout", "Verify10.Mismatch"]
    assert s.failed_in("pr") == ["ProutReserve.OwnershipEA"]
    assert s.failed_in("multipath") == []
    assert (s.by_group["core"].ran, s.by_group["core"].failed) == (5, 2)
    assert (s.by_group["pr"].ran, s.by_group["pr"].passed) == (2, 1)
    assert s.by_group["multipath"].passed == 1
    assert s.headline() == "ran 8 / passed 5 / failed 3 / skipped 4"
    report = s.report()
    assert "FAILED Verify10.Mismatch" in report
    assert "pr: ran 2, passed 1, failed 1" in report
    assert "   2 x ORWRITE is not implemented" in report


def test_missing_and_truncated_xml_are_errors_not_crashes() -> None:
    assert "no results XML" in summarize(None, "").error
    truncated = summarize(CANNED_XML[: len(CANNED_XML) // 2], "")
    assert truncated.error.startswith("truncated results XML")
    assert truncated.ran == 0


def test_summary_round_trips_through_json(tmp_path: Path) -> None:
    (tmp_path / "CUnitAutomated-Results.xml").write_text(CANNED_XML)
    (tmp_path / "stdout.log").write_text(CANNED_OUTPUT)
    s = summarize_dir(tmp_path)
    out1, out2 = tmp_path / "a" / "summary.json", tmp_path / "b" / "summary.json"
    write_summary(s, out1, out2)
    data = json.loads(out1.read_text())
    assert data == json.loads(out2.read_text())
    assert data["failed_tests"] == {
        "core": ["Reserve6.Logout", "Verify10.Mismatch"],
        "pr": ["ProutReserve.OwnershipEA"],
    }
    assert data["by_group"]["core"] == {"ran": 5, "passed": 3, "failed": 2}


def test_every_skip_needs_an_explanation() -> None:
    output = (
        "    [SKIPPED] PERSISTENT RESERVE IN is not implemented.\n"
        "    [SKIPPED] LBPPB < 2. Skipping test\n"
        "    [SKIPPED] SOMETHING NEW is not implemented.\n"
    )
    summary = summarize(None, output)
    assert summary.unexplained_skips() == ["SOMETHING NEW is not implemented"]
    assert "UNEXPLAINED" in summary.report()
    assert "persistent reservations" in summary.report()
