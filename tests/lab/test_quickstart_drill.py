"""The quick-start drill end to end (CI): images, one sanlab target container, a libiscsi container initiator
and a Debian 12 VM initiator; `sanlab run` must pass, print its results directory last, record testinfra's
node checks in summary.json and leave nothing behind (containers, networks: by the lab's label)."""

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
LABEL = "org.sanlab.lab=quickstart"


def _left_behind() -> list[str]:
    out = []
    for cmd in (["docker", "ps", "-aq"], ["docker", "network", "ls", "-q"]):
        cp = subprocess.run([*cmd, "--filter", f"label={LABEL}"], capture_output=True, text=True, timeout=60)
        out += cp.stdout.split()
    return out


def test_quickstart_drill(tmp_path):
    sanlab = str(Path(sys.executable).with_name("sanlab"))
    cp = subprocess.run(
        [sanlab, "run", str(ROOT / "scenarios" / "quickstart.yml"), "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    out_dir = Path(cp.stdout.strip().splitlines()[-1])
    assert out_dir.parent == tmp_path / "quickstart"
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["passed"], cp.stderr[-4000:]
    assert cp.returncode == 0
    inis = {i["name"]: i for i in summary["initiators"]}
    assert {i["kind"] for i in inis.values()} == {"libiscsi", "linux-vm"}
    assert inis["deb12"]["release"] == "debian12" and inis["deb12"]["versions"]["kernel"].startswith("6.1.")
    for ini in inis.values():
        assert {c["name"] for c in ini["checks"]} == {
            "login", "inquiry", "vpd", "capacity", "write", "read-verify", "logout",
        }  # fmt: skip
        assert all(c["status"] == "passed" for c in ini["checks"]), ini
    # testinfra ran on every node (docker:// for containers, ssh:// for the VM) and its results are recorded
    nodes = {n["node"]: n for n in summary["node_checks"]}
    assert set(nodes) == {"tgt1", "lib1", "deb12"}
    assert nodes["deb12"]["host"].startswith("ssh://") and nodes["tgt1"]["host"].startswith("docker://")
    for n in nodes.values():
        assert n["passed"] and any(t["status"] == "passed" for t in n["tests"]), n
    assert (out_dir / "matrix.png").stat().st_size > 1000
    assert "| deb12: linux-vm (debian12) |" in (out_dir / "matrix.md").read_text()
    assert "passed" in (out_dir / "report.md").read_text().splitlines()[0]
    assert [p["name"] for p in summary["phases"]][-1] == "tear-down"
    assert _left_behind() == []
