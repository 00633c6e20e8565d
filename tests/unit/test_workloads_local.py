"""The probe and fio workloads end to end through an executor that runs on this host, on a file: ship, start
detached, stop, collect, convert to the drill clock, verify. (fio: Debian package `fio` on the host.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lab.drivers.exec import Result
from lab.workloads import WorkloadSpec, make_workload
from lab.workloads.base import REMOTE_BASE


class LocalExec:
    """The Executor protocol on this host (what DockerExec/SshExec do on a node)."""

    name = "local"

    def run(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        t = time.monotonic()
        kw: dict[str, Any] = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        try:
            p = subprocess.run(
                ["sh", "-c", cmd],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **kw,
            )
        except subprocess.TimeoutExpired:
            return Result(124, "timed out", time.monotonic() - t)
        return Result(p.returncode, p.stdout.decode("utf-8", "replace"), time.monotonic() - t)


@pytest.fixture
def disk(tmp_path: Path) -> Any:
    d = Path("/var/tmp") / f"sanlab-wl-test-{tmp_path.name}"
    d.mkdir(parents=True, exist_ok=True)
    img = d / "lun.img"
    with img.open("wb") as f:
        f.truncate(160 << 20)  # sparse
    yield img
    shutil.rmtree(d, ignore_errors=True)


def _node() -> str:
    # the workload's directory is named after the node: unique per test process (suites may run side by side)
    return f"local-{os.getpid()}"


def _cleanup(w: Any) -> None:
    shutil.rmtree(w.workdir, ignore_errors=True)
    assert w.workdir.startswith(REMOTE_BASE)


def test_probe_workload_end_to_end(disk: Path) -> None:
    t0 = time.time()
    w = make_workload(WorkloadSpec("probe", {"slot": 1}, name="t1"), _node(), LocalExec(), str(disk), t0)
    try:
        assert "every 0.1 s" in w.start()
        time.sleep(0.6)
        assert w.stop() == "probe agent exited"
        res = w.collect()
    finally:
        _cleanup(w)
    assert res.ok and res.verify_ok is True and res.errors == 0, res.detail
    assert len(res.probes) >= 2
    ts = [p["t"] for p in res.probes]
    assert ts == sorted(ts)
    # on the drill clock: inside [start, stop] of the workload (small slack for the clock estimate)
    assert res.started_at_s is not None and res.stopped_at_s is not None
    assert res.started_at_s - 0.5 < ts[0] and ts[-1] < res.stopped_at_s + 0.5
    assert all(p["initiator"] == _node() and p["op"] == "write+read" and p["ok"] for p in res.probes)
    assert res.extra["probe_ios"] == len(res.probes)
    rec = res.workload_record()
    assert rec["clock"]["before"] is not None and rec["clock"]["after"] is not None
    # the probe wrote inside its own MiB (64 + slot 1) and nowhere else
    data = disk.read_bytes()
    assert data[65 << 20 : (65 << 20) + 8] == b"SLPROBE1"
    assert data[: 65 << 20].count(0) == 65 << 20


@pytest.mark.slow  # ~4 s: four fio runs (prefill, drill, two verify passes)
@pytest.mark.skipif(
    shutil.which("fio") is None, reason="fio is not installed on this host (apt-get install fio)"
)
def test_fio_workload_end_to_end(disk: Path) -> None:
    t0 = time.time()
    params = {"size_mib": 4, "rate_iops": 400, "offset_mib": 100, "log_avg_msec": 250}
    w = make_workload(WorkloadSpec("fio", params), _node(), LocalExec(), str(disk), t0)
    try:
        detail = w.start()
        assert "prefilled 4 MiB" in detail
        time.sleep(1.0)
        assert w.stop() == "fio exited"
        res = w.collect()
    finally:
        _cleanup(w)
    assert res.ok and res.verify_ok is True and res.errors == 0, res.detail
    assert res.extra["fio"]["write_ios"] > 0
    assert res.throughput and all(w["source"] == "fio" and w["window_s"] == 0.25 for w in res.throughput)
    assert sum(w["ios"] for w in res.throughput) > 0
    # a corrupted block in the region fails the read-back verify pass
    with disk.open("r+b") as f:
        f.seek((100 << 20) + 3 * 4096 + 700)
        f.write(b"\x00corrupt\xff")
    w2 = make_workload(WorkloadSpec("fio", params), _node(), LocalExec(), str(disk), t0)
    try:
        res2 = w2.collect()  # collect without a run: no report, and the verify pass finds the bad block
    finally:
        _cleanup(w2)
    assert res2.verify_ok is False and not res2.ok
    assert "verify pass FAILED" in res2.detail
