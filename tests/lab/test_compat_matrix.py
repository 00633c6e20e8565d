"""The compatibility matrix: six initiator kinds (Linux on Debian 11, 12, 13, libiscsi, qemu driver, iPXE)
against one sanlab target with CHAP; `sanlab run` must pass."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.vm]
ROOT = Path(__file__).resolve().parents[2]


def test_compat_matrix(tmp_path):
    sanlab = str(Path(sys.executable).with_name("sanlab"))
    cp = subprocess.run(
        [sanlab, "run", str(ROOT / "scenarios" / "compat-matrix.yml"), "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=7200, check=False,
    )  # fmt: skip
    out_dir = Path(cp.stdout.strip().splitlines()[-1])
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["passed"], cp.stderr[-4000:]
    kinds = {i["kind"] for i in summary["initiators"]}
    assert kinds == {"libiscsi", "linux-vm", "qemu-driver", "ipxe"}
    assert sorted(i["release"] for i in summary["initiators"] if i["release"]) == [
        "debian11",
        "debian12",
        "debian13",
    ]
    assert (out_dir / "matrix.png").exists() and (out_dir / "report.md").exists()
    assert cp.returncode == 0
