from pathlib import Path

import yaml

from lab.inventory import ImageInfo, hosts_of, images_needed, render_inventory, write_inventory
from lab.topology import load_topology
from lab.topology.target_config import saveconfig, tgt_conf
from target.config.lio import import_saveconfig

SCEN = Path(__file__).resolve().parents[2] / "scenarios"


def _images(topo):
    return {
        k: ImageInfo(
            tag=f"sanlab/{k}:t",
            kernel="/img/vmlinuz",
            initrd="/img/initrd",
            ssh_key="/img/id",
            vm_command=("qemu-system-x86_64", "-m", "768"),
            mounts=("/img:/img:ro",),
        )
        for k in images_needed(topo)
    }


def test_images_needed():
    assert images_needed(load_topology(SCEN / "quickstart.topology.yml")) == [
        "libiscsi",
        "qemu-runner",
        "target",
        "linux-debian12",
    ]
    assert images_needed(load_topology(SCEN / "compat-matrix.topology.yml"))[-3:] == [
        "linux-debian11",
        "linux-debian12",
        "linux-debian13",
    ]


def test_render_quickstart(tmp_path):
    topo = load_topology(SCEN / "quickstart.topology.yml")
    inv = render_inventory(topo, _images(topo), tmp_path)
    v = inv["all"]["vars"]
    assert [n["name"] for n in v["lab_networks"]] == [
        "sanlab-quickstart-san-a",
        "sanlab-quickstart-san-b",
        "sanlab-quickstart-mgmt",
    ]
    assert all(n["subnet"].startswith("198.18.") for n in v["lab_networks"])
    names = {c["name"]: c for c in v["lab_containers"]}
    assert set(names) == {
        "sanlab-quickstart-tgt1",
        "sanlab-quickstart-lib1",
        "sanlab-quickstart-deb12-runner",
    }
    runner = names["sanlab-quickstart-deb12-runner"]
    assert runner["command"][0] == "qemu-system-x86_64" and runner["volumes"] == ["/img:/img:ro"]
    assert {"name": "sanlab-quickstart-san-b", "ipv4_address": "198.18.2.101"} in runner["networks"]
    tgt = hosts_of(inv, "targets")["tgt1"]
    assert (
        tgt["ansible_connection"] == "community.docker.docker"
        and tgt["ansible_host"] == "sanlab-quickstart-tgt1"
    )
    assert tgt["iscsi_target_portals"] == [
        {"ip": "198.18.1.10", "port": 3260},
        {"ip": "198.18.2.10", "port": 3260},
    ]
    vm = hosts_of(inv, "linux_initiators")["deb12"]
    assert (vm["ansible_host"], vm["ansible_port"], vm["ansible_ssh_private_key_file"]) == (
        "198.18.0.101",
        2222,
        "/img/id",
    )
    assert vm["iscsi_multipath"] is True and vm["iscsi_chap"]["userid"] == "lab-initiator"
    lib = hosts_of(inv, "libiscsi_initiators")["lib1"]
    assert lib["ansible_connection"] == "community.docker.docker" and lib["iscsi_multipath"] is False
    assert set(hosts_of(inv, "initiators")) == {"lib1", "deb12"}
    assert set(hosts_of(inv, "vm_runners")) == {"deb12-runner"}
    out = write_inventory(inv, tmp_path / "ansible" / "inventory.yml")
    assert out.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(out.read_text()) == inv


def test_target_config_has_acl_with_chap_per_initiator():
    topo = load_topology(SCEN / "compat-matrix.topology.yml")
    doc = saveconfig(topo, topo.targets[0])
    cfg, warnings = import_saveconfig(doc)
    tpg = cfg.targets[0].tpgs[0]
    assert [a.node_wwn for a in tpg.node_acls] == [i.iqn for i in topo.initiators]
    assert all(a.auth.userid == "lab-initiator" for a in tpg.node_acls)
    assert tpg.attributes["generate_node_acls"] == 0 and warnings == []
    assert "incominguser lab-initiator" in tgt_conf(topo, topo.targets[0])
