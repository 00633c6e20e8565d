"""Node checks after bring-up (pytest-testinfra). `sanlab up` runs this file once per node with
--hosts=docker://CONTAINER (containers) or ssh://root@ADDR:PORT (VMs), and SANLAB_NODE_ROLE / SANLAB_NODE_FACTS
(JSON: iqn, portals, ...) in the environment. The same checks apply to real hosts."""

import json
import os

import pytest

ROLE = os.environ.get("SANLAB_NODE_ROLE", "")
FACTS = json.loads(os.environ.get("SANLAB_NODE_FACTS", "{}"))


@pytest.mark.skipif(ROLE != "target", reason="target nodes only")
def test_target_listens_on_every_portal(host):
    for p in FACTS["portals"]:
        assert host.socket(f"tcp://{p['ip']}:{p['port']}").is_listening, p


@pytest.mark.skipif(ROLE != "target", reason="target nodes only")
def test_target_process_and_luns(host):
    assert (
        host.process.filter(comm="sanlab")
        or host.process.filter(comm="tgtd")
        or host.run("pgrep -f 'target serve'").rc == 0
    )
    for lun in FACTS["luns"]:
        f = host.file(f"{FACTS['lun_dir']}/{lun['name']}.img")
        assert f.exists and f.size == lun["size"]


@pytest.mark.skipif(ROLE != "linux", reason="Linux initiators only")
def test_linux_initiator_name_and_sessions(host):
    assert FACTS["iqn"] in host.file("/etc/iscsi/initiatorname.iscsi").content_string
    sessions = host.run("iscsiadm -m session").stdout
    assert sessions.count(FACTS["target_iqn"]) == len(FACTS["portals"])


@pytest.mark.skipif(ROLE != "linux" or not FACTS.get("multipath"), reason="multipath hosts only")
def test_linux_multipath_map(host):
    # every path is up: "ready" (an active ALUA port) or "ghost" (a standby port of an HA pair's standby node)
    out = host.run("multipath -ll").stdout
    assert out.count("ready running") + out.count("ghost running") >= len(FACTS["portals"])


@pytest.mark.skipif(ROLE != "libiscsi", reason="libiscsi initiators only")
def test_libiscsi_tools(host):
    for tool in ("iscsi-ls", "iscsi-inq", "iscsi-readcapacity16", "python3"):
        assert host.exists(tool), tool
    assert host.file("/etc/sanlab/initiator.env").contains(FACTS["iqn"])


@pytest.mark.skipif(ROLE != "qemu", reason="qemu-runner initiators only")
def test_qemu_tools(host):
    for tool in ("qemu-img", "qemu-io", "qemu-system-x86_64"):
        assert host.exists(tool), tool
