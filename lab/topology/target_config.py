"""What a topology asks of one target node, in the target's own formats.

`target_config` builds the target's config tree (`target.config.model.Config`): one fileio storage object per
LUN, one TPG with a portal on each SAN network the node serves, and a node ACL per initiator that uses it
(mapped LUN, CHAP when on). A node with per-portal ALUA states (`TargetNode.alua`) gets one TPG per portal
instead, each LU's port in a target port group named after the network (group id and TPG tag: the network's
position in the topology + 1, so the nodes of an HA set never reuse one). A replica (`replica_of`) exports its
primary's LUs under the primary's identity (IQN, unit serial) so an initiator's multipath sees one LU behind
both nodes. `saveconfig` exports it as LIO's saveconfig.json -- the file `sanlab target serve`
reads, and the same file targetcli would restore on a LIO host. `tgt_conf` says the same for tgtd
(tgt-admin's targets.conf syntax).
"""

from __future__ import annotations

from typing import Any

from lab.topology.model import TargetNode, Topology
from target.config.lio import export_saveconfig
from target.config.model import (
    AclConfig,
    AluaGroupConfig,
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


def lu_serial(topo: Topology, node: TargetNode, lun_name: str) -> str:
    """The LU's unit serial (VPD 80h/83h): the same on every node of an HA set."""
    return f"{topo.name}-{node.primary}-{lun_name}"[:64]


def port_group_id(topo: Topology, network: str) -> int:
    """ALUA target port group id (and TPG tag) of a node's port on `network` (per-portal ALUA only)."""
    return [n.name for n in topo.networks].index(network) + 1


def target_config(topo: Topology, node: TargetNode) -> Config:
    alua = node.alua
    sos = [
        StorageObjectConfig(
            plugin="fileio",
            name=lun.name,
            size=lun.size,
            dev=lun_path(node, lun.name),
            wwn=lu_serial(topo, node, lun.name),
            write_back=False,
            alua_groups=[
                AluaGroupConfig(name=net, id=port_group_id(topo, net), state=state)
                for net, state in alua.items()
            ],
        )
        for lun in node.luns
    ]
    acls: list[AclConfig] = []
    for ini in topo.initiators:
        if ini.target != node.primary:
            continue
        chap = topo.chap_for(ini)
        auth = AuthConfig()
        if chap is not None:
            auth = AuthConfig(chap.userid, chap.password, chap.mutual_userid, chap.mutual_password)
        acls.append(AclConfig(node_wwn=ini.iqn, auth=auth, mapped_luns=[MappedLunConfig(ini.lun, ini.lun)]))
    attributes: dict[str, int | str] = {
        "authentication": 1 if node.chap else 0,
        "generate_node_acls": 0,
        "demo_mode_write_protect": 0,
    }
    # one TPG over every portal, or (per-portal ALUA) one TPG per portal, its LUNs in that network's group
    groups: list[tuple[int, list[str], str]] = (
        [(port_group_id(topo, net), [net], net) for net in node.portals if net in alua]
        if alua
        else [(1, list(node.portals), "default_tg_pt_gp")]
    )
    tpgs = [
        TpgConfig(
            tag=tag,
            portals=[PortalConfig(topo.address(node.name, net), node.port) for net in nets],
            luns=[LunConfig(lun.index, f"fileio/{lun.name}", alua_tg_pt_gp=group) for lun in node.luns],
            node_acls=[
                AclConfig(a.node_wwn, a.auth, [MappedLunConfig(m.index, m.tpg_lun) for m in a.mapped_luns])
                for a in acls
            ],
            attributes=dict(attributes),
        )
        for tag, nets, group in groups
    ]
    return Config(
        storage_objects=sos,
        targets=[TargetConfig(wwn=node.iqn, tpgs=tpgs, alias=f"{topo.name}/{node.name}")],
        state_dir=STATE_DIR,
    )


def saveconfig(topo: Topology, node: TargetNode) -> dict[str, Any]:
    """LIO saveconfig.json for the node (what `sanlab target serve --config` and targetcli read)."""
    return export_saveconfig(target_config(topo, node))


def tgt_conf(topo: Topology, node: TargetNode) -> str:
    """tgt-admin targets.conf for a `kind: tgt` node: same LUNs, ACLs and CHAP as the sanlab config."""
    replicated = len(topo.replica_set(node.name)) > 1
    lines = [f"<target {node.iqn}>"]
    for lun in node.luns:
        lines.append(f"    <backing-store {lun_path(node, lun.name)}>")
        lines.append(f"        lun {lun.index + 1}")  # tgt reserves LUN 0 for its controller
        if replicated:  # one LU identity on every node of the HA set (tgt: scsi_id max 24, scsi_sn max 36)
            serial = lu_serial(topo, node, lun.name)
            lines.append(f"        scsi_id {serial[-24:]}")
            lines.append(f"        scsi_sn {serial[-32:]}")
        lines.append("    </backing-store>")
    for ini in topo.initiators:
        if ini.target == node.primary:
            lines.append(f"    initiator-name {ini.iqn}")
    if node.chap and topo.chap is not None:
        lines.append(f"    incominguser {topo.chap.userid} {topo.chap.password}")
        if topo.chap.mutual:
            lines.append(f"    outgoinguser {topo.chap.mutual_userid} {topo.chap.mutual_password}")
    lines.append("</target>")
    return "\n".join(lines) + "\n"
