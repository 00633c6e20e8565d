"""ALUA and persistent-reservation management against a real `sanlab target serve` process, driven by the
`sanlab target alua|pr` CLI (subprocesses over the management socket) while test initiators hold sessions
through two target portal groups:

- two initiators register (one with APTPL) and one reserves; `pr show --json` reports both registrations,
  the holder and the type; `pr clear` drops them, both nexuses get RESERVATIONS PREEMPTED (2Ah/03h), READ
  KEYS is empty with the generation bumped and the APTPL file holds no registrations;
- `alua set` moves TPG 2's group to standby: both nexuses get ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h),
  REPORT TARGET PORT GROUPS shows the new state, a READ through the standby port is NOT READY 04h/0Bh,
  `saveconfig --format lio` carries alua_access_state 2; swapping the states back reverses all of it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from iscsi_initiator import Initiator, ScsiReply
from target_process import free_port, make_backing_file, sanlab_serving

pytestmark = pytest.mark.slow

IQN = "iqn.2026-11.org.sanlab.test:alua-pr"
HOST = "127.0.0.1"
KEY_A, KEY_B = 0xA1A1A1A1A1A1A1A1, 0xB2B2B2B2B2B2B2B2
TUR = bytes(6)
READ10 = bytes((0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0))
READ_KEYS = bytes((0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0x00, 0))
RTPG = bytes((0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 0))
CLI_TIMEOUT_S = 60


def write_config(tmp: Path, ports: tuple[int, int]) -> Path:
    disk = make_backing_file(tmp / "disk0.img", 8 * 1024 * 1024)
    tpgs = [
        {
            "tag": tag,
            "attributes": {"generate_node_acls": 1, "demo_mode_write_protect": 0, "authentication": 0},
            "portals": [{"ip": HOST, "port": port}],
            "luns": [{"index": 0, "storage_object": "fileio/disk0"}],
        }
        for tag, port in zip((1, 2), ports, strict=True)
    ]
    doc = {
        "sanlab_config_version": 1,
        "state_dir": str(tmp / "state"),
        "storage_objects": [{"plugin": "fileio", "name": "disk0", "dev": str(disk), "size": 8 * 1024 * 1024}],
        "targets": [{"wwn": IQN, "tpgs": tpgs}],
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def sanlab() -> list[str]:
    exe = Path(sys.executable).parent / "sanlab"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "target.cli.main"]


def cli(sock: Path, *args: str) -> tuple[int, str, str]:
    """`sanlab target VERB --socket SOCK ARGS...` as a subprocess."""
    verb, *rest = args
    proc = subprocess.run(
        [*sanlab(), "target", verb, "--socket", str(sock), *rest],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def sense_of(reply: ScsiReply) -> tuple[int, int, int]:
    sense = bytes(reply.sense)
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F, sense[2], sense[3]
    return sense[2] & 0x0F, sense[12], sense[13]


def prout(sa: int, key: int, sa_key: int = 0, pr_type: int = 0, flags: int = 0) -> tuple[bytes, bytes]:
    cdb = bytes((0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0))
    return cdb, key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(4) + bytes((flags, 0, 0, 0))


def rtpg_states(data: bytes) -> dict[int, int]:
    """REPORT TARGET PORT GROUPS (length format): group id -> asymmetric access state."""
    end = 4 + int.from_bytes(data[0:4], "big")
    out: dict[int, int] = {}
    pos = 4
    while pos + 8 <= min(end, len(data)):
        gid = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out[gid] = data[pos] & 0x0F
        pos += 8 + 4 * data[pos + 7]
    return out


async def session(port: int, name: str, isid: int) -> Initiator:
    ini = Initiator(name, isid)
    await ini.connect(HOST, port)
    await ini.login(IQN)
    for _ in range(4):  # power-on / nexus unit attentions
        if (await ini.scsi(TUR)).status == 0:
            break
    return ini


async def first_ua(ini: Initiator) -> tuple[int, int, int]:
    r = await ini.scsi(TUR)
    assert r.status == 2, "a unit attention was expected"
    return sense_of(r)


async def scenario(sock: Path, ports: tuple[int, int], state_dir: Path) -> dict[str, Any]:
    a = await session(ports[0], "iqn.2026-11.test:node-a", 0x400000000001)
    b = await session(ports[1], "iqn.2026-11.test:node-b", 0x400000000002)
    cdb, data = prout(0x06, 0, KEY_B)  # REGISTER AND IGNORE EXISTING KEY
    assert (await b.scsi(cdb, write_data=data)).status == 0
    # the same with APTPL=1 (the last one decides, SPC-4 5.13.5.1)
    cdb, data = prout(0x06, 0, KEY_A, flags=0x01)
    assert (await a.scsi(cdb, write_data=data)).status == 0
    cdb, data = prout(0x01, KEY_A, pr_type=0x05)  # RESERVE, WRITE EXCLUSIVE - REGISTRANTS ONLY
    assert (await a.scsi(cdb, write_data=data)).status == 0
    out: dict[str, Any] = {}
    # --- pr show / pr clear (the CLI runs in a thread: this loop keeps serving nothing, the target is separate)
    out["show"] = await asyncio.to_thread(cli, sock, "pr", "show", "disk0", "--json")
    out["show_text"] = await asyncio.to_thread(cli, sock, "pr", "show", "/backstores/fileio/disk0")
    out["clear"] = await asyncio.to_thread(cli, sock, "pr", "clear", "fileio/disk0")
    out["ua_a_pr"], out["ua_b_pr"] = await first_ua(a), await first_ua(b)
    keys = await a.scsi(READ_KEYS, read_length=4096)
    out["read_keys"] = bytes(keys.data)
    aptpl_files = list((state_dir / "pr").glob("*.json"))
    out["aptpl"] = [json.loads(p.read_text()) for p in aptpl_files]
    # --- ALUA: TPG 2's group to standby and back
    out["rtpg_before"] = rtpg_states(bytes((await a.scsi(RTPG, read_length=4096)).data))
    out["set_standby"] = await asyncio.to_thread(cli, sock, "alua", "set", "disk0", "2", "standby")
    out["ua_a_alua"], out["ua_b_alua"] = await first_ua(a), await first_ua(b)
    out["rtpg_standby"] = rtpg_states(bytes((await a.scsi(RTPG, read_length=4096)).data))
    read_b = await b.scsi(READ10, read_length=512)
    out["read_b_standby"] = (read_b.status, sense_of(read_b) if read_b.status == 2 else None)
    out["read_a_standby"] = (await a.scsi(READ10, read_length=512)).status
    out["lio_export"] = await asyncio.to_thread(cli, sock, "saveconfig", "-", "--format", "lio")
    out["show_alua"] = await asyncio.to_thread(cli, sock, "alua", "show", "disk0", "--json")
    out["swap_a"] = await asyncio.to_thread(cli, sock, "alua", "set", "disk0", "tpg1", "an")
    out["swap_b"] = await asyncio.to_thread(cli, sock, "alua", "set", "disk0", "tpg2", "ao")
    for ini in (a, b):  # one UA per transition, possibly coalesced: read them all
        for _ in range(4):
            if (await ini.scsi(TUR)).status == 0:
                break
    out["rtpg_swapped"] = rtpg_states(bytes((await b.scsi(RTPG, read_length=4096)).data))
    out["read_b_swapped"] = (await b.scsi(READ10, read_length=512)).status
    out["bad_group"] = await asyncio.to_thread(cli, sock, "alua", "set", "disk0", "nope", "ao")
    out["bad_state"] = await asyncio.to_thread(cli, sock, "alua", "set", "disk0", "tpg1", "sideways")
    await a.logout()
    await b.logout()
    return out


def test_alua_and_pr_management_verbs_against_live_sessions(tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    config = write_config(tmp_path, ports)
    sock = tmp_path / "mgmt.sock"
    with sanlab_serving(config, ports, tmp_path / "target.log", "--socket", str(sock), host=HOST, api=True):
        out = asyncio.run(asyncio.wait_for(scenario(sock, ports, tmp_path / "state"), 240))
    # pr show
    code, text, err = out["show"]
    assert code == 0, err
    shown = json.loads(text)
    assert shown["generation"] == 2 and shown["aptpl"]
    assert shown["reservation"]["type"] == "Write Exclusive, Registrants Only"
    assert shown["reservation"]["holder"] == "iqn.2026-11.test:node-a,i,0x400000000001"
    ports_of = {
        r["initiator_port"]: (r["key"], r["target_port"], r["holder"]) for r in shown["registrations"]
    }
    assert ports_of == {
        "iqn.2026-11.test:node-a,i,0x400000000001": (f"0x{KEY_A:016x}", f"{IQN},t,0x0001", True),
        "iqn.2026-11.test:node-b,i,0x400000000002": (f"0x{KEY_B:016x}", f"{IQN},t,0x0002", False),
    }
    assert out["show_text"][0] == 0 and "[holder]" in out["show_text"][1]
    # pr clear: RESERVATIONS PREEMPTED to both registrants, no keys left, generation bumped, APTPL file emptied
    assert out["clear"][0] == 0 and "2 registration(s) removed, reservation released" in out["clear"][1]
    assert out["ua_a_pr"] == (0x6, 0x2A, 0x03) and out["ua_b_pr"] == (0x6, 0x2A, 0x03)
    assert out["read_keys"] == (3).to_bytes(4, "big") + bytes(4)
    (aptpl,) = out["aptpl"]
    assert aptpl["registrations"] == [] and aptpl["reservation"] is None
    # ALUA: one group per TPG (ids = relative port ids), TPG 2 to standby
    assert out["rtpg_before"] == {1: 0x0, 2: 0x0}
    assert out["set_standby"][0] == 0, out["set_standby"][2]
    assert out["ua_a_alua"] == (0x6, 0x2A, 0x06) and out["ua_b_alua"] == (0x6, 0x2A, 0x06)
    assert out["rtpg_standby"] == {1: 0x0, 2: 0x2}
    assert out["read_b_standby"] == (2, (0x2, 0x04, 0x0B))
    assert out["read_a_standby"] == 0
    code, text, _ = out["lio_export"]
    lio_groups = {g["name"]: g for g in json.loads(text)["storage_objects"][0]["alua_tpgs"]}
    assert (lio_groups["tpg2"]["tg_pt_gp_id"], lio_groups["tpg2"]["alua_access_state"]) == (2, 2)
    assert lio_groups["tpg1"]["alua_access_state"] == 0
    lio_tpgs = json.loads(text)["targets"][0]["tpgs"]
    assert [t["luns"][0]["alua_tg_pt_gp_name"] for t in lio_tpgs] == ["tpg1", "tpg2"]
    shown_alua = {g["name"]: g for g in json.loads(out["show_alua"][1])["storage_objects"][0]["groups"]}
    assert shown_alua["tpg2"]["state"] == "standby" and shown_alua["tpg2"]["members"] == [f"{IQN}/2"]
    # swapped: TPG 1 non-optimized, TPG 2 optimized, reads through TPG 2 work again
    assert out["swap_a"][0] == 0 and out["swap_b"][0] == 0
    assert out["rtpg_swapped"] == {1: 0x1, 2: 0x0}
    assert out["read_b_swapped"] == 0
    assert out["bad_group"][0] == 2 and "no ALUA target port group 'nope'" in out["bad_group"][2]
    assert out["bad_state"][0] == 2 and "unknown ALUA access state 'sideways'" in out["bad_state"][2]
