"""libiscsi's conformance suite (iscsi-test-cu) against the target, as LIO is set up for it.

Target: a 1 GiB sparse fileio LUN from a LIO saveconfig.json, two portals on 127.0.0.1 (different ports, so
the suite's MultipathIO tests get two paths), demo mode, emulate_tpu/tpws/caw/3pc=1. The summary is printed,
written next to the test's tmp dir and to results/conformance/<run-id>/summary.json; the test asserts no
failure in the core group (persistent reservations and multipath are reported, not asserted, here).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from target_process import RunningTarget, TargetSpec

from lab.conformance import run_suite, write_summary

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE_TIMEOUT_S = float(os.environ.get("SANLAB_CONFORMANCE_TIMEOUT", "2700"))
#: optional iscsi-test-cu -t filter (e.g. "SCSI.Read10.*") for a quick run while developing
TEST_FILTER = os.environ.get("SANLAB_CONFORMANCE_FILTER") or None
LIO_ATTRIBUTES = {"emulate_tpu": 1, "emulate_tpws": 1, "emulate_caw": 1, "emulate_3pc": 1}


def test_libiscsi_conformance(
    start_iscsi_target: Callable[..., RunningTarget],
    free_tcp_port: Callable[..., int],
    report_figure: Callable[[str, dict[str, object]], None],
    tmp_path: Path,
) -> None:
    if shutil.which("iscsi-test-cu") is None:
        pytest.fail("iscsi-test-cu not installed (Debian package libiscsi-bin)")
    spec = TargetSpec(
        backing_file=tmp_path / "lun0.img",
        portals=[("127.0.0.1", free_tcp_port()), ("127.0.0.1", free_tcp_port())],
        lun_size=1024**3,
        demo_mode=True,
        lio_attributes=dict(LIO_ATTRIBUTES),
    )
    target = start_iscsi_target(spec)
    summary = run_suite(
        [target.url(0), target.url(1)],
        tmp_path / "testcu",
        test_filter=TEST_FILTER,
        timeout_s=SUITE_TIMEOUT_S,
    )

    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{target.kind}"
    results_path = REPO_ROOT / "results" / "conformance" / run_id / "summary.json"
    write_summary(summary, tmp_path / "summary.json", results_path)
    print(f"\nlibiscsi conformance ({target.kind}): {summary.report()}\nsummary: {results_path}")
    figures: dict[str, object] = {
        "ran": summary.ran,
        "passed": summary.passed,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "duration_s": summary.duration_s,
    }
    for group, counts in summary.by_group.items():
        figures[f"{group}_failed"] = f"{counts.failed}/{counts.ran}"
    report_figure(f"libiscsi conformance, {target.kind}", figures)

    assert not summary.error, f"{summary.error}\n{summary.report()}"
    assert summary.ran > 0, summary.report()
    assert summary.failed_in("core") == [], f"core conformance failures:\n{summary.report()}"
    assert summary.unexplained_skips() == [], f"skips without an explanation:\n{summary.report()}"
