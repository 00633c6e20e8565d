"""The quick-start drill end to end (CI): images, one sanlab target container, a libiscsi container initiator
and a Debian 12 VM initiator; `sanlab run` must pass and print its results directory last."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.vm]
ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_drill(tmp_path):
    sanlab = str(Path(sys.executable).with_name("sanlab"))
    cp = subprocess.run(
        [sanlab, "run", str(ROOT / "scenarios" / "quickstart.yml"), "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    out_dir = Path(cp.stdout.strip().splitlines()[-1])
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["passed"], cp.stderr[-4000:]
    kinds = {i["kind"] for i in summary["initiators"]}
    assert kinds == {"libiscsi", "linux-vm"}
    assert (out_dir / "matrix.png").exists() and (out_dir / "report.md").exists()
    assert cp.returncode == 0
