"""ALUA target port groups in the configuration: native JSON and LIO saveconfig.json (alua_tpgs) both ways."""

import pytest

from target.config import lio, native
from target.config.errors import ConfigError
from target.config.model import AluaGroupConfig

TGT = "iqn.2026-11.org.example:alua"


def lio_doc(groups, lun_groups=("A", "B")):
    return {
        "storage_objects": [
            {
                "plugin": "fileio",
                "name": "disk0",
                "dev": "/tmp/alua-disk0.img",
                "size": 1048576,
                "write_back": False,
                "attributes": {"block_size": 512},
                "alua_tpgs": groups,
            }
        ],
        "targets": [
            {
                "fabric": "iscsi",
                "wwn": TGT,
                "tpgs": [
                    {
                        "tag": tag,
                        "enable": True,
                        "attributes": {"generate_node_acls": 1},
                        "parameters": {},
                        "portals": [{"ip_address": "127.0.0.1", "port": 3260 + tag}],
                        "luns": [
                            {
                                "index": 0,
                                "storage_object": "/backstores/fileio/disk0",
                                "alua_tg_pt_gp_name": g,
                            }
                        ],
                        "node_acls": [],
                    }
                    for tag, g in zip((1, 2), lun_groups, strict=True)
                ],
            }
        ],
    }


#: what rtslib-fb's ALUATargetPortGroup.dump() writes
LIO_GROUP_B = {
    "name": "B",
    "tg_pt_gp_id": 34,
    "alua_access_state": 2,
    "alua_access_status": 0,
    "alua_access_type": 1,
    "alua_support_active_nonoptimized": 1,
    "alua_support_active_optimized": 1,
    "alua_support_offline": 0,
    "alua_support_standby": 1,
    "alua_support_transitioning": 1,
    "alua_support_unavailable": 0,
    "alua_write_metadata": 0,
    "implicit_trans_secs": 5,
    "nonop_delay_msecs": 20,
    "preferred": 1,
    "trans_delay_msecs": 250,
}
LIO_DEFAULT = {
    **LIO_GROUP_B,
    "name": "default_tg_pt_gp",
    "tg_pt_gp_id": 0,
    "alua_access_state": 0,
    "alua_access_type": 3,
    "preferred": 0,
    "implicit_trans_secs": 0,
    "nonop_delay_msecs": 100,
    "trans_delay_msecs": 0,
    "alua_support_offline": 1,
    "alua_support_unavailable": 1,
}


def test_lio_alua_tpgs_are_imported():
    cfg, warnings = lio.import_saveconfig(lio_doc([LIO_DEFAULT, LIO_GROUP_B], ("default_tg_pt_gp", "B")))
    assert not [w for w in warnings if "alua" in w.lower()]
    groups = {g.name: g for g in cfg.storage_objects[0].alua_groups}
    assert groups["B"] == AluaGroupConfig(
        name="B",
        id=34,
        state="standby",
        preferred=True,
        supported_states=["active_optimized", "active_non_optimized", "standby", "transitioning"],
        implicit=True,
        explicit=False,
        trans_delay_ms=250,
        nonop_delay_ms=20,
        implicit_trans_secs=5,
    )
    assert groups["default_tg_pt_gp"].state == "active_optimized"
    assert [lun.alua_tg_pt_gp for tpg in cfg.targets[0].tpgs for lun in tpg.luns] == ["default_tg_pt_gp", "B"]


def test_lio_export_round_trips_the_groups():
    cfg, _ = lio.import_saveconfig(lio_doc([LIO_DEFAULT, LIO_GROUP_B], ("default_tg_pt_gp", "B")))
    out = lio.export_saveconfig(cfg)
    exported = {g["name"]: g for g in out["storage_objects"][0]["alua_tpgs"]}
    assert exported["B"] == LIO_GROUP_B
    assert exported["default_tg_pt_gp"] == LIO_DEFAULT
    again, _ = lio.import_saveconfig(out)
    assert again.storage_objects[0].alua_groups == cfg.storage_objects[0].alua_groups


def test_lio_unknown_state_is_a_warning():
    cfg, warnings = lio.import_saveconfig(lio_doc([{**LIO_GROUP_B, "alua_access_state": 4}]))
    assert cfg.storage_objects[0].alua_groups[0].state == "active_optimized"
    assert any("alua_access_state" in w for w in warnings)


def test_native_round_trip_and_schema():
    cfg, _ = lio.import_saveconfig(lio_doc([LIO_DEFAULT, LIO_GROUP_B], ("default_tg_pt_gp", "B")))
    cfg.storage_objects[0].alua_groups[1].members = [f"{TGT}/1"]
    doc = native.dump_config(cfg)
    assert doc["storage_objects"][0]["alua_groups"][1]["members"] == [f"{TGT}/1"]
    back = native.parse_config(doc)
    assert back.storage_objects[0].alua_groups == cfg.storage_objects[0].alua_groups
    doc["storage_objects"][0]["alua_groups"][0]["state"] = "sideways"
    with pytest.raises(ConfigError):
        native.parse_config(doc)


def test_native_without_groups_dumps_no_key():
    cfg, _ = lio.import_saveconfig(lio_doc([]))
    assert "alua_groups" not in native.dump_config(cfg)["storage_objects"][0]
