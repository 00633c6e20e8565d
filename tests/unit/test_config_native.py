"""Native configuration format: schema + semantic checks (every error, with its JSON path), round trip,
versioning."""

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target.config import native
from target.config.errors import ConfigError
from target.config.load import load_config
from target.config.model import (
    AclConfig,
    AuthConfig,
    Config,
    LunConfig,
    MappedLunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

VALID = {
    "sanlab_config_version": 1,
    "storage_objects": [
        {"plugin": "fileio", "name": "disk0", "dev": "/tmp/disk0.img", "size": "1G"},
        {"plugin": "ramdisk", "name": "rd0", "size": 1048576, "block_size": 4096},
        {"plugin": "block", "name": "blk0", "dev": "/dev/loop7"},
    ],
    "targets": [
        {
            "wwn": "iqn.2026-11.org.example:t1",
            "tpgs": [
                {
                    "tag": 1,
                    "portals": [{"ip": "127.0.0.1", "port": 3260}, {"ip": "::1"}],
                    "luns": [
                        {"index": 0, "storage_object": "fileio/disk0"},
                        {"index": 1, "storage_object": "ramdisk/rd0"},
                    ],
                    "node_acls": [
                        {
                            "node_wwn": "iqn.1994-05.com.redhat:client",
                            "auth": {"userid": "u1", "password": "0123456789ab"},
                            "mapped_luns": [{"index": 0, "tpg_lun": 1, "write_protect": True}],
                        }
                    ],
                    "parameters": {"MaxRecvDataSegmentLength": 65536, "InitialR2T": "No"},
                }
            ],
        }
    ],
}


def errors_of(doc) -> list[str]:
    with pytest.raises(ConfigError) as info:
        native.parse_config(doc)
    return info.value.errors


def test_valid_document_builds_the_tree():
    cfg = native.parse_config(VALID)
    assert [so.path for so in cfg.storage_objects] == ["fileio/disk0", "ramdisk/rd0", "block/blk0"]
    assert cfg.storage_objects[0].size == 1 << 30
    assert cfg.storage_objects[1].block_size == 4096
    tpg = cfg.targets[0].tpgs[0]
    assert tpg.portals == [PortalConfig("127.0.0.1", 3260), PortalConfig("::1", 3260)]
    assert tpg.luns[1] == LunConfig(1, "ramdisk/rd0", "default_tg_pt_gp")
    assert tpg.node_acls[0].mapped_luns == [MappedLunConfig(0, 1, True)]
    assert tpg.node_acls[0].auth == AuthConfig("u1", "0123456789ab")
    assert tpg.parameters == {"MaxRecvDataSegmentLength": "65536", "InitialR2T": "No"}
    assert cfg.state_dir == "/var/lib/sanlab"


def test_every_error_is_reported_with_its_path():
    doc = copy.deepcopy(VALID)
    tpg = doc["targets"][0]["tpgs"][0]
    tpg["luns"].append({"index": 1, "storage_object": "fileio/nope"})
    tpg["portals"].append({"ip": "127.0.0.1", "port": 3260})
    tpg["portals"].append({"ip": "localhost", "port": 70000})
    tpg["node_acls"][0]["mapped_luns"].append({"index": 0, "tpg_lun": 9})
    tpg["node_acls"][0]["auth"]["password"] = "short"
    tpg["parameters"]["MaxBurstLenght"] = "1"
    tpg["colour"] = "blue"
    doc["storage_objects"][1]["size"] = 1000
    doc["storage_objects"][0]["block_size"] = 1024
    doc["targets"].append({"wwn": "iqn.2026-11.org.example:T2"})
    assert errors_of(doc) == [
        "storage_objects[0].block_size: 1024 is not one of [512, 4096]",
        "storage_objects[1].size: 1000 is not a multiple of the block size 4096",
        "targets[0].tpgs[0].colour: unknown key",
        "targets[0].tpgs[0].luns[2].index: duplicate LUN index 1",
        "targets[0].tpgs[0].luns[2].storage_object: 'fileio/nope' is not a storage object",
        "targets[0].tpgs[0].node_acls[0].auth.password: CHAP secret is shorter than 12 characters (RFC 7143 12.1.3)",
        "targets[0].tpgs[0].node_acls[0].mapped_luns[1].index: duplicate mapped LUN 0",
        "targets[0].tpgs[0].node_acls[0].mapped_luns[1].tpg_lun: the TPG has no LUN 9",
        "targets[0].tpgs[0].parameters.MaxBurstLenght: 'MaxBurstLenght' is not an iSCSI key a target can configure"
        " (did you mean 'MaxBurstLength'?)",
        "targets[0].tpgs[0].portals[2]: duplicate portal 127.0.0.1:3260",
        "targets[0].tpgs[0].portals[3].ip: 'localhost' is not an IPv4 or IPv6 address",
        "targets[0].tpgs[0].portals[3].port: 70000 is greater than the maximum of 65535",
        "targets[1].wwn: 'iqn.2026-11.org.example:T2' has upper-case letters; iSCSI names are lower case "
        "(RFC 3722): 'iqn.2026-11.org.example:t2'",
    ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("sanlab_config_version"), "sanlab_config_version: missing required key"),
        (lambda d: d["targets"][0].pop("wwn"), "targets[0].wwn: missing required key"),
        (
            lambda d: d["storage_objects"][0].update(plugin="pscsi"),
            "storage_objects[0].plugin: 'pscsi' is not one of",
        ),
        (
            lambda d: d["storage_objects"][0].update(size="lots"),
            "storage_objects[0].size: 'lots' is not a size",
        ),
        (
            lambda d: d["storage_objects"][0].update(dev="disk.img"),
            "storage_objects[0].dev: 'disk.img' is not an absolute path",
        ),
        (
            lambda d: d["storage_objects"][0].pop("dev"),
            "storage_objects[0].dev: a fileio storage object needs a file path",
        ),
        (
            lambda d: d["storage_objects"].append(dict(d["storage_objects"][0])),
            "storage_objects[3].name: duplicate storage object 'fileio/disk0'",
        ),
        (lambda d: d["storage_objects"][1].update(size=0), "storage_objects[1].size: a ramdisk needs a size"),
        (
            lambda d: d["storage_objects"][2].update(size=4096),
            "storage_objects[2].size: a block storage object takes its size from the device",
        ),
        (
            lambda d: d["storage_objects"][0].update(wwn="has space"),
            "storage_objects[0].wwn: 'has space': a unit serial",
        ),
        (
            lambda d: d["storage_objects"][0].update(physical_block_size=1000),
            "storage_objects[0].physical_block_size: 1000 is not a power of two",
        ),
        (
            lambda d: d["storage_objects"][0].update(attributes={"emulate_tpu": 2}),
            "storage_objects[0].attributes.emulate_tpu: 2 is not in the range 0-1",
        ),
        (
            lambda d: d["storage_objects"][0].update(attributes={"block_size": 4096}),
            "storage_objects[0].attributes.block_size: set block_size on the storage object",
        ),
        (
            lambda d: d["targets"].append(dict(d["targets"][0])),
            "targets[1].wwn: duplicate target 'iqn.2026-11.org.example:t1'",
        ),
        (lambda d: d["targets"][0]["tpgs"].append({"tag": 1}), "targets[0].tpgs[1].tag: duplicate TPG tag 1"),
        (
            lambda d: d["targets"][0]["tpgs"].append({"tag": 2, "portals": [{"ip": "::1", "port": 3260}]}),
            "targets[0].tpgs[1].portals[0]: portal [::1]:3260 is already in TPG 1 of this target",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["luns"].append(
                {"index": 20000, "storage_object": "fileio/disk0"}
            ),
            "targets[0].tpgs[0].luns[2].index: 20000 is greater than the maximum of 16383",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["luns"].append({"index": 5, "storage_object": "disk0"}),
            "targets[0].tpgs[0].luns[2].storage_object: 'disk0' is not a storage object path",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["node_acls"].append(
                dict(d["targets"][0]["tpgs"][0]["node_acls"][0])
            ),
            "targets[0].tpgs[0].node_acls[1].node_wwn: duplicate ACL for 'iqn.1994-05.com.redhat:client'",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["node_acls"][0]["auth"].pop("userid"),
            "targets[0].tpgs[0].node_acls[0].auth.userid: a CHAP password needs a userid",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["node_acls"][0]["auth"].update(
                mutual_userid="t", mutual_password="0123456789ab"
            ),
            "targets[0].tpgs[0].node_acls[0].auth.mutual_password: the mutual CHAP secret must differ",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["node_acls"][0]["auth"].update(mutual_userid="t"),
            "targets[0].tpgs[0].node_acls[0].auth.mutual_password: a mutual CHAP userid needs a password",
        ),
        (
            lambda d: (
                d["targets"][0]["tpgs"][0]["auth"]
                if d["targets"][0]["tpgs"][0].update(
                    auth={"mutual_userid": "m", "mutual_password": "0123456789abc"}
                )
                else None
            ),
            "targets[0].tpgs[0].auth.mutual_userid: mutual CHAP needs one-way CHAP",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["parameters"].update(HeaderDigest="MD5"),
            "targets[0].tpgs[0].parameters.HeaderDigest: 'MD5' is not a comma-separated list of CRC32C, None",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["parameters"].update(ErrorRecoveryLevel="3"),
            "targets[0].tpgs[0].parameters.ErrorRecoveryLevel: '3' is not in the range 0-2",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["parameters"].update(ImmediateData="yes"),
            "targets[0].tpgs[0].parameters.ImmediateData: 'yes' is not Yes or No",
        ),
        (
            lambda d: d["targets"][0]["tpgs"][0]["parameters"].update(
                FirstBurstLength="65536", MaxBurstLength="8192"
            ),
            "targets[0].tpgs[0].parameters.FirstBurstLength: 65536 exceeds MaxBurstLength 8192",
        ),
        (
            lambda d: (
                d["targets"][0]["tpgs"][0]["attributes"]
                if d["targets"][0]["tpgs"][0].update(attributes={"default_erl": 3})
                else None
            ),
            "targets[0].tpgs[0].attributes.default_erl: 3 is not in the range 0-2",
        ),
        (
            lambda d: d.update(discovery_auth={"enforce": True}),
            "discovery_auth.enforce: discovery authentication is enforced but no userid is set",
        ),
        (lambda d: d.update(state_dir="relative/dir"), "state_dir: 'relative/dir' is not an absolute path"),
        (
            lambda d: d.update(settings={"nopin_interval_s": -1}),
            "settings.nopin_interval_s: -1 is not in the range 0-3600",
        ),
        (lambda d: d.update(targets="nope"), "targets: 'nope' is not of type 'array'"),
    ],
)
def test_single_errors(mutate, expected):
    doc = copy.deepcopy(VALID)
    mutate(doc)
    errors = errors_of(doc)
    assert any(e.startswith(expected) for e in errors), errors


def test_schema_error_suppresses_the_semantic_echo():
    doc = copy.deepcopy(VALID)
    doc["targets"][0]["tpgs"][0]["portals"][0]["port"] = 0
    # the schema says it once; the semantic check of the same field is not repeated
    assert errors_of(doc) == ["targets[0].tpgs[0].portals[0].port: 0 is less than the minimum of 1"]


def test_unknown_attributes_and_settings_are_warnings():
    doc = copy.deepcopy(VALID)
    doc["storage_objects"][0]["attributes"] = {"emulate_frobnicate": 1}
    doc["settings"] = {"future_knob": 3}
    _, warnings = native.parse_config_with_warnings(doc)
    assert warnings == [
        "storage_objects[0].attributes.emulate_frobnicate: unknown storage object attribute (kept, but nothing uses it)",
        "settings.future_knob: unknown setting (kept, but nothing uses it)",
    ]


def test_newer_version_is_refused():
    doc = dict(VALID, sanlab_config_version=2)
    assert errors_of(doc) == [
        "sanlab_config_version: version 2 is newer than this sanlab understands (it reads versions up to 1); "
        "upgrade sanlab to use this file"
    ]


def test_version_zero_is_not_supported():
    assert errors_of(dict(VALID, sanlab_config_version=0))[0].startswith("sanlab_config_version: version 0")


def test_older_versions_are_migrated(monkeypatch):
    """A version-N document runs through MIGRATIONS[N], MIGRATIONS[N+1], ... up to CURRENT_VERSION."""
    monkeypatch.setattr(native, "CURRENT_VERSION", 3)
    seen = []

    def step(doc):
        seen.append(doc[native.VERSION_KEY])
        return {**doc, "storage_objects": [*doc["storage_objects"], {"step": doc[native.VERSION_KEY]}]}

    monkeypatch.setitem(native.MIGRATIONS, 1, step)
    monkeypatch.setitem(native.MIGRATIONS, 2, step)
    doc = copy.deepcopy(VALID)
    migrated = native._migrate(doc)
    assert seen == [1, 2]
    assert migrated[native.VERSION_KEY] == 3
    assert migrated["storage_objects"][-2:] == [{"step": 1}, {"step": 2}]
    assert doc == VALID  # the caller's document is not modified


def test_unknown_plugin_is_one_error():
    doc = copy.deepcopy(VALID)
    doc["storage_objects"][1]["plugin"] = "rbd"
    doc["targets"][0]["tpgs"][0]["luns"].pop()  # the LUN of ramdisk/rd0 and its mapping
    doc["targets"][0]["tpgs"][0]["node_acls"][0]["mapped_luns"].clear()
    assert errors_of(doc) == ["storage_objects[1].plugin: 'rbd' is not one of ['fileio', 'block', 'ramdisk']"]


def test_top_level_must_be_an_object():
    assert errors_of([1, 2]) == ["(top level): a configuration is a JSON object"]


def test_parse_size():
    assert native.parse_size("1G") == 1 << 30
    assert native.parse_size("512MiB") == 512 << 20
    assert native.parse_size("4096B") == 4096
    assert native.parse_size("10 K") == 10240
    assert native.parse_size(7) == 7
    assert native.parse_size("1.5G") is None
    assert native.parse_size(True) is None
    assert native.parse_size(-1) is None


def test_round_trip_of_the_example():
    cfg, warnings = load_config(EXAMPLES / "native-chap.json")
    assert warnings == []
    dumped = native.dump_config(cfg)
    assert native.parse_config(json.loads(json.dumps(dumped))) == cfg
    assert dumped["sanlab_config_version"] == native.CURRENT_VERSION


def test_dump_shape():
    cfg = native.parse_config(VALID)
    d = native.dump_config(cfg)
    assert d["storage_objects"][0] == {
        "plugin": "fileio",
        "name": "disk0",
        "size": 1 << 30,
        "dev": "/tmp/disk0.img",
        "write_back": True,
        "block_size": 512,
        "readonly": False,
        "thin": True,
        "attributes": {},
    }
    assert d["targets"][0]["tpgs"][0]["node_acls"][0]["auth"] == {"userid": "u1", "password": "0123456789ab"}
    assert d["discovery_auth"] == {"enforce": False}


# ------------------------------------------------------------------------------ hypothesis round trip

_so_names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
_secret = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=12, max_size=20)
_iqn = st.from_regex(r"iqn\.20[0-9]{2}-(0[1-9]|1[0-2])\.org\.example:[a-z0-9.-]{1,12}", fullmatch=True)


@st.composite
def _auth(draw):
    if not draw(st.booleans()):
        return AuthConfig()
    password = draw(_secret)
    if draw(st.booleans()):
        mutual = draw(_secret.filter(lambda s: s != password))
        return AuthConfig(draw(_so_names), password, draw(_so_names), mutual)
    return AuthConfig(draw(_so_names), password)


@st.composite
def configs(draw):
    sos = []
    for name in draw(st.lists(_so_names, max_size=4, unique=True)):
        plugin = draw(st.sampled_from(["fileio", "block", "ramdisk"]))
        bs = draw(st.sampled_from([512, 4096]))
        size = draw(st.integers(1, 1 << 20)) * bs if plugin != "block" else 0
        if plugin == "fileio" and draw(st.booleans()):
            size = 0
        sos.append(
            StorageObjectConfig(
                plugin=plugin,
                name=name,
                size=size,
                dev="" if plugin == "ramdisk" else f"/srv/{name}",
                wwn=draw(st.sampled_from(["", f"sn-{name}"])),
                write_back=draw(st.booleans()),
                block_size=bs,
                physical_block_size=draw(st.sampled_from([0, bs, 4096 if bs == 512 else 0])),
                readonly=draw(st.booleans()),
                thin=draw(st.booleans()),
                attributes=draw(
                    st.dictionaries(
                        st.sampled_from(["emulate_tpu", "emulate_tpws", "is_nonrot"]), st.integers(0, 1)
                    )
                ),
            )
        )
    targets = []
    port = 3260
    for wwn in draw(st.lists(_iqn, max_size=2, unique=True)):
        tpgs = []
        for tag in draw(st.lists(st.integers(1, 65535), max_size=2, unique=True)):
            port += 1
            luns = (
                [
                    LunConfig(index=i, storage_object=so.path)
                    for i, so in enumerate(draw(st.lists(st.sampled_from(sos), max_size=3)))
                    if sos
                ]
                if sos
                else []
            )
            acls = [
                AclConfig(
                    node_wwn=iwwn,
                    auth=draw(_auth()),
                    mapped_luns=[
                        MappedLunConfig(index=j, tpg_lun=lun.index, write_protect=draw(st.booleans()))
                        for j, lun in enumerate(luns)
                    ],
                )
                for iwwn in draw(st.lists(_iqn, max_size=2, unique=True))
            ]
            tpgs.append(
                TpgConfig(
                    tag=tag,
                    enable=draw(st.booleans()),
                    portals=[PortalConfig(draw(st.sampled_from(["127.0.0.1", "::1", "0.0.0.0"])), port)],
                    luns=luns,
                    node_acls=acls,
                    attributes=draw(
                        st.dictionaries(
                            st.sampled_from(["generate_node_acls", "authentication"]), st.integers(0, 1)
                        )
                    ),
                    parameters=draw(
                        st.dictionaries(
                            st.sampled_from(["InitialR2T", "ImmediateData"]), st.sampled_from(["Yes", "No"])
                        )
                    ),
                    auth=draw(_auth()),
                )
            )
        targets.append(TargetConfig(wwn=wwn, tpgs=tpgs, alias=draw(st.sampled_from(["", "lab target"]))))
    disc = draw(_auth())
    return Config(
        storage_objects=sos,
        targets=targets,
        discovery_auth=disc,
        discovery_auth_enforced=disc.enabled and draw(st.booleans()),
        state_dir=draw(st.sampled_from(["/var/lib/sanlab", "/tmp/state"])),
        settings=draw(
            st.dictionaries(st.sampled_from(["nopin_interval_s", "max_sessions"]), st.integers(1, 100))
        ),
    )


@settings(max_examples=60, deadline=None)
@given(configs())
def test_hypothesis_round_trip(cfg):
    doc = json.loads(json.dumps(native.dump_config(cfg)))
    assert native.parse_config(doc) == cfg


def test_fractional_settings():
    doc = dict(copy.deepcopy(VALID), settings={"shutdown_grace_s": 0.5, "nopin_interval_s": 10.0})
    cfg = native.parse_config(doc)
    assert cfg.settings == {"shutdown_grace_s": "0.5", "nopin_interval_s": 10}
    assert float(cfg.settings["shutdown_grace_s"]) == 0.5
    assert native.parse_config(native.dump_config(cfg)) == cfg
    doc["settings"] = {"shutdown_grace_s": "soon", "max_sessions": 1.5}
    assert errors_of(doc) == [
        "settings.max_sessions: '1.5' is not an integer",
        "settings.shutdown_grace_s: 'soon' is not a number",
    ]
