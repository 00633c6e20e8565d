"""The stall probe agent (lab/workloads/probe_agent.py) run for real on a file: the fixed-rate schedule, missed
slots while an I/O is blocked (test hook), failed I/Os that do not stop the schedule, SIGTERM, and the verify
pass (a corrupted block and a stale block are found). A few seconds in all."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.workloads.probe import AGENT

BLOCK = 4096
REGION = 1 << 20


def _disk(tmp_path: Path) -> Path:
    # /var/tmp is disk-backed here (O_DIRECT works); tmp_path may be tmpfs elsewhere (the agent falls back)
    base = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else tmp_path
    d = base / f"sanlab-probe-test-{os.getpid()}-{tmp_path.name}"
    d.mkdir(parents=True, exist_ok=True)
    img = d / "disk.img"
    with img.open("wb") as f:
        f.truncate(4 << 20)
    return img


@pytest.fixture
def disk(tmp_path: Path) -> Any:
    img = _disk(tmp_path)
    yield img
    shutil.rmtree(img.parent, ignore_errors=True)


def _run(
    args: list[str], *, python: str = sys.executable, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(AGENT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_agent_is_python39_syntax() -> None:
    ast.parse(AGENT.read_text(), feature_version=(3, 9))


def test_agent_runs_under_python39_if_present(disk: Path) -> None:
    py39 = shutil.which("python3.9")
    if py39 is None or "shims" in Path(py39).parts:  # a pyenv shim is not an interpreter (and is slow)
        pytest.skip("no python3.9 on this host (Debian 11's python in the lab VMs)")
    out = disk.parent / "p39.jsonl"
    r = _run(
        ["run", "--device", str(disk), "--blocks", "4", "--out", str(out), "--duration", "0.25"], python=py39
    )
    assert r.returncode == 0, r.stderr
    recs = _lines(out)
    assert recs[0]["type"] == "start" and recs[-1]["type"] == "verify" and recs[-1]["ok"] is True


def test_schedule_stall_and_verify(disk: Path) -> None:
    out, state = disk.parent / "p.jsonl", disk.parent / "state.json"
    args = ["run", "--device", str(disk), "--offset", str(REGION), "--blocks", "8", "--out", str(out)]
    args += ["--state", str(state), "--duration", "1.2", "--test-stall", "3:0.5"]
    r = _run(args)
    assert r.returncode == 0, r.stderr
    recs = _lines(out)
    start, ios = recs[0], [x for x in recs if x["type"] == "io"]
    missed = [x for x in recs if x["type"] == "missed"]
    end, verify = recs[-2], recs[-1]
    assert start["type"] == "start" and start["interval"] == 0.1
    assert end["type"] == "end" and end["reason"] == "duration" and end["outstanding"] is False
    assert verify == {**verify, "type": "verify", "ok": True, "bad": []}
    assert verify["checked"] == min(len(ios), 8)  # each LBA written is re-read once
    assert all(x["ok"] for x in ios) and [x["seq"] for x in ios] == list(range(len(ios)))
    # fixed rate: every slot (issued or missed) sits on start + k * interval, and no slot is used twice
    slots = sorted([x["t_slot"] for x in ios] + [x["t_slot"] for x in missed])
    ks = [round((t - start["t"]) / 0.1, 3) for t in slots]
    assert all(k == int(k) for k in ks) and len(set(ks)) == len(ks)
    assert max(ks) < 1.2 / 0.1  # bounded by --duration
    # the blocked I/O (seq 3, held 0.5 s by the hook) made the slots during it missed, none issued
    blocked = next(x for x in ios if x["seq"] == 3)
    assert blocked["lat_s"] >= 0.5
    during = [t for t in slots if blocked["t_start"] + 0.01 < t < blocked["t_end"] - 0.01]
    assert len(during) >= 3
    assert {t for t in during} <= {x["t_slot"] for x in missed}
    assert end["missed"] == len(missed) and end["ios"] == len(ios)

    # a later verify pass from the saved state agrees ...
    r = _run(["verify", "--state", str(state)])
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True
    # ... finds a corrupted block ...
    lba = ios[1]["lba"]
    with disk.open("r+b") as f:
        f.seek(REGION + lba * BLOCK + 1000)
        f.write(b"\xff\x00corrupt")
    r = _run(["verify", "--state", str(state)])
    res = json.loads(r.stdout)
    assert r.returncode == 1 and res["ok"] is False
    assert res["bad"] == [{"lba": lba, "err": "payload crc mismatch"}]
    # ... and a block that holds an older write than the last one that completed (a lost write)
    st = json.loads(state.read_text())
    other = next(k for k, v in st["allowed"].items() if int(k) != lba and v != [-1])
    st["allowed"][other] = [st["allowed"][other][0] + 1000]
    state.write_text(json.dumps(st))
    res = json.loads(_run(["verify", "--state", str(state)]).stdout)
    assert {b["lba"] for b in res["bad"]} == {lba, int(other)}
    assert any("holds seq" in b["err"] for b in res["bad"])


def test_failed_ios_do_not_stop_the_schedule() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    out = Path(f"/var/tmp/sanlab-probe-full-{os.getpid()}.jsonl")
    try:
        r = _run(["run", "--device", "/dev/full", "--blocks", "4", "--out", str(out), "--duration", "0.35"])
        assert r.returncode == 0, r.stderr
        recs = _lines(out)
    finally:
        out.unlink(missing_ok=True)
    ios = [x for x in recs if x["type"] == "io"]
    assert len(ios) >= 2  # the schedule went on after the first failure
    assert all(not x["ok"] and x["err"].startswith("write: ") for x in ios)
    assert recs[-2]["errors"] == len(ios)
    assert recs[-1]["ok"] is True  # nothing of ours was ever written: nothing to lose


def test_sigterm_ends_cleanly_with_a_verify_pass(disk: Path) -> None:
    out = disk.parent / "t.jsonl"
    args = [sys.executable, str(AGENT), "run", "--device", str(disk), "--blocks", "4", "--out", str(out)]
    p = subprocess.Popen([*args, "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):  # bounded: up to 10 s for the first I/O line
            if out.exists() and '"io"' in out.read_text():
                break
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
    assert rc == 0
    recs = _lines(out)
    assert recs[-2]["type"] == "end" and recs[-2]["reason"] == "signal"
    assert recs[-1]["type"] == "verify" and recs[-1]["ok"] is True and recs[-1]["checked"] >= 1


def test_bad_arguments_are_refused(disk: Path) -> None:
    r = _run(["run", "--device", str(disk), "--offset", "100", "--out", str(disk.parent / "x")])
    assert r.returncode == 2 and "aligned" in r.stderr
