"""SIGHUP: a target started from a file re-reads it and applies only the difference; a broken file is
reported and changes nothing (the target keeps serving)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loopback_target import IQN, free_port, simple_config

from target.cli.manage import Client
from target.config.native import dump_config

ROOT = Path(__file__).resolve().parents[2]


def wait_for(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():  # type: ignore[operator]
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


def test_sighup_reloads_only_the_difference(tmp_path: Path) -> None:
    port = free_port()
    cfg = simple_config(port, luns=1)
    doc = dump_config(cfg)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(doc))
    sock = tmp_path / "t.sock"
    log = tmp_path / "log.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "target.cli.main",
                "target",
                "serve",
                "-c",
                str(path),
                "--socket",
                str(sock),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        client = Client(str(sock))
        assert wait_for(lambda: client.get("/v1/tree", path="/backstores"))
        doc["storage_objects"].append({"plugin": "ramdisk", "name": "hup", "size": 1048576})
        doc["targets"][0]["tpgs"][0]["luns"].append({"index": 1, "storage_object": "ramdisk/hup"})
        path.write_text(json.dumps(doc))
        proc.send_signal(signal.SIGHUP)
        lun1 = f"/iscsi/{IQN}/tpg1/luns/lun1"
        assert wait_for(lambda: client.get("/v1/tree", path=lun1)["path"] == lun1), log.read_text()
        text = log.read_text()
        assert "+ /backstores/ramdisk/hup" in text and "/tpg1/luns/lun0" not in text.split("reload of")[-1]
        # a broken file: logged, nothing changes, the target keeps running
        path.write_text("{ not json")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed" in log.read_text())
        assert proc.poll() is None
        assert client.get("/v1/tree", path=lun1)["path"] == lun1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
