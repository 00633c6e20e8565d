"""`sanlab target` management verbs against a target served in a background thread (real Unix-socket API):
every verb, all-or-nothing and partial restore reporting, batch exit codes, saveconfig, stats, /metrics, alua
and pr."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from loopback_target import IQN, free_port, simple_config

from target.api.manager import Manager
from target.cli.main import main
from target.cli.manage import Client
from target.config.native import dump_config
from target.runtime import build_runtime
from target.scsi.gates import PrType
from target.scsi.pr import pr_state
from target.server import ManagementOptions, serve


class Served:
    def __init__(self, sock: Path, manager: Manager, port: int, tmp: Path) -> None:
        self.sock, self.manager, self.port, self.tmp = sock, manager, port, tmp

    def cli(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        import sys

        old_stdin = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main(["target", args[0], "--socket", str(self.sock), *args[1:]])
        finally:
            sys.stdin = old_stdin
        return code, out.getvalue(), err.getvalue()

    def paths(self) -> list[str]:
        return list(self.manager._flat)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    cfg = simple_config(port, luns=1)
    sock = tmp_path / "t.sock"
    save = tmp_path / "state" / "running.json"
    started = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        async def go() -> None:
            stop = asyncio.Event()
            box["stop"], box["loop"] = stop, asyncio.get_running_loop()
            managers: list[Manager] = []
            ready = asyncio.Event()
            opts = ManagementOptions(socket_path=str(sock), save_path=str(save), keep=2)
            task = asyncio.create_task(
                serve(
                    cfg,
                    ready=ready,
                    stop=stop,
                    runtime=build_runtime(cfg),
                    management=opts,
                    manager_out=managers,
                )
            )
            await ready.wait()
            box["manager"] = managers[0]
            started.set()
            await task

        asyncio.run(go())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield Served(sock, box["manager"], port, tmp_path)
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(15)


def test_show_tree_and_json(served: Served) -> None:
    code, out, _ = served.cli("show")
    assert code == 0 and "t0l0" in out and "lun0" in out
    code, out, _ = served.cli("show", "--json")
    tree = json.loads(out)
    assert tree["path"] == "/" and {c["path"] for c in tree["children"]} >= {"/backstores", "/iscsi"}
    code, out, _ = served.cli("show", f"/iscsi/{IQN}/tpg1/luns/lun0", "--json")
    assert json.loads(out)["properties"]["storage_object"] == "ramdisk/t0l0"
    code, _, err = served.cli("show", "/iscsi/nope")
    assert code == 2 and "no such object" in err


def test_create_set_delete_verbs(served: Served) -> None:
    code, out, err = served.cli("create", "/backstores/ramdisk/r1", "size=2M")
    assert code == 0, err
    assert "+ /backstores/ramdisk/r1" in out
    code, out, err = served.cli(
        "create", f"/iscsi/{IQN}/tpg1/luns/lun5", "storage_object=/backstores/ramdisk/r1"
    )
    assert code == 0, err
    acl = "iqn.2024-01.org.sanlab:host9"
    assert served.cli("create", f"/iscsi/{IQN}/tpg1/acls/{acl}")[0] == 0
    assert (
        served.cli("create", f"/iscsi/{IQN}/tpg1/acls/{acl}/mapped_lun0", "tpg_lun=5", "write_protect=1")[0]
        == 0
    )
    code, out, err = served.cli(
        "set", f"/iscsi/{IQN}/tpg1/acls/{acl}", "auth", "userid=u1", "password=secretsecret12"
    )
    assert code == 0, err
    assert served.manager.config.targets[0].tpgs[0].node_acls[0].auth.userid == "u1"
    assert served.cli("set", f"/iscsi/{IQN}/tpg1", "attribute", "default_cmdsn_depth=32")[0] == 0
    assert served.manager.config.targets[0].tpgs[0].attributes["default_cmdsn_depth"] == 32
    assert served.cli("set", f"/iscsi/{IQN}/tpg1", "parameter", "MaxBurstLength=131072")[0] == 0
    assert served.manager.config.targets[0].tpgs[0].parameters["MaxBurstLength"] == "131072"
    assert served.cli("set", "/backstores/ramdisk/r1", "attribute", "emulate_tpu=1")[0] == 0
    assert served.manager.rt.lus["ramdisk/r1"].attributes["emulate_tpu"] == 1
    # bad value: refused, nothing changed
    code, _, err = served.cli("set", f"/iscsi/{IQN}/tpg1/luns/lun5", "storage_object=ramdisk/none")
    assert code == 1 and "not a storage object" in err
    # deleting the storage object takes its LUN and the mapped LUN with it
    code, out, _ = served.cli("delete", "/backstores/ramdisk/r1")
    assert code == 0
    assert "- /iscsi/" in out and "/tpg1/luns/lun5" in out and "mapped_lun0" in out
    assert "ramdisk/r1" not in served.manager.rt.lus
    assert served.cli("delete", "/backstores/ramdisk/r1")[0] == 2
    assert served.cli("create", "/backstores/ramdisk/t0l0", "size=1M")[0] == 1  # exists: refused (409)


def _config_with(served: Served, extra_sos: list[dict[str, Any]], extra_luns: list[dict[str, Any]]) -> Path:
    doc = dump_config(served.manager.config)
    doc["storage_objects"].extend(extra_sos)
    doc["targets"][0]["tpgs"][0]["luns"].extend(extra_luns)
    path = served.tmp / "desired.json"
    path.write_text(json.dumps(doc))
    return path


def test_restore_all_or_nothing_then_partial(served: Served) -> None:
    bad_dev = str(served.tmp / "no-such-dir" / "x.img")
    path = _config_with(
        served,
        [
            {"plugin": "ramdisk", "name": "good", "size": 1048576},
            {"plugin": "fileio", "name": "bad", "dev": bad_dev, "size": 1048576},
        ],
        [{"index": 1, "storage_object": "ramdisk/good"}, {"index": 2, "storage_object": "fileio/bad"}],
    )
    before = served.paths()
    code, _, err = served.cli("restoreconfig", str(path))
    assert code == 1
    assert "/backstores/fileio/bad" in err and "cannot open" in err and "nothing was changed" in err
    assert served.paths() == before
    code, _, err = served.cli("restoreconfig", str(path), "--partial")
    assert code == 1 and "applied partially" in err and "/backstores/fileio/bad" in err
    paths = served.paths()
    assert "/backstores/ramdisk/good" in paths and f"/iscsi/{IQN}/tpg1/luns/lun1" in paths
    assert "/backstores/fileio/bad" not in paths and f"/iscsi/{IQN}/tpg1/luns/lun2" not in paths


def test_apply_dry_run_changes_nothing(served: Served) -> None:
    path = _config_with(served, [{"plugin": "ramdisk", "name": "d", "size": 1048576}], [])
    code, out, _ = served.cli("apply", str(path), "--dry-run")
    assert code == 0 and "dry run" in out and "+ /backstores/ramdisk/d" in out
    assert "/backstores/ramdisk/d" not in served.paths()


def test_batch_stops_at_first_failure_with_exit_code(served: Served) -> None:
    script = served.tmp / "cmds.txt"
    script.write_text(
        "# comment\n"
        "create /backstores/ramdisk/b1 size=1M\n"
        "\n"
        "create /backstores/ramdisk/b2 size=banana\n"
        "create /backstores/ramdisk/b3 size=1M\n"
    )
    code, _, err = served.cli("batch", str(script))
    assert code == 2 and "cmds.txt:4" in err
    paths = served.paths()
    assert "/backstores/ramdisk/b1" in paths and "/backstores/ramdisk/b3" not in paths
    code, _, err = served.cli(
        "batch", "-", stdin=f"create /iscsi/{IQN}/tpg1/luns/lun7 storage_object=ramdisk/zz\n"
    )
    assert code == 1 and "stdin:1" in err
    code, out, _ = served.cli(
        "batch", "-", stdin="sanlab target delete /backstores/ramdisk/b1\nshow /backstores\n"
    )
    assert code == 0 and "2 command(s) succeeded" in out


def test_saveconfig_and_persistence_with_rotation(served: Served) -> None:
    out_file = served.tmp / "saved-lio.json"
    assert served.cli("saveconfig", str(out_file), "--format", "lio")[0] == 0
    assert "storage_objects" in json.loads(out_file.read_text())
    running = served.tmp / "state" / "running.json"
    for n in range(3):
        assert served.cli("create", f"/backstores/ramdisk/p{n}", "size=1M")[0] == 0
    assert running.exists()
    names = [so["name"] for so in json.loads(running.read_text())["storage_objects"]]
    assert "p2" in names
    prev = [
        so["name"]
        for so in json.loads((served.tmp / "state" / "running.json.1").read_text())["storage_objects"]
    ]
    assert "p1" in prev and "p2" not in prev
    assert (served.tmp / "state" / "running.json.2").exists()
    assert not (served.tmp / "state" / "running.json.3").exists()  # keep=2


def test_stats_and_metrics_endpoint(served: Served) -> None:
    async def io() -> None:
        from loopback_target import login

        ini = await login("127.0.0.1", served.port, IQN)
        await ini.write(0, b"\x01" * 4096)
        await ini.read(0, 8)
        await ini.logout()

    asyncio.run(io())
    code, out, _ = served.cli("stats", "--json")
    data = json.loads(out)
    tpg = data["targets"][0]["tpgs"][0]
    assert tpg["stats"]["writes"] >= 1 and tpg["stats"]["bytes_written"] >= 4096
    assert tpg["luns"][0]["stats"]["reads"] >= 1
    code, out, _ = served.cli("stats")
    assert code == 0 and "tpg1" in out
    text = Client(str(served.sock)).get("/metrics")
    assert f'sanlab_target_commands_total{{target="{IQN}"}}' in text
    assert "sanlab_lun_command_latency_seconds_bucket" in text
    assert 'sanlab_tpg_bytes_written_total{target="' in text


def test_unreachable_target_exit_code(tmp_path: Path) -> None:
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(["target", "show", "--socket", str(tmp_path / "none.sock")])
    assert code == 3 and "no target answers" in err.getvalue()


# --------------------------------------------------------------------------------------------- CLI over the API


def test_cli_alua_and_pr_verbs_over_the_socket(served: Served) -> None:
    code, out, _ = served.cli("alua", "show")
    assert code == 0 and f"{IQN}/1" in out and "active_optimized" in out
    code, out, _ = served.cli("alua", "show", "t0l0", "--json")
    (entry,) = json.loads(out)["storage_objects"]
    assert entry["storage_object"] == "ramdisk/t0l0" and entry["groups"][0]["id"] == 1
    code, out, _ = served.cli("alua", "set", "t0l0", "1", "standby")
    assert code == 0 and "active_optimized -> standby" in out
    # unknown group / state / object: usage-class errors with the reason
    code, _, err = served.cli("alua", "set", "t0l0", "9", "ao")
    assert code == 2 and "no ALUA target port group '9'" in err
    code, _, err = served.cli("alua", "set", "t0l0", "tpg1", "sleepy")
    assert code == 2 and "unknown ALUA access state 'sleepy'" in err
    code, _, err = served.cli("alua", "set", "nope", "tpg1", "ao")
    assert code == 2 and "no such storage object" in err
    # batch runs the verb with the connection options in front of the action
    code, out, _ = served.cli("batch", stdin="alua set t0l0 tpg1 an\nalua show\n")
    assert code == 0 and "batch: 2 command(s) succeeded" in out
    code, out, _ = served.cli("saveconfig", "-")
    (group,) = json.loads(out)["storage_objects"][0]["alua_groups"]
    assert (group["name"], group["state"], group["members"]) == ("tpg1", "active_non_optimized", [])
    lun = json.loads(out)["targets"][0]["tpgs"][0]["luns"][0]
    assert lun["alua_tg_pt_gp"] == "tpg1"
    # persistent reservations
    lu = served.manager.rt.lus["ramdisk/t0l0"]
    nexus = served.manager.rt.nexus_for("iqn.1994-05.com.example:a", 0x23D000000001, IQN, 1)
    pr_state(lu).register(nexus, 0, 0x1234)
    pr_state(lu).reserve(nexus, 0x1234, PrType.EXCLUSIVE_ACCESS)
    code, out, _ = served.cli("pr", "show", "t0l0")
    assert (
        code == 0 and "Exclusive Access (LU_SCOPE), held by iqn.1994-05.com.example:a,i,0x23d000000001" in out
    )
    assert "key 0x0000000000001234" in out and "[holder]" in out
    code, out, _ = served.cli("pr", "show", "/backstores/ramdisk/t0l0", "--json")
    assert json.loads(out)["registrations"][0]["key"] == "0x0000000000001234"
    code, out, _ = served.cli("pr", "clear", "t0l0")
    assert code == 0 and "1 registration(s) removed, reservation released" in out
    assert pr_state(lu).registrations == [] and pr_state(lu).reservation is None


def test_alua_pr_endpoints_reject_incomplete_requests(served: Served) -> None:
    from target.cli.manage import ApiError

    client = Client(str(served.sock))
    for path, body, text in (
        ("/v1/alua/set", {"storage_object": "t0l0", "state": "ao"}, "group is required"),
        ("/v1/pr/clear", {}, "storage_object is required"),
    ):
        with pytest.raises(ApiError) as err:
            client.post(path, body)
        assert (err.value.status, str(err.value)) == (400, text)
    with pytest.raises(ApiError) as err:
        client.get("/v1/pr")
    assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        client.get("/v1/pr", storage_object="nope")
    assert err.value.status == 404
