"""What a topology asks of one target node, in the target's own formats.

`target_config` builds the target's config tree (`target.config.model.Config`): one fileio storage object per
LUN, one TPG with a portal on each SAN network the node serves, and a node ACL per initiator that uses it
(mapped LUN, CHAP when on). `saveconfig` exports it as LIO's saveconfig.json -- the file `sanlab target serve`
reads, and the same file targetcli would restore on a LIO host. `tgt_conf` says the same for tgtd
(tgt-admin's targets.conf syntax).
"""

from __future__ import annotations

from typing import Any

from lab.topology.model import TargetNode, Topology
from target.config.lio import export_saveconfig
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

#: where LUN backing files live on a target node (container or real host)
LUN_DIR = "/var/lib/sanlab/luns"
STATE_DIR = "/var/lib/sanlab/state"


def lun_path(node: TargetNode, lun_name: str) -> str:
    del node
    return f"{LUN_DIR}/{lun_name}.img"


def target_config(topo: Topology, node: TargetNode) -> Config:
    sos = [
        StorageObjectConfig(
            plugin="fileio",
            name=lun.name,
            size=lun.size,
            dev=lun_path(node, lun.name),
            wwn=f"{topo.name}-{node.name}-{lun.name}"[:64],
            write_back=False,
        )
        for lun in node.luns
    ]
    acls: list[AclConfig] = []
    for ini in topo.initiators:
        if ini.target != node.name:
            continue
        chap = topo.chap_for(ini)
        auth = AuthConfig()
        if chap is not None:
            auth = AuthConfig(chap.userid, chap.password, chap.mutual_userid, chap.mutual_password)
        acls.append(AclConfig(node_wwn=ini.iqn, auth=auth, mapped_luns=[MappedLunConfig(ini.lun, ini.lun)]))
    tpg = TpgConfig(
        tag=1,
        portals=[PortalConfig(topo.address(node.name, net), node.port) for net in node.portals],
        luns=[LunConfig(lun.index, f"fileio/{lun.name}") for lun in node.luns],
        node_acls=acls,
        attributes={
            "authentication": 1 if node.chap else 0,
            "generate_node_acls": 0,
            "demo_mode_write_protect": 0,
        },
    )
    return Config(
        storage_objects=sos,
        targets=[TargetConfig(wwn=node.iqn, tpgs=[tpg], alias=f"{topo.name}/{node.name}")],
        state_dir=STATE_DIR,
    )


def saveconfig(topo: Topology, node: TargetNode) -> dict[str, Any]:
    """LIO saveconfig.json for the node (what `sanlab target serve --config` and targetcli read)."""
    return export_saveconfig(target_config(topo, node))


def tgt_conf(topo: Topology, node: TargetNode) -> str:
    """tgt-admin targets.conf for a `kind: tgt` node: same LUNs, ACLs and CHAP as the sanlab config."""
    lines = [f"<target {node.iqn}>"]
    for lun in node.luns:
        lines.append(f"    <backing-store {lun_path(node, lun.name)}>")
        lines.append(f"        lun {lun.index + 1}")  # tgt reserves LUN 0 for its controller
        lines.append("    </backing-store>")
    for ini in topo.initiators:
        if ini.target == node.name:
            lines.append(f"    initiator-name {ini.iqn}")
    if node.chap and topo.chap is not None:
        lines.append(f"    incominguser {topo.chap.userid} {topo.chap.password}")
        if topo.chap.mutual:
            lines.append(f"    outgoinguser {topo.chap.mutual_userid} {topo.chap.mutual_password}")
    lines.append("</target>")
    return "\n".join(lines) + "\n"
