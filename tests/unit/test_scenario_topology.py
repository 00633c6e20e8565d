"""Topology extensions for the failover drills: the --target-kind override, per-portal ALUA groups, and HA
pairs (a replica node with its primary's identity and LU on a shared volume), through to the target configs
and the Ansible inventory."""

from pathlib import Path

import pytest
import yaml

from lab.inventory import ImageInfo, hosts_of, render_inventory
from lab.topology import TargetKind, TopologyError, load_topology, parse_topology
from lab.topology.target_config import saveconfig, target_config, tgt_conf

SCEN = Path(__file__).resolve().parents[2] / "scenarios"


def _doc(name: str) -> dict:
    return yaml.safe_load((SCEN / f"{name}.topology.yml").read_text())


def _errors(doc: dict) -> list[str]:
    with pytest.raises(TopologyError) as ei:
        parse_topology(doc)
    return ei.value.errors


def test_ha_pair_paths_identity_and_alua():
    topo = load_topology(SCEN / "node-failover.topology.yml")
    san1, san2 = topo.targets
    ini = topo.initiators[0]
    assert san2.replica_of == "san1" and san2.primary == "san1" and san1.primary == "san1"
    assert san2.iqn == san1.iqn and san2.luns == san1.luns
    # one path to each node of the pair
    assert topo.portal_addresses(ini) == [("198.19.51.10", 3260), ("198.19.52.11", 3260)]
    assert [t.name for t in topo.replica_set("san2")] == ["san1", "san2"]
    assert topo.shared_volume("san1") == topo.shared_volume("san2") == "san1-luns"
    c1, c2 = target_config(topo, san1), target_config(topo, san2)
    # same LU identity, distinct ports and port groups, each node's own state
    assert c1.storage_objects[0].wwn == c2.storage_objects[0].wwn == "node-failover-san1-disk0"
    assert [t.tag for t in c1.targets[0].tpgs] == [1] and [t.tag for t in c2.targets[0].tpgs] == [2]
    g1, g2 = c1.storage_objects[0].alua_groups[0], c2.storage_objects[0].alua_groups[0]
    assert (g1.name, g1.id, g1.state) == ("san-a", 1, "active_optimized")
    assert (g2.name, g2.id, g2.state) == ("san-b", 2, "standby")
    assert c2.targets[0].tpgs[0].luns[0].alua_tg_pt_gp == "san-b"
    # the replica accepts the initiator that names the primary
    assert [a.node_wwn for a in c2.targets[0].tpgs[0].node_acls] == [ini.iqn]
    lio = saveconfig(topo, san2)
    assert lio["storage_objects"][0]["alua_tpgs"][0]["tg_pt_gp_id"] == 2


def test_ha_pair_inventory_shares_a_labelled_volume(tmp_path):
    topo = load_topology(SCEN / "node-failover.topology.yml")
    images = {k: ImageInfo(tag=k) for k in ("target", "qemu-runner", "linux-debian12")}
    inv = render_inventory(topo, images, tmp_path)
    lab = inv["all"]["vars"]
    assert lab["lab_volumes"] == ["sanlab-node-failover-san1-luns"]
    vols = {c["node"]: c.get("volumes") for c in lab["lab_containers"] if c["node"] in ("san1", "san2")}
    assert vols == {n: ["sanlab-node-failover-san1-luns:/var/lib/sanlab/luns"] for n in ("san1", "san2")}
    deb = hosts_of(inv, "linux_initiators")["deb12"]
    assert [p["ip"] for p in deb["iscsi_portals"]] == ["198.19.51.10", "198.19.52.11"]
    # a topology without HA sets has no volumes
    plain = render_inventory(load_topology(SCEN / "path-failover.topology.yml"), images, tmp_path)
    assert plain["all"]["vars"]["lab_volumes"] == []


def test_tgt_replica_has_one_lu_identity():
    topo = load_topology(SCEN / "node-failover.topology.yml").with_target_kind(TargetKind.TGT)
    confs = [tgt_conf(topo, t) for t in topo.targets]
    assert confs[0] == confs[1]
    assert "scsi_sn node-failover-san1-disk0" in confs[0] and "initiator-name" in confs[0]


def test_per_portal_alua_on_one_node():
    topo = load_topology(SCEN / "alua-switch.topology.yml")
    cfg = target_config(topo, topo.targets[0])
    tpgs = cfg.targets[0].tpgs
    assert [(t.tag, [p.ip for p in t.portals]) for t in tpgs] == [
        (1, ["198.19.41.10"]),
        (2, ["198.19.42.10"]),
    ]
    assert [t.luns[0].alua_tg_pt_gp for t in tpgs] == ["san-a", "san-b"]
    assert {g.name: g.state for g in cfg.storage_objects[0].alua_groups} == {
        "san-a": "active_optimized",
        "san-b": "standby",
    }
    assert all(len(t.node_acls) == 1 for t in tpgs)


def test_without_alua_one_tpg_over_every_portal():
    topo = load_topology(SCEN / "path-failover.topology.yml")
    cfg = target_config(topo, topo.targets[0])
    assert [len(t.portals) for t in cfg.targets[0].tpgs] == [2]
    assert cfg.storage_objects[0].alua_groups == []
    assert topo.shared_volume("tgt1") is None


def test_target_kind_override_copies():
    topo = load_topology(SCEN / "alua-switch.topology.yml")
    tgt = topo.with_target_kind(TargetKind.TGT)
    assert [t.kind for t in tgt.targets] == [TargetKind.TGT] and tgt.targets[0].alua == {}
    assert topo.targets[0].kind is TargetKind.SANLAB and topo.targets[0].alua  # the original is untouched
    assert topo.with_target_kind(TargetKind.SANLAB).targets[0].alua == topo.targets[0].alua


def test_ha_and_alua_errors():
    doc = _doc("node-failover")
    doc["targets"][1]["luns"] = [{"index": 0, "size": "1M"}]
    doc["targets"][1]["iqn"] = "iqn.2026-11.org.example:other"
    doc["targets"][1]["portals"] = ["san-a"]
    doc["targets"][1]["alua"] = {"san-b": "standby"}
    doc["targets"][0]["alua"]["san-a"] = "sideways"
    assert _errors(doc) == [
        "targets[0].alua.san-a: 'sideways' is not one of ['active_optimized', 'active_non_optimized', "
        "'standby', 'unavailable', 'offline']",
    ]
    doc["targets"][0]["alua"]["san-a"] = "active_optimized"
    assert _errors(doc) == [
        "initiators[0].paths[1]: target 'san1' has no portal on network 'san-b'",
        "targets[1].alua: give every portal a state (missing: san-a)",
        "targets[1].alua.san-b: the node has no portal on network 'san-b'",
        "targets[1].iqn: a replica has its primary's IQN (iqn.2026-11.org.sanlab.lab:node-failover): remove it "
        "or make it equal",
        "targets[1].luns: a replica serves its primary's LUNs (same backing files): remove it",
        "targets[1].portals[0]: network 'san-a' already leads to another node of 'san1''s HA set",
    ]


def test_replica_references():
    doc = _doc("node-failover")
    doc["targets"][1]["replica_of"] = "nope"
    doc["initiators"][0]["target"] = "san2"
    assert _errors(doc) == [
        "initiators[0].lun: target 'san2' has no LUN 0",
        "initiators[0].paths[0]: target 'san2' has no portal on network 'san-a'",
        "targets[1].replica_of: no other target named 'nope'",
    ]
    doc = _doc("node-failover")
    doc["targets"][1]["kind"] = "tgt"
    del doc["targets"][1]["alua"]
    doc["initiators"][0]["target"] = "san2"
    assert _errors(doc) == [
        "initiators[0].target: 'san2' is a replica of 'san1': name the primary node",
        "targets[1].kind: a replica runs the same target as its primary (sanlab)",
    ]
    doc = _doc("alua-switch")
    doc["targets"][0]["kind"] = "tgt"
    assert _errors(doc) == ["targets[0].alua: tgtd has no ALUA target port groups (kind tgt)"]
