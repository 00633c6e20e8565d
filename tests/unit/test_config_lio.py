"""LIO saveconfig.json import/export (the shape rtslib-fb's RTSRoot.dump() writes)."""

import copy
import json
from pathlib import Path

import pytest

from target.config import lio, native
from target.config.errors import ConfigError
from target.config.load import detect_format, load_config
from target.config.model import AuthConfig, MappedLunConfig, PortalConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

_PARAMS = {
    "AuthMethod": "CHAP,None",
    "DataDigest": "CRC32C,None",
    "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes",
    "DefaultTime2Retain": "20",
    "DefaultTime2Wait": "2",
    "ErrorRecoveryLevel": "0",
    "FirstBurstLength": "65536",
    "HeaderDigest": "CRC32C,None",
    "IFMarkInt": "2048~65535",
    "IFMarker": "No",
    "ImmediateData": "Yes",
    "InitialR2T": "Yes",
    "MaxBurstLength": "262144",
    "MaxConnections": "1",
    "MaxOutstandingR2T": "1",
    "MaxRecvDataSegmentLength": "8192",
    "MaxXmitDataSegmentLength": "262144",
    "OFMarkInt": "Reject",
    "OFMarker": "No",
    "TargetAlias": "LIO Target",
}
_ACL_ATTRS = {
    "authentication": -1,
    "dataout_timeout": 3,
    "dataout_timeout_retries": 5,
    "default_erl": 0,
    "nopin_response_timeout": 30,
    "nopin_timeout": 15,
    "random_datain_pdu_offsets": 0,
    "random_datain_seq_offsets": 0,
    "random_r2t_offsets": 0,
}

SAVECONFIG = {
    "fabric_modules": [
        {
            "discovery_enable_auth": True,
            "discovery_mutual_password": "disc-mutual-secret",
            "discovery_mutual_userid": "target",
            "discovery_password": "disc-secret-123",
            "discovery_userid": "discoverer",
            "name": "iscsi",
        }
    ],
    "storage_objects": [
        {
            "aio": False,
            "alua_tpgs": [{"name": "default_tg_pt_gp", "tg_pt_gp_id": 0, "alua_access_state": 0}],
            "attributes": {
                "block_size": 4096,
                "emulate_tpu": 1,
                "emulate_write_cache": 1,
                "queue_depth": 128,
            },
            "dev": "/var/lib/iscsi/disk0.img",
            "name": "disk0",
            "plugin": "fileio",
            "size": 10737418240,
            "write_back": True,
            "wwn": "1c59c32e-d5c4-4bc8-ad12-aa6c03526f63",
        },
        {
            "alua_tpgs": [],
            "attributes": {"block_size": 512, "emulate_frobnicate": 1},
            "dev": "/dev/vg0/lv_iscsi",
            "exclusive": True,
            "name": "lv0",
            "plugin": "block",
            "readonly": True,
            "write_back": False,
            "wwn": "7e2d0f3a-1111-2222-3333-444455556666",
        },
        {
            "attributes": {"block_size": 512},
            "name": "rd0",
            "plugin": "ramdisk",
            "size": 67108864,
            "wwn": "rd0-serial",
        },
        {"dev": "/dev/sg3", "name": "tape0", "plugin": "pscsi"},
    ],
    "targets": [
        {
            "fabric": "iscsi",
            "parameters": {"cmd_completion_affinity": "-1"},
            "tpgs": [
                {
                    "attributes": {"authentication": 1, "generate_node_acls": 0, "login_timeout": 15},
                    "enable": True,
                    "luns": [
                        {
                            "alias": "a1",
                            "alua_tg_pt_gp_name": "default_tg_pt_gp",
                            "index": 0,
                            "storage_object": "/backstores/fileio/disk0",
                        },
                        {
                            "alias": "a2",
                            "alua_tg_pt_gp_name": "default_tg_pt_gp",
                            "index": 1,
                            "storage_object": "/backstores/block/lv0",
                        },
                        {"index": 2, "storage_object": "/backstores/ramdisk/rd0"},
                        {"index": 3, "storage_object": "/backstores/pscsi/tape0"},
                    ],
                    "node_acls": [
                        {
                            "attributes": _ACL_ATTRS,
                            "chap_mutual_password": "target-secret-42",
                            "chap_mutual_userid": "target",
                            "chap_password": "client-secret-42",
                            "chap_userid": "client",
                            "mapped_luns": [
                                {"alias": "m1", "index": 0, "tpg_lun": 0, "write_protect": False},
                                {"alias": "m2", "index": 5, "tpg_lun": 2, "write_protect": True},
                                {"alias": "m3", "index": 6, "tpg_lun": 3, "write_protect": False},
                            ],
                            "node_wwn": "iqn.1994-05.com.redhat:client1",
                        },
                        {
                            "attributes": _ACL_ATTRS,
                            "chap_password": "short",
                            "chap_userid": "win",
                            "mapped_luns": [{"index": 0, "tpg_lun": 1, "write_protect": False}],
                            "node_wwn": "iqn.1991-05.com.microsoft:win-client",
                            "tag": "windows",
                        },
                    ],
                    "parameters": _PARAMS,
                    "portals": [
                        {"ip_address": "192.0.2.10", "iser": False, "offload": False, "port": 3260},
                        {"ip_address": "[::0]", "iser": True, "offload": False, "port": 3260},
                    ],
                    "tag": 1,
                }
            ],
            "wwn": "iqn.2003-01.org.linux-iscsi.storage.x8664:sn.75fcaf1cfc33",
        },
        {
            "fabric": "qla2xxx",
            "tpgs": [{"enable": True, "luns": [], "node_acls": [], "tag": 1}],
            "wwn": "21:00:00:24:ff:31:4c:48",
        },
    ],
}


def test_detects_lio_format():
    assert detect_format(SAVECONFIG) == "lio"
    assert detect_format({"sanlab_config_version": 1}) == "native"
    with pytest.raises(ConfigError):
        detect_format({"hello": 1})


def test_import_builds_the_tree():
    cfg, _ = lio.import_saveconfig(copy.deepcopy(SAVECONFIG))
    disk0, lv0, rd0 = cfg.storage_objects
    assert (disk0.plugin, disk0.size, disk0.block_size, disk0.write_back) == ("fileio", 10 << 30, 4096, True)
    assert disk0.attributes == {"emulate_tpu": 1, "emulate_write_cache": 1, "queue_depth": 128}
    assert disk0.wwn == "1c59c32e-d5c4-4bc8-ad12-aa6c03526f63"
    assert (lv0.plugin, lv0.dev, lv0.readonly, lv0.write_back, lv0.size) == (
        "block",
        "/dev/vg0/lv_iscsi",
        True,
        False,
        0,
    )
    assert (rd0.plugin, rd0.size) == ("ramdisk", 64 << 20)
    assert len(cfg.targets) == 1
    tgt = cfg.targets[0]
    assert tgt.wwn == "iqn.2003-01.org.linux-iscsi.storage.x8664:sn.75fcaf1cfc33"
    tpg = tgt.tpgs[0]
    assert tpg.portals == [PortalConfig("192.0.2.10", 3260), PortalConfig("::0", 3260)]
    assert [(lun.index, lun.storage_object) for lun in tpg.luns] == [
        (0, "fileio/disk0"),
        (1, "block/lv0"),
        (2, "ramdisk/rd0"),
    ]
    acl1, acl2 = tpg.node_acls
    assert acl1.auth == AuthConfig("client", "client-secret-42", "target", "target-secret-42")
    assert acl1.mapped_luns == [MappedLunConfig(0, 0, False), MappedLunConfig(5, 2, True)]
    assert acl1.attributes["nopin_timeout"] == 15
    assert acl2.tag == "windows"
    assert tpg.parameters["MaxRecvDataSegmentLength"] == "8192"
    assert tpg.attributes["authentication"] == 1
    assert cfg.discovery_auth == AuthConfig("discoverer", "disc-secret-123", "target", "disc-mutual-secret")
    assert cfg.discovery_auth_enforced is True


def test_import_warnings():
    _, warnings = lio.import_saveconfig(copy.deepcopy(SAVECONFIG))
    assert warnings == [
        "storage_objects[3]: storage object pscsi/tape0 skipped: plugin 'pscsi' is not supported",
        "targets[0].tpgs[0].portals[1].iser: iser is not supported; the portal serves plain iSCSI over TCP",
        "targets[0].tpgs[0].luns[3]: LUN 3 skipped: its storage object /backstores/pscsi/tape0 was skipped",
        "targets[0].tpgs[0].node_acls[0].mapped_luns[2]: mapped LUN 6 skipped: TPG LUN 3 was skipped",
        "targets[1]: qla2xxx target '21:00:00:24:ff:31:4c:48' skipped: only iSCSI targets are served",
        "storage_objects[1].attributes.emulate_frobnicate: unknown storage object attribute (kept, but nothing uses it)",
        "targets[0].tpgs[0].node_acls[1].chap_password: CHAP secret is shorter than 12 characters "
        "(RFC 7143 12.1.3); many initiators will refuse it",
    ]


def test_every_error_with_its_lio_path():
    doc = copy.deepcopy(SAVECONFIG)
    tpg = doc["targets"][0]["tpgs"][0]
    tpg["luns"].append({"index": 9, "storage_object": "/backstores/fileio/nope"})
    tpg["luns"].append({"index": 10, "storage_object": "fileio/disk0"})
    tpg["node_acls"][0]["mapped_luns"].append({"index": 7, "tpg_lun": 42, "write_protect": False})
    tpg["node_acls"][0]["node_wwn"] = "client1"
    tpg["portals"][0]["ip_address"] = "storage.example.com"
    tpg["portals"][0]["port"] = "3260"
    tpg["parameters"] = dict(_PARAMS, HeaderDigest="MD5")
    tpg["chap_password"] = "tpg-secret-xyz"
    doc["storage_objects"][0].pop("dev")
    doc["storage_objects"][2]["size"] = "big"
    doc["targets"][0]["wwn"] = "iqn.bad"
    doc["fabric_modules"][0]["discovery_mutual_password"] = "disc-secret-123"
    with pytest.raises(ConfigError) as info:
        lio.import_saveconfig(doc)
    assert info.value.errors == [
        "fabric_modules[0].discovery_mutual_password: the mutual CHAP secret must differ from the initiator's secret",
        "storage_objects[0].dev: missing required key",
        "storage_objects[0].dev: a fileio storage object needs a file path",
        "storage_objects[2].size: expected an integer, got 'big'",
        "storage_objects[2].size: a ramdisk needs a size",
        "targets[0].tpgs[0].chap_userid: a CHAP password needs a userid",
        "targets[0].tpgs[0].luns[4].storage_object: 'fileio/nope' is not a storage object",
        "targets[0].tpgs[0].luns[5].storage_object: 'fileio/disk0' is not of the form /backstores/<plugin>/<name>",
        "targets[0].tpgs[0].node_acls[0].mapped_luns[3].tpg_lun: the TPG has no LUN 42",
        "targets[0].tpgs[0].node_acls[0].node_wwn: 'client1' is not an iSCSI name (expected iqn.YYYY-MM.domain[:id], "
        "eui.<16 hex> or naa.<hex>)",
        "targets[0].tpgs[0].parameters.HeaderDigest: 'MD5' is not a comma-separated list of CRC32C, None",
        "targets[0].tpgs[0].portals[0].ip_address: 'storage.example.com' is not an IPv4 or IPv6 address",
        "targets[0].tpgs[0].portals[0].port: expected an integer, got '3260'",
        "targets[0].wwn: 'iqn.bad' is not of the form iqn.YYYY-MM.reversed.domain[:identifier]",
    ]


def test_missing_keys_and_wrong_types():
    doc = {
        "storage_objects": [{"plugin": "fileio"}, "x"],
        "targets": [{"fabric": "iscsi"}, {"wwn": "iqn.2026-11.org.example:x"}],
    }
    with pytest.raises(ConfigError) as info:
        lio.import_saveconfig(doc)
    errors = info.value.errors
    assert "storage_objects[0].name: missing required key" in errors
    assert "storage_objects[1]: expected an object, got 'x'" in errors
    assert "targets[0].wwn: missing required key" in errors
    assert "targets[1].fabric: missing required key" in errors


def test_untagged_tpgs_get_free_tags_and_old_auth_spelling():
    doc = {
        "storage_objects": [],
        "targets": [
            {
                "fabric": "iscsi",
                "wwn": "iqn.2026-11.org.example:t",
                "tpgs": [
                    {"tag": 1},
                    {
                        "node_acls": [
                            {
                                "node_wwn": "iqn.2026-11.org.example:i",
                                "userid": "u",
                                "password": "0123456789abcdef",
                            }
                        ]
                    },
                ],
            }
        ],
    }
    cfg, warnings = lio.import_saveconfig(doc)
    assert [t.tag for t in cfg.targets[0].tpgs] == [1, 2]
    assert cfg.targets[0].tpgs[1].node_acls[0].auth == AuthConfig("u", "0123456789abcdef")
    assert warnings == []


def test_size_not_a_block_multiple_is_rounded_down_with_a_warning():
    doc = {"storage_objects": [{"plugin": "ramdisk", "name": "r", "size": 1000}], "targets": []}
    cfg, warnings = lio.import_saveconfig(doc)
    assert cfg.storage_objects[0].size == 512
    assert warnings == [
        "storage_objects[0].size: 1000 is not a multiple of the block size; LIO uses 512 bytes"
    ]


def test_example_file_loads_cleanly():
    cfg, warnings = load_config(EXAMPLES / "lio-saveconfig.json")
    assert warnings == []
    assert cfg.storage_objects[0].dev == "/tmp/sanlab-demo/disk0.img"
    assert cfg.storage_objects[0].size == 1 << 30
    tpg = cfg.targets[0].tpgs[0]
    assert [(p.ip, p.port) for p in tpg.portals] == [("127.0.0.1", 3260), ("127.0.0.1", 3261)]
    assert tpg.attributes["generate_node_acls"] == 1


def test_export_then_import_is_identity_for_lio_representable_configs():
    cfg, _ = lio.import_saveconfig(copy.deepcopy(SAVECONFIG))
    exported = json.loads(json.dumps(lio.export_saveconfig(cfg)))
    again, warnings = lio.import_saveconfig(exported)
    assert again == cfg
    # nothing was skipped this time: only the remarks about what was kept remain
    assert len(warnings) == 2
    assert "emulate_frobnicate" in warnings[0] and "shorter than 12" in warnings[1]


def test_export_shape():
    cfg, _ = load_config(EXAMPLES / "native-chap.json")
    out = lio.export_saveconfig(cfg)
    assert out["fabric_modules"][0]["name"] == "iscsi"
    assert out["fabric_modules"][0]["discovery_enable_auth"] is True
    so = out["storage_objects"][1]
    assert so["plugin"] == "fileio" and so["attributes"]["block_size"] == 4096 and so["aio"] is False
    tpg = out["targets"][0]["tpgs"][0]
    assert out["targets"][0]["fabric"] == "iscsi"
    assert tpg["luns"][0]["storage_object"] == "/backstores/fileio/data0"
    assert tpg["parameters"]["TargetAlias"] == "sanlab CHAP demo"
    acl = tpg["node_acls"][0]
    assert acl["chap_userid"] == "client1" and acl["chap_mutual_userid"] == "target1"
    assert tpg["portals"][1] == {"ip_address": "::1", "port": 3260, "iser": False, "offload": False}


def test_native_and_lio_agree_on_the_tree():
    """A LIO file converted to native and read back is the same Config."""
    cfg, _ = lio.import_saveconfig(copy.deepcopy(SAVECONFIG))
    cfg.targets[0].tpgs[0].node_acls.pop()  # the short CHAP secret is an error in the native format
    assert native.parse_config(native.dump_config(cfg)) == cfg


def test_top_level_must_be_an_object():
    with pytest.raises(ConfigError):
        lio.import_saveconfig([])
