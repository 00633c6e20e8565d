"""SendTargets (RFC 7143 Appendix C, 13.3): which targets and portals an initiator is told about.

    SendTargets=All          (discovery session) every target the initiator may log in to
    SendTargets=<iqn...>     that target only (if the initiator may see it)
    SendTargets=             (normal session) the session's own target

The answer lists, per target, "TargetName=<name>" (then "TargetAlias=<alias>" only when asked for: LIO
never sends it there and libiscsi's SendTargets parser rejects the whole answer when it sees it) and one
"TargetAddress=<address>:<port>,<tpgt>" per portal of every enabled TPG the initiator may see: with demo mode
off (generate_node_acls=0) only TPGs holding an ACL for this initiator. IPv6 addresses are bracketed (C.2).
A wildcard portal (0.0.0.0 / ::) is reported as the address the discovery connection arrived on.
Splitting a long answer over several Text Responses is the Text exchange's job
(`target.iscsi.negotiation.TextNegotiator`).
"""

from __future__ import annotations

import ipaddress

from target.config.model import Config, PortalConfig, TargetConfig, TpgConfig

WILDCARDS = frozenset({"0.0.0.0", "::", ""})
MAX_SENDTARGETS_PAIRS = 4096  # bound on the answer's size, whatever the configuration holds


def attr_int(attributes: dict[str, int | str], name: str, default: int) -> int:
    """An int-valued LIO attribute that may have been stored as a string."""
    value = attributes.get(name, default)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else default


def format_address(ip: str, port: int) -> str:
    """ "<ip>:<port>", IPv6 in brackets (RFC 7143 13.8, 3986)."""
    try:
        addr = ipaddress.ip_address(ip.strip("[]").split("%")[0])
    except ValueError:
        return f"{ip}:{port}"  # a DNS name
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return f"{addr.ipv4_mapped}:{port}"
        return f"[{ip.strip('[]')}]:{port}"
    return f"{addr}:{port}"


def portal_address(portal: PortalConfig, local_address: tuple[str, int]) -> str:
    ip = portal.ip
    if ip in WILDCARDS:
        ip = local_address[0]
    return format_address(ip, portal.port)


def acl_for(tpg: TpgConfig, initiator_name: str) -> bool:
    wanted = initiator_name.lower()
    return any(acl.node_wwn.lower() == wanted for acl in tpg.node_acls)


def tpg_visible(tpg: TpgConfig, initiator_name: str) -> bool:
    """Whether SendTargets reports this TPG to this initiator."""
    if not tpg.enable or not tpg.portals:
        return False
    if attr_int(tpg.attributes, "tpg_enabled_sendtargets", 1) == 0:
        return False
    if attr_int(tpg.attributes, "generate_node_acls", 0) == 1:
        return True
    return acl_for(tpg, initiator_name)


def target_alias(target: TargetConfig) -> str:
    if target.alias:
        return target.alias
    for tpg in target.tpgs:
        alias = tpg.parameters.get("TargetAlias", "")
        if alias:
            return alias
    return ""


def _target_pairs(
    target: TargetConfig, initiator_name: str, local_address: tuple[str, int], include_alias: bool
) -> list[tuple[str, str]]:
    addresses: list[tuple[str, str]] = []
    seen: set[str] = set()
    for tpg in target.tpgs:
        if not tpg_visible(tpg, initiator_name):
            continue
        for portal in tpg.portals:
            value = f"{portal_address(portal, local_address)},{tpg.tag}"
            if value not in seen:
                seen.add(value)
                addresses.append(("TargetAddress", value))
    if not addresses:
        return []
    pairs = [("TargetName", target.wwn)]
    alias = target_alias(target)
    if include_alias and alias:
        pairs.append(("TargetAlias", alias))
    return pairs + addresses


def send_targets(
    config: Config,
    value: str,
    *,
    initiator_name: str,
    local_address: tuple[str, int],
    session_target: str | None = None,
    include_alias: bool = False,
) -> list[tuple[str, str]] | None:
    """The SendTargets answer as (key, value) pairs, or None when the answer is "SendTargets=Reject".

    `session_target` is the normal session's target name (None in a discovery session). In a normal session
    only "" or the session's own name make sense; All is rejected (Appendix C: All is for discovery
    sessions). An unknown or invisible name yields an empty answer, not an error.
    """
    if session_target is not None:
        if value == "All":
            return None
        wanted = session_target if value == "" else value
    else:
        if value == "":
            return None
        wanted = value
    pairs: list[tuple[str, str]] = []
    for target in config.targets:
        if wanted != "All" and target.wwn.lower() != wanted.lower():
            continue
        pairs.extend(_target_pairs(target, initiator_name, local_address, include_alias))
        if len(pairs) > MAX_SENDTARGETS_PAIRS:
            return pairs[:MAX_SENDTARGETS_PAIRS]
    return pairs
