"""ALUA and persistent-reservation management: Manager.alua_show/alua_set/pr_show/pr_clear in process (no
sockets), the state-name spellings, the ALUA checks of config validation with their exact messages, and the
`sanlab target alua|pr` argument parsing (including the form `batch` runs). The verbs over a real socket are in
test_cli_target_manage.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from target.api.manager import ManagementError, Manager, alua_state_name
from target.cli.main import build_parser
from target.config.errors import ConfigError
from target.config.model import (
    AluaGroupConfig,
    Config,
    LunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)
from target.config.native import dump_config, parse_config
from target.config.validate import Locator, check_config
from target.runtime import build_runtime
from target.scsi.gates import PrType
from target.scsi.pr import pr_state
from target.scsi.sense import Asc

WWN = "iqn.2026-11.org.example:mgmt"
SO = "ramdisk/d0"


def two_port_config(tmp_path: Path, groups: list[AluaGroupConfig] | None = None) -> Config:
    so = StorageObjectConfig(plugin="ramdisk", name="d0", size=1 << 20, alua_groups=list(groups or []))
    tpgs = [
        TpgConfig(
            tag=tag,
            portals=[PortalConfig("127.0.0.1", 3260 + tag)],
            luns=[LunConfig(0, SO)],
            attributes={"generate_node_acls": 1},
        )
        for tag in (1, 2)
    ]
    return Config(storage_objects=[so], targets=[TargetConfig(WWN, tpgs)], state_dir=str(tmp_path / "state"))


def manager(tmp_path: Path, groups: list[AluaGroupConfig] | None = None) -> Manager:
    return Manager(build_runtime(two_port_config(tmp_path, groups)), save_path=str(tmp_path / "running.json"))


def groups_by_name(m: Manager) -> dict[str, dict[str, Any]]:
    (entry,) = m.alua_show(SO)
    return {g["name"]: g for g in entry["groups"]}


# --------------------------------------------------------------------------------------------- ALUA


def test_alua_show_default_layout_one_group_per_port(tmp_path: Path) -> None:
    m = manager(tmp_path)
    (entry,) = m.alua_show()
    assert entry["storage_object"] == SO and entry["alua"]
    got = {(g["name"], g["id"], g["state"], tuple(g["relative_port_ids"])) for g in entry["groups"]}
    assert got == {(f"{WWN}/1", 1, "active_optimized", (1,)), (f"{WWN}/2", 2, "active_optimized", (2,))}
    # the same object by any of its spellings
    for ref in ("/backstores/ramdisk/d0", "ramdisk/d0", "d0"):
        assert m.alua_show(ref)[0]["storage_object"] == SO


def test_alua_set_by_id_transitions_announces_and_records_in_config(tmp_path: Path) -> None:
    m = manager(tmp_path)
    lu = m.rt.lus[SO]
    nexus = m.rt.nexus_for("iqn.1994-05.com.example:host", 0x23D000000001, WWN, 1)
    lu.ua.register(nexus)
    pr_state(lu).register(nexus, 0, 0xABC)
    out = asyncio.run(m.alua_set("/backstores/ramdisk/d0", "2", "an"))
    assert out["previous_state"] == "active_optimized"
    assert out["group"]["state"] == "active_non_optimized" and out["saved"]
    assert Asc.ASYMMETRIC_ACCESS_STATE_CHANGED in lu.ua.pending(nexus)
    # the runtime's per-port groups were written down with their ids and members; the LU was not reopened
    so = m.config.storage_objects[0]
    assert [(g.name, g.id, g.state, g.members) for g in so.alua_groups] == [
        ("tpg1", 1, "active_optimized", []),
        ("tpg2", 2, "active_non_optimized", []),
    ]
    # as LIO has it: the port's LUN names its group
    assert [t.luns[0].alua_tg_pt_gp for t in m.config.targets[0].tpgs] == ["tpg1", "tpg2"]
    assert m.rt.lus[SO] is lu and [r.key for r in pr_state(lu).registrations] == [0xABC]
    live = groups_by_name(m)
    assert (live["tpg2"]["state"], live["tpg2"]["relative_port_ids"]) == ("active_non_optimized", [2])
    # next change by name; the autosaved file carries it (LIO's alua_access_state on export)
    asyncio.run(m.alua_set(SO, "tpg1", "standby"))
    saved = json.loads((tmp_path / "running.json").read_text())
    states = {g["name"]: g["state"] for g in saved["storage_objects"][0]["alua_groups"]}
    assert states == {"tpg1": "standby", "tpg2": "active_non_optimized"}


def test_alua_set_configured_group_keeps_the_others(tmp_path: Path) -> None:
    groups = [
        AluaGroupConfig(name="A", id=10, members=[f"{WWN}/1"]),
        AluaGroupConfig(
            name="B", id=20, members=[f"{WWN}/2"], supported_states=["active_optimized", "standby"]
        ),
    ]
    m = manager(tmp_path, groups)
    asyncio.run(m.alua_set(SO, "B", "standby"))
    assert [(g.name, g.state) for g in m.config.storage_objects[0].alua_groups] == [
        ("A", "active_optimized"),
        ("B", "standby"),
    ]
    assert dump_config(m.config)["storage_objects"][0]["alua_groups"][1]["state"] == "standby"
    # a state the group does not support: refused (409), nothing recorded
    with pytest.raises(ManagementError) as err:
        asyncio.run(m.alua_set(SO, "20", "unavailable"))
    assert err.value.status == 409 and "does not support unavailable" in str(err.value)
    assert m.config.storage_objects[0].alua_groups[1].state == "standby"


@pytest.mark.parametrize(
    ("so", "group", "state", "status", "text"),
    [
        ("nope", "1", "ao", 404, "nope: no such storage object"),
        (SO, "9", "ao", 404, "no ALUA target port group '9'"),
        (SO, "1", "sleepy", 400, "unknown ALUA access state 'sleepy'"),
    ],
)
def test_alua_set_errors(tmp_path: Path, so: str, group: str, state: str, status: int, text: str) -> None:
    m = manager(tmp_path)
    with pytest.raises(ManagementError) as err:
        asyncio.run(m.alua_set(so, group, state))
    assert err.value.status == status and text in str(err.value)
    assert m.config.storage_objects[0].alua_groups == []


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("active_optimized", "active_optimized"),
        ("ao", "active_optimized"),
        ("active_nonoptimized", "active_non_optimized"),
        ("Active-Non-Optimized", "active_non_optimized"),
        ("an", "active_non_optimized"),
        ("1", "active_non_optimized"),
        ("standby", "standby"),
        ("unavailable", "unavailable"),
        ("14", "offline"),
        ("transitioning", "transitioning"),
    ],
)
def test_alua_state_spellings(typed: str, name: str) -> None:
    assert alua_state_name(typed) == name


# --------------------------------------------------------------------------------------------- PR


def test_pr_show_and_clear_with_aptpl(tmp_path: Path) -> None:
    m = manager(tmp_path)
    lu = m.rt.lus[SO]
    n1 = m.rt.nexus_for("iqn.1994-05.com.example:a", 0x23D000000001, WWN, 1)
    n2 = m.rt.nexus_for("iqn.1994-05.com.example:b", 0x23D000000002, WWN, 2)
    bystander = m.rt.nexus_for("iqn.1994-05.com.example:c", 0x23D000000003, WWN, 1)
    for n in (n1, n2, bystander):
        lu.ua.register(n)
    state = pr_state(lu)
    state.register(n1, 0, 0x11, aptpl=True)
    state.register(n2, 0, 0x22, all_tg_pt=True, aptpl=True)
    state.reserve(n1, 0x11, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    assert state.store is not None
    state.store.save(state.to_dict())
    shown = m.pr_show("d0")
    assert shown["generation"] == 2 and shown["aptpl"] and shown["aptpl_file"] == str(state.store.path)
    regs = {r["key"]: r for r in shown["registrations"]}
    assert regs["0x0000000000000011"]["initiator_port"] == "iqn.1994-05.com.example:a,i,0x23d000000001"
    assert regs["0x0000000000000011"]["target_port"] == f"{WWN},t,0x0001"
    assert regs["0x0000000000000011"]["holder"] and not regs["0x0000000000000022"]["holder"]
    assert regs["0x0000000000000022"]["all_tg_pt"] and regs["0x0000000000000022"]["relative_port_id"] == 2
    tid = bytes.fromhex(regs["0x0000000000000011"]["transport_id"])
    assert tid[0] == 0x45 and tid[4:].rstrip(b"\0") == b"iqn.1994-05.com.example:a,i,0x23d000000001"
    assert shown["reservation"] == {
        "type": "Write Exclusive, Registrants Only",
        "type_code": 5,
        "scope": "LU_SCOPE",
        "all_registrants": False,
        "holder": "iqn.1994-05.com.example:a,i,0x23d000000001",
        "holder_key": "0x0000000000000011",
    }
    out = asyncio.run(m.pr_clear("/backstores/ramdisk/d0"))
    assert out == {
        "storage_object": SO,
        "registrations_removed": 2,
        "reservation_released": True,
        "unit_attentions": 2,
        "generation": 3,
    }
    assert Asc.RESERVATIONS_PREEMPTED in lu.ua.pending(n1)
    assert Asc.RESERVATIONS_PREEMPTED in lu.ua.pending(n2)
    assert Asc.RESERVATIONS_PREEMPTED not in lu.ua.pending(bystander)
    saved = state.store.load()
    assert saved is not None and saved["registrations"] == [] and saved["reservation"] is None
    assert m.pr_show(SO)["registrations"] == [] and m.pr_show(SO)["reservation"] is None


def test_pr_clear_refused_when_aptpl_cannot_be_written(tmp_path: Path) -> None:
    m = manager(tmp_path)
    lu = m.rt.lus[SO]
    n1 = m.rt.nexus_for("iqn.1994-05.com.example:a", 1, WWN, 1)
    state = pr_state(lu)
    state.register(n1, 0, 0x11, aptpl=True)
    assert state.store is not None
    state.store.directory.parent.mkdir(parents=True, exist_ok=True)
    state.store.directory.write_text("a file where the directory should be")
    with pytest.raises(ManagementError) as err:
        asyncio.run(m.pr_clear(SO))
    assert err.value.status == 500 and "not cleared" in str(err.value)
    assert [r.key for r in state.registrations] == [0x11]


def test_pr_show_unknown_object(tmp_path: Path) -> None:
    with pytest.raises(ManagementError) as err:
        manager(tmp_path).pr_show("fileio/nope")
    assert err.value.status == 404


# --------------------------------------------------------------------------------------------- validation


def _native(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "sanlab_config_version": 1,
        "storage_objects": [{"plugin": "ramdisk", "name": "d0", "size": 1048576, "alua_groups": groups}],
        "targets": [{"wwn": WWN, "tpgs": [{"tag": 1, "luns": [{"index": 0, "storage_object": SO}]}]}],
    }


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (
            [{"name": "A", "id": 1}, {"name": "B", "id": 1}],
            "storage_objects[0].alua_groups[1].id: duplicate target port group id 1 (group 'A' has it)",
        ),
        (
            [{"name": "A", "id": 1}, {"name": "A", "id": 2}],
            "storage_objects[0].alua_groups[1].name: duplicate ALUA target port group 'A'",
        ),
        (
            [{"name": "A", "id": 0}],
            "storage_objects[0].alua_groups[0].id: 0 is not a target port group id (1-65535; 0 is default_tg_pt_gp's)",
        ),
        (
            [{"name": "A", "id": 1, "members": [f"{WWN}/7"]}],
            f"storage_objects[0].alua_groups[0].members: '{WWN}/7' is not a TPG of this configuration",
        ),
        (
            [
                {"name": "A", "id": 1, "members": [f"{WWN}/1"]},
                {"name": "B", "id": 2, "members": [f"{WWN}/1"]},
            ],
            f"storage_objects[0].alua_groups[1].members: '{WWN}/1' is already a member of group 'A'",
        ),
        (
            [{"name": "bad name", "id": 1}],
            "storage_objects[0].alua_groups[0].name: 'bad name' is not a valid ALUA target port group name "
            "(letters, digits, '_.:-', at most 64)",
        ),
    ],
)
def test_alua_validation_messages(groups: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_native(groups))
    assert err.value.errors == [message]


def test_alua_validation_default_group_may_have_id_zero() -> None:
    cfg = parse_config(_native([{"name": "default_tg_pt_gp", "id": 0}, {"name": "A", "id": 5}]))
    assert [g.id for g in cfg.storage_objects[0].alua_groups] == [0, 5]


def test_alua_validation_states_and_delays_without_schema(tmp_path: Path) -> None:
    """What the LIO importer hands over is not schema-checked: the semantic check covers states and ranges."""
    bad = AluaGroupConfig(name="A", id=1, state="sleepy", supported_states=["standby", "dozing"])
    bad.trans_delay_ms, bad.nonop_delay_ms, bad.implicit_trans_secs = 30001, -1, 256
    cfg = two_port_config(tmp_path, [bad])
    loc = Locator()
    loc.add(cfg.storage_objects[0], "so")
    errors = check_config(cfg, loc).errors
    valid = "active_optimized, active_non_optimized, standby, unavailable, offline, transitioning"
    assert errors == [
        f"so.alua_groups[0].state: 'sleepy' is not an ALUA access state ({valid})",
        f"so.alua_groups[0].supported_states: 'dozing' is not an ALUA access state ({valid})",
        "so.alua_groups[0].trans_delay_ms: 30001 is not in the range 0-30000",
        "so.alua_groups[0].nonop_delay_ms: -1 is not in the range 0-10000",
        "so.alua_groups[0].implicit_trans_secs: 256 is not in the range 0-255",
    ]


def test_lun_naming_an_undefined_group_warns(tmp_path: Path) -> None:
    cfg = two_port_config(tmp_path, [AluaGroupConfig(name="A", id=1)])
    cfg.targets[0].tpgs[0].luns[0].alua_tg_pt_gp = "Z"
    loc = Locator()
    loc.add(cfg.targets[0].tpgs[0].luns[0], "lun")
    rep = check_config(cfg, loc)
    assert rep.errors == []
    assert rep.warnings == [f"lun.alua_tg_pt_gp: {SO} has no ALUA group 'Z'; the port joins default_tg_pt_gp"]


# --------------------------------------------------------------------------------------------- CLI parsing


@pytest.mark.parametrize(
    "argv",
    [
        ["target", "alua", "--socket", "/s", "set", "d0", "tpg1", "an"],  # what `batch` runs
        ["target", "alua", "set", "--socket", "/s", "d0", "tpg1", "an"],
        ["target", "alua", "set", "d0", "tpg1", "an", "-s", "/s"],
    ],
)
def test_cli_alua_set_parsing(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.socket, args.storage_object, args.group, args.state) == ("/s", "d0", "tpg1", "an")
    assert args.func.__name__ == "run"  # the guarded handler (exit codes)


def test_cli_alua_show_and_pr_parsing() -> None:
    p = build_parser()
    a = p.parse_args(["target", "alua", "show", "--json"])
    assert (a.storage_object, a.json, a.socket) == ("", True, None)
    a = p.parse_args(["target", "pr", "show", "/backstores/ramdisk/d0", "--json"])
    assert (a.storage_object, a.json) == ("/backstores/ramdisk/d0", True)
    a = p.parse_args(["target", "pr", "--url", "http://127.0.0.1:1", "clear", "d0"])
    assert (a.storage_object, a.url) == ("d0", "http://127.0.0.1:1")


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from target.cli.main import main

    assert main(["target", "alua"]) == 2
    assert main(["target", "alua", "set", "d0", "tpg1"]) == 2
    assert main(["target", "pr", "clear"]) == 2
    assert "usage" in capsys.readouterr().err
