"""Validation messages of a LIO saveconfig.json import name ALUA groups as the file does: `alua_tpgs[i]` with the
index in the file (the model's `alua_groups` list is not what the user wrote)."""

from __future__ import annotations

from typing import Any

import pytest

from target.config import lio
from target.config.errors import ConfigError

TGT = "iqn.2026-11.org.example:alua"
#: an `alua_tpgs` entry as rtslib-fb's ALUATargetPortGroup.dump() writes it
LIO_GROUP_B: dict[str, Any] = {
    "name": "B",
    "tg_pt_gp_id": 34,
    "alua_access_state": 2,
    "alua_access_status": 0,
    "alua_access_type": 1,
    "alua_write_metadata": 0,
    "implicit_trans_secs": 5,
    "nonop_delay_msecs": 20,
    "preferred": 1,
    "trans_delay_msecs": 250,
}
LIO_DEFAULT: dict[str, Any] = {
    **LIO_GROUP_B,
    "name": "default_tg_pt_gp",
    "tg_pt_gp_id": 0,
    "trans_delay_msecs": 0,
}


def lio_doc(groups: list[dict[str, Any]]) -> dict[str, Any]:
    so = {
        "plugin": "fileio",
        "name": "disk0",
        "dev": "/tmp/alua-disk0.img",
        "size": 1048576,
        "attributes": {"block_size": 512},
        "alua_tpgs": groups,
    }
    lun = {"index": 0, "storage_object": "/backstores/fileio/disk0", "alua_tg_pt_gp_name": "B"}
    tpg = {"tag": 1, "enable": True, "portals": [{"ip_address": "127.0.0.1", "port": 3260}], "luns": [lun]}
    return {"storage_objects": [so], "targets": [{"fabric": "iscsi", "wwn": TGT, "tpgs": [tpg]}]}


def import_errors(groups: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        lio.import_saveconfig(lio_doc(groups))
    return info.value.errors


def test_duplicate_group_id_names_the_alua_tpgs_entry() -> None:
    errors = import_errors([LIO_DEFAULT, LIO_GROUP_B, {**LIO_GROUP_B, "name": "C"}])
    assert [e for e in errors if "duplicate target port group id 34" in e] == [
        "storage_objects[0].alua_tpgs[2].id: duplicate target port group id 34 (group 'B' has it)"
    ]
    assert not [e for e in errors if "alua_groups" in e]


def test_index_is_the_files_even_after_an_entry_without_a_name() -> None:
    nameless = {**LIO_GROUP_B, "name": "", "tg_pt_gp_id": 7}
    errors = import_errors([LIO_DEFAULT, nameless, {**LIO_GROUP_B, "trans_delay_msecs": 40000}])
    delay = [e for e in errors if "40000" in e]
    assert len(delay) == 1 and delay[0].startswith("storage_objects[0].alua_tpgs[2].trans_delay_ms: ")
    assert not [e for e in errors if "alua_groups" in e]
