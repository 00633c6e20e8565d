"""libiscsi's conformance suite (`iscsi-test-cu`): run it and classify its results.

`iscsi-test-cu -x` writes CUnitAutomated-Results.xml with one CUNIT_RUN_TEST_RECORD per run of a test; the
ALL/SCSI/LINUX/iSCSI families repeat suites, and a failing test has one record per failed assertion, so
results are folded per `Suite.Test` (a test passes only if every record of it passed). CUnit counts skipped
tests as passed, so the "[SKIPPED] X is not implemented" lines of the suite's output are collected too.

Groups: "pr" (Prin*/Prout*: persistent reservations), "multipath" (MultipathIO*), "core" (everything else,
Reserve6 included).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS_XML = "CUnitAutomated-Results.xml"
GROUPS = ("core", "pr", "multipath")

_SKIPPED_RE = re.compile(r"\[SKIPPED\] *(.*?)\.? *$", re.MULTILINE)
_NOT_IMPLEMENTED_RE = re.compile(r"\[SKIPPED\] (.+?) is not implemented")
_TMF_RE = re.compile(r"Task Management function ?for (\w+) is not working")


#: Why the suite skips what it skips against our target (prefix of the "[SKIPPED] ..." reason -> explanation).
#: A skip reason missing here makes `ConformanceSummary.unexplained_skips()` name it, so a new kind of skip
#: cannot go unnoticed.
SKIP_EXPLANATIONS: dict[str, str] = {
    "PERSISTENT RESERVE IN is not implemented": "persistent reservations: the next issue (SPC-4 PR and ALUA)",
    "PROUT Not Supported": "persistent reservations: the next issue (SPC-4 PR and ALUA)",
    "ORWRITE is not implemented": "ORWRITE (SBC-3, XOR for RAID controllers): not in this target's command set",
    "WRITEATOMIC16 is not implemented": "WRITE ATOMIC(16) (SBC-4): not in this target's command set",
    "READDEFECTDATA10 is not implemented": "READ DEFECT DATA: a virtual disk has no grown defect list",
    "READDEFECTDATA12 is not implemented": "READ DEFECT DATA: a virtual disk has no grown defect list",
    "--allow-sanitize flag is not set": "SANITIZE tests are destructive and opt-in; SANITIZE is not implemented",
    "Logical unit is not removable": "a disk LU is not removable media (RMB=0); eject tests do not apply",
    "Media is not removable": "a disk LU is not removable media (RMB=0); eject tests do not apply",
    "LBPPB < 2": "the LUN has one logical block per physical block; tests need a 4096-physical LUN",
    "Logical unit is not write-protected": "the LUN is writable; the write-protect tests need a read-only LUN",
    "Logical unit is write protected": "the LUN is read-only; write tests need a writable LUN",
}


def explain_skip(reason: str) -> str | None:
    for prefix, why in SKIP_EXPLANATIONS.items():
        if reason.startswith(prefix):
            return why
    return None


def group_of(suite: str) -> str:
    if suite.startswith(("Prin", "Prout")):
        return "pr"
    if suite.startswith("Multipath"):
        return "multipath"
    return "core"


@dataclass
class GroupCounts:
    ran: int = 0
    passed: int = 0
    failed: int = 0


@dataclass
class ConformanceSummary:
    ran: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0  # "[SKIPPED]" lines in the suite's output (CUnit counts these tests as passed)
    not_implemented: list[str] = field(default_factory=list)
    #: each distinct [SKIPPED] reason and how often it was printed (the output does not name the test)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    by_group: dict[str, GroupCounts] = field(default_factory=dict)
    failed_tests: dict[str, list[str]] = field(default_factory=dict)  # group -> ["Suite.Test", ...]
    error: str = ""  # set when the results are missing or unreadable
    duration_s: float = 0.0
    command: list[str] = field(default_factory=list)

    def failed_in(self, group: str) -> list[str]:
        return list(self.failed_tests.get(group, []))

    def unexplained_skips(self) -> list[str]:
        """Skip reasons that SKIP_EXPLANATIONS does not account for."""
        return [reason for reason in self.skip_reasons if explain_skip(reason) is None]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def headline(self) -> str:
        return f"ran {self.ran} / passed {self.passed} / failed {self.failed} / skipped {self.skipped}"

    def report(self) -> str:
        """Human-readable summary: the headline, per-group counts and failed tests."""
        lines = [self.headline()]
        if self.error:
            lines.append(f"error: {self.error}")
        for group in GROUPS:
            counts = self.by_group.get(group)
            if counts is None:
                continue
            lines.append(f"  {group}: ran {counts.ran}, passed {counts.passed}, failed {counts.failed}")
            lines.extend(f"    FAILED {name}" for name in self.failed_tests.get(group, []))
        if self.not_implemented:
            lines.append(f"  not implemented (per the suite): {', '.join(self.not_implemented)}")
        if self.skip_reasons:
            lines.append("  skipped (each counts as passed):")
            lines.extend(
                f"    {n:4d} x {reason}  [{explain_skip(reason) or 'UNEXPLAINED'}]"
                for reason, n in self.skip_reasons.items()
            )
        return "\n".join(lines)


def parse_output(text: str) -> tuple[int, list[str]]:
    """(number of [SKIPPED] lines, sorted names of commands/TMFs the suite found not implemented)."""
    skipped = len(_SKIPPED_RE.findall(text))
    names = set(_NOT_IMPLEMENTED_RE.findall(text)) | {f"TMF-{m}" for m in _TMF_RE.findall(text)}
    return skipped, sorted(names)


def skip_reasons(text: str) -> dict[str, int]:
    """Each distinct [SKIPPED] reason with its count, most frequent first."""
    counts: dict[str, int] = {}
    for reason in _SKIPPED_RE.findall(text):
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def fold_results(xml_text: str) -> dict[tuple[str, str], bool]:
    """(suite, test) -> passed, folding repeated records; raises ET.ParseError on a truncated file."""
    root = ET.fromstring(xml_text)
    results: dict[tuple[str, str], bool] = {}
    for suite in root.iter("CUNIT_RUN_SUITE"):
        name_el = suite.find(".//SUITE_NAME")
        suite_name = (name_el.text or "?").strip() if name_el is not None else "?"
        for rec in suite.iter("CUNIT_RUN_TEST_RECORD"):
            test_el = rec.find(".//TEST_NAME")
            test_name = (test_el.text or "?").strip() if test_el is not None else "?"
            ok = rec.find("CUNIT_RUN_TEST_SUCCESS") is not None
            key = (suite_name, test_name)
            results[key] = results.get(key, True) and ok
    return results


def summarize(xml_text: str | None, output_text: str) -> ConformanceSummary:
    """Classify one run from its results XML (None if missing) and its console output."""
    summary = ConformanceSummary()
    summary.skipped, summary.not_implemented = parse_output(output_text)
    summary.skip_reasons = skip_reasons(output_text)
    if xml_text is None:
        summary.error = "no results XML (target unreachable or suite crashed)"
        return summary
    try:
        results = fold_results(xml_text)
    except ET.ParseError as exc:  # the suite can die mid-run and leave a truncated file
        summary.error = f"truncated results XML: {exc}"
        return summary
    for (suite_name, test_name), ok in sorted(results.items()):
        group = group_of(suite_name)
        counts = summary.by_group.setdefault(group, GroupCounts())
        summary.ran += 1
        counts.ran += 1
        if ok:
            summary.passed += 1
            counts.passed += 1
        else:
            summary.failed += 1
            counts.failed += 1
            summary.failed_tests.setdefault(group, []).append(f"{suite_name}.{test_name}")
    return summary


def summarize_dir(out_dir: Path) -> ConformanceSummary:
    xml_path = out_dir / RESULTS_XML
    log_path = out_dir / "stdout.log"
    xml_text = xml_path.read_text(errors="replace") if xml_path.exists() else None
    output = log_path.read_text(errors="replace") if log_path.exists() else ""
    return summarize(xml_text, output)


def run_suite(
    urls: list[str],
    out_dir: Path,
    *,
    test_filter: str | None = None,
    timeout_s: float = 2700,
    binary: str = "iscsi-test-cu",
) -> ConformanceSummary:
    """Run `iscsi-test-cu -x -d [-t FILTER] URL...` in `out_dir` (bounded by `timeout_s`) and summarize.

    Two URLs (two portals of one target) enable the MultipathIO tests. stdout.log and the results XML stay
    in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "-x", "-d"]
    if test_filter:
        cmd += ["-t", test_filter]
    cmd += urls
    (out_dir / RESULTS_XML).unlink(missing_ok=True)
    started = time.monotonic()
    timed_out = False
    with open(out_dir / "stdout.log", "w") as log:
        try:
            subprocess.run(
                cmd, cwd=out_dir, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            timed_out = True
            log.write(f"\n[harness] TIMEOUT after {timeout_s:.0f} s\n")
    summary = summarize_dir(out_dir)
    summary.duration_s = round(time.monotonic() - started, 1)
    summary.command = cmd
    if timed_out:
        summary.error = (summary.error + "; " if summary.error else "") + f"timed out after {timeout_s:.0f} s"
    return summary


def write_summary(summary: ConformanceSummary, *paths: Path) -> None:
    """Write the summary as JSON to each path (parents created)."""
    text = json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
