"""The compatibility matrix: six initiator kinds (Linux on Debian 11, 12, 13, libiscsi, qemu driver, iPXE)
against one sanlab target with CHAP; `sanlab run` must pass and write summary.json (each initiator: name,
kind, release, versions, each check, passed), the PNG matrix and the Markdown table."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (make setup)"),
]
ROOT = Path(__file__).resolve().parents[2]
CHECKS = {"login", "inquiry", "vpd", "capacity", "write", "read-verify", "logout"}


def test_compat_matrix(tmp_path):
    sanlab = str(Path(sys.executable).with_name("sanlab"))
    cp = subprocess.run(
        [sanlab, "run", str(ROOT / "scenarios" / "compat-matrix.yml"), "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=7200, check=False,
    )  # fmt: skip
    out_dir = Path(cp.stdout.strip().splitlines()[-1])
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["passed"], cp.stderr[-4000:]
    assert cp.returncode == 0
    inis = {i["name"]: i for i in summary["initiators"]}
    assert {(i["kind"], i["release"]) for i in inis.values()} == {
        ("linux-vm", "debian11"),
        ("linux-vm", "debian12"),
        ("linux-vm", "debian13"),
        ("libiscsi", None),
        ("qemu-driver", None),
        ("ipxe", None),
    }
    kernels = {inis[n]["versions"]["kernel"][:4] for n in ("deb11", "deb12", "deb13")}
    assert kernels == {"5.10", "6.1.", "6.12"}
    for ini in inis.values():
        assert ini["passed"] and ini["versions"], ini
        assert {c["name"] for c in ini["checks"]} == CHECKS
        # every kind logs in and verifies data it read back; only iPXE may skip (it issues no INQUIRY/VPD)
        status = {c["name"]: c["status"] for c in ini["checks"]}
        assert status["login"] == status["read-verify"] == "passed", ini
        if ini["kind"] != "ipxe":
            assert set(status.values()) == {"passed"}, ini
    assert {n["node"] for n in summary["node_checks"]} == {"tgt1", *inis}
    assert all(n["passed"] for n in summary["node_checks"])
    assert (out_dir / "matrix.png").stat().st_size > 1000
    md = (out_dir / "matrix.md").read_text()
    assert all(f"| {name}: " in md for name in inis)
