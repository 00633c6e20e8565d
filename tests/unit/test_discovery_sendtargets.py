"""SendTargets answers (RFC 7143 Appendix C)."""

from __future__ import annotations

from target.config.model import AclConfig, Config, PortalConfig, TargetConfig, TpgConfig
from target.iscsi.discovery import format_address, send_targets
from target.iscsi.negotiation import TextNegotiator, target_settings
from target.iscsi.params import ConnectionParams, SessionParams
from target.pdu.pdus import TextRequest

INI = "iqn.1993-08.org.debian:01:abc"
LOCAL = ("192.0.2.10", 3260)


def _config() -> Config:
    demo = TpgConfig(
        tag=1,
        portals=[PortalConfig("0.0.0.0", 3260), PortalConfig("2001:db8::10", 3260)],
        attributes={"generate_node_acls": 1},
    )
    acl_only = TpgConfig(
        tag=2, portals=[PortalConfig("198.51.100.1", 3261)], node_acls=[AclConfig(INI.upper())]
    )
    other_acl = TpgConfig(
        tag=3, portals=[PortalConfig("198.51.100.2", 3260)], node_acls=[AclConfig("iqn.x:y")]
    )
    disabled = TpgConfig(
        tag=4,
        enable=False,
        portals=[PortalConfig("198.51.100.3", 3260)],
        attributes={"generate_node_acls": "1"},
    )
    return Config(
        targets=[
            TargetConfig("iqn.2024-01.org.sanlab:a", tpgs=[demo], alias="Disk A"),
            TargetConfig("iqn.2024-01.org.sanlab:b", tpgs=[acl_only, other_acl]),
            TargetConfig("iqn.2024-01.org.sanlab:c", tpgs=[other_acl, disabled]),
        ]
    )


def test_send_targets_all() -> None:
    # no TargetAlias by default: LIO sends none there and libiscsi refuses an answer that holds one
    pairs = send_targets(_config(), "All", initiator_name=INI, local_address=LOCAL)
    assert pairs == [
        ("TargetName", "iqn.2024-01.org.sanlab:a"),
        ("TargetAddress", "192.0.2.10:3260,1"),  # wildcard -> the address the connection arrived on
        ("TargetAddress", "[2001:db8::10]:3260,1"),
        ("TargetName", "iqn.2024-01.org.sanlab:b"),
        ("TargetAddress", "198.51.100.1:3261,2"),  # ACL match is case-insensitive; TPG 3 has no ACL for us
    ]


def test_send_targets_alias_on_request() -> None:
    pairs = send_targets(_config(), "All", initiator_name=INI, local_address=LOCAL, include_alias=True)
    assert pairs is not None and pairs[:2] == [
        ("TargetName", "iqn.2024-01.org.sanlab:a"),
        ("TargetAlias", "Disk A"),
    ]


def test_send_targets_named_and_session_forms() -> None:
    cfg = _config()
    named = send_targets(cfg, "iqn.2024-01.org.sanlab:b", initiator_name=INI, local_address=LOCAL)
    assert named == [("TargetName", "iqn.2024-01.org.sanlab:b"), ("TargetAddress", "198.51.100.1:3261,2")]
    assert send_targets(cfg, "iqn.2024-01.org.sanlab:c", initiator_name=INI, local_address=LOCAL) == []
    own = send_targets(
        cfg,
        "",
        initiator_name=INI,
        local_address=LOCAL,
        session_target="iqn.2024-01.org.sanlab:a",
        include_alias=False,
    )
    assert own is not None and own[0] == ("TargetName", "iqn.2024-01.org.sanlab:a") and len(own) == 3
    assert (
        send_targets(
            cfg, "All", initiator_name=INI, local_address=LOCAL, session_target="iqn.2024-01.org.sanlab:a"
        )
        is None
    )
    assert send_targets(cfg, "", initiator_name=INI, local_address=LOCAL) is None


def test_wildcard_on_ipv6_connection() -> None:
    cfg = Config(
        targets=[
            TargetConfig(
                "iqn.2024-01.org.sanlab:a",
                tpgs=[
                    TpgConfig(tag=7, portals=[PortalConfig("::", 3260)], attributes={"generate_node_acls": 1})
                ],
            )
        ]
    )
    pairs = send_targets(cfg, "All", initiator_name=INI, local_address=("fe80::1", 3260))
    assert pairs is not None and ("TargetAddress", "[fe80::1]:3260,7") in pairs
    assert format_address("::ffff:192.0.2.1", 3260) == "192.0.2.1:3260"


def test_send_targets_through_text_negotiator() -> None:
    cfg = _config()
    tn = TextNegotiator(
        target_settings({}),
        ConnectionParams(max_xmit_data_segment_length=8192),
        SessionParams(),
        send_targets=lambda v: send_targets(cfg, v, initiator_name=INI, local_address=LOCAL),
    )
    out = tn.receive(TextRequest(itt=3, cmdsn=1, exp_statsn=2, data=b"SendTargets=All\0"))
    assert out.reply is not None and out.reply.final
    data = out.reply.data
    assert data.startswith(b"TargetName=iqn.2024-01.org.sanlab:a\0TargetAddress=192.0.2.10:3260,1\0")
    assert data.endswith(b"TargetAddress=198.51.100.1:3261,2\0")
