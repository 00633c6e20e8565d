"""Done-when check of the management issue: a running target started from a one-LUN LIO saveconfig.json takes
a two-LUN version through `sanlab target apply`, and libiscsi's `iscsi-ls -s` lists both LUNs without a restart;
`sanlab target show --json` prints the tree as JSON."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.target_process import (
    TargetSpec,
    free_port,
    lio_saveconfig,
    make_backing_file,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[2]


def sanlab(*args: str, socket_path: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "target.cli.main", "target", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin,
        env=dict(os.environ, SANLAB_SOCKET=str(socket_path)),
        timeout=60,
    )


def two_lun_config(one: dict[str, object], second_file: Path) -> dict[str, object]:
    doc = copy.deepcopy(one)
    sos = doc["storage_objects"]
    assert isinstance(sos, list)
    so2 = dict(sos[0], name="disk1", dev=str(second_file), wwn="7d2c8f9e-0000-4000-8000-000000000001")
    sos.append(so2)
    tpg = doc["targets"][0]["tpgs"][0]  # type: ignore[index]
    tpg["luns"].append(
        {"index": 1, "storage_object": "/backstores/fileio/disk1", "alua_tg_pt_gp_name": "default_tg_pt_gp"}
    )
    return doc


@pytest.fixture
def lio_target(tmp_path: Path) -> Iterator[tuple[int, Path, Path, dict[str, object]]]:
    port = free_port()
    disk0 = make_backing_file(tmp_path / "disk0.img", 16 * 1024 * 1024)
    spec = TargetSpec(backing_file=disk0, portals=[("127.0.0.1", port)], lun_size=16 * 1024 * 1024)
    doc = lio_saveconfig(spec)
    cfg = tmp_path / "saveconfig.json"
    cfg.write_text(json.dumps(doc, indent=2))
    sock = tmp_path / "target.sock"
    log = open(tmp_path / "target.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "target.cli.main",
            "target",
            "serve",
            "--config",
            str(cfg),
            "--socket",
            str(sock),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 20, proc)
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield port, sock, tmp_path, doc
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def iscsi_ls(port: int) -> str:
    out = subprocess.run(
        ["iscsi-ls", "-s", f"iscsi://127.0.0.1:{port}"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(shutil.which("iscsi-ls") is None, reason="libiscsi-bin (iscsi-ls) is not installed")
def test_apply_two_lun_lio_config_is_seen_by_iscsi_ls(
    lio_target: tuple[int, Path, Path, dict[str, object]],
) -> None:
    port, sock, tmp, doc = lio_target
    before = iscsi_ls(port)
    assert "Lun:0" in before and "Lun:1" not in before
    disk1 = make_backing_file(tmp / "disk1.img", 8 * 1024 * 1024)
    two = tmp / "two.json"
    two.write_text(json.dumps(two_lun_config(doc, disk1)))
    started = time.perf_counter()
    res = sanlab("apply", str(two), socket_path=sock)
    elapsed = time.perf_counter() - started
    assert res.returncode == 0, res.stderr
    assert "+ /backstores/fileio/disk1" in res.stdout
    assert "/tpg1/luns/lun1" in res.stdout
    print(f"\napply (CLI round trip incl. interpreter start): {elapsed * 1000:.0f} ms; diff:\n{res.stdout}")
    after = iscsi_ls(port)
    print(after)
    assert "Lun:0" in after and "Lun:1" in after
    # applying the same file again changes nothing
    again = sanlab("apply", str(two), socket_path=sock)
    assert again.returncode == 0 and "no changes" in again.stdout
    shown = sanlab("show", "--json", socket_path=sock)
    assert shown.returncode == 0, shown.stderr
    tree = json.loads(shown.stdout)
    assert tree["path"] == "/"
    flat: list[str] = []

    def walk(node: dict[str, object]) -> None:
        flat.append(str(node["path"]))
        for child in node.get("children", []):  # type: ignore[attr-defined]
            walk(child)

    walk(tree)
    iqn = doc["targets"][0]["wwn"]  # type: ignore[index]
    assert "/backstores/fileio/disk1" in flat
    assert f"/iscsi/{iqn}/tpg1/luns/lun1" in flat
