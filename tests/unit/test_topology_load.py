from pathlib import Path

import pytest
import yaml

from lab.topology import InitiatorKind, TopologyError, load_topology, parse_topology

SCEN = Path(__file__).resolve().parents[2] / "scenarios"


def _valid() -> dict:
    return yaml.safe_load((SCEN / "quickstart.topology.yml").read_text())


def _errors(doc: dict) -> list[str]:
    with pytest.raises(TopologyError) as ei:
        parse_topology(doc)
    return ei.value.errors


def test_examples_are_valid():
    q = load_topology(SCEN / "quickstart.topology.yml")
    c = load_topology(SCEN / "compat-matrix.topology.yml")
    assert [i.kind for i in q.initiators] == [InitiatorKind.LIBISCSI, InitiatorKind.LINUX_VM]
    assert {i.kind for i in c.initiators} == set(InitiatorKind)
    assert q.portal_addresses(q.initiators[1]) == [("198.18.1.10", 3260), ("198.18.2.10", 3260)]
    assert q.address("lib1", "mgmt") == "198.18.0.100"


def test_subnet_outside_lab_range_and_overlap_reported_with_paths():
    doc = _valid()
    doc["networks"][0]["subnet"] = "10.0.0.0/24"
    doc["networks"][1]["subnet"] = "198.18.0.0/23"
    assert _errors(doc) == [
        "networks[0].subnet: 10.0.0.0/24 is outside the lab range 198.18.0.0/15 (RFC 2544)",
        "networks[2].subnet: 198.18.0.0/24 overlaps networks[1] (198.18.0.0/23)",
    ]


def test_every_error_at_once_in_document_order():
    doc = _valid()
    doc["initiators"][1]["release"] = "debian99"
    doc["initiators"][0]["paths"] = ["san-z"]
    doc["targets"][0]["colour"] = "red"
    del doc["initiators"][0]["target"]
    assert _errors(doc) == [
        "initiators[0].target: missing required key",
        "initiators[1].release: 'debian99' is not one of ['debian11', 'debian12', 'debian13']",
        "targets[0].colour: unknown key",
    ]


def test_semantic_errors():
    doc = _valid()
    doc["initiators"][0]["paths"] = ["mgmt"]
    doc["initiators"][1]["target"] = "nope"
    del doc["initiators"][1]["release"]
    doc["initiators"].append(
        {"name": "lib1", "kind": "ipxe", "target": "tgt1", "paths": ["san-a", "san-b"], "release": "debian12"}
    )
    doc["chap"]["password"] = "short"
    assert _errors(doc) == [
        "chap.password: CHAP secret is shorter than 12 characters (RFC 7143 12.1.3)",
        "initiators[0].paths[0]: network 'mgmt' is a mgmt network, not a SAN (san-a, san-b)",
        "initiators[1].release: a linux-vm needs a release (debian11, debian12 or debian13)",
        "initiators[1].target: no target named 'nope'",
        "initiators[2].name: duplicate node name 'lib1' (first: initiators[0])",
        "initiators[2].paths: a ipxe initiator uses one path (multipath is for linux-vm)",
        "initiators[2].release: only linux-vm initiators have a release (this one is ipxe)",
    ]


def test_missing_portal_lun_and_chap():
    doc = _valid()
    doc["targets"][0]["portals"] = ["san-a"]
    doc["initiators"][0]["lun"] = 3
    del doc["chap"]
    assert _errors(doc) == [
        "initiators[0].lun: target 'tgt1' has no LUN 3",
        "initiators[1].paths[1]: target 'tgt1' has no portal on network 'san-b'",
        "targets[0].chap: CHAP is on (the default) but the topology has no chap credentials",
    ]


def test_vm_needs_mgmt_and_subnet_size():
    doc = _valid()
    doc["networks"] = [
        {"name": "san-a", "role": "san-a", "subnet": "198.18.1.0/28"},
        {"name": "san-b", "role": "san-b", "subnet": "198.18.2.0/24"},
    ]
    errs = _errors(doc)
    assert "initiators[1]: a linux-vm needs a mgmt network (Ansible reaches the VM over SSH there)" in errs
    assert (
        "networks[0].subnet: 198.18.1.0/28 is too small: the address plan needs host .102 (use /24 or larger)"
        in errs
    )


def test_not_a_mapping_and_bad_yaml(tmp_path):
    assert _errors([]) == ["(top level): a topology is a mapping (name, networks, targets, initiators)"]  # type: ignore[arg-type]
    f = tmp_path / "t.yml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(TopologyError) as ei:
        load_topology(f)
    assert ei.value.errors[0].startswith("(file): not valid YAML") and str(f) in str(ei.value)
