"""LoginMachine: whole login exchanges (as open-iscsi and libiscsi run them) and every failure status."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from target.config.model import (
    AclConfig,
    AuthConfig,
    Config,
    LunConfig,
    PortalConfig,
    TargetConfig,
    TpgConfig,
)
from target.iscsi.chap import ChapAlgorithm, chap_response, decode_binary, encode_binary
from target.iscsi.login import LoginKind, LoginMachine, LoginStep, portal_serves
from target.iscsi.params import SessionParams, SessionType
from target.pdu import codec
from target.pdu.framing import PduReader
from target.pdu.pdus import LoginRequest, LoginResponse, LoginStatus

TARGET = "iqn.2024-01.org.sanlab:disk1"
INITIATOR = "iqn.1993-08.org.debian:01:abcdef"
ISID = 0x00023D000001
PORTAL = ("192.0.2.10", 3260)


@dataclass
class FakeSession:
    tsih: int
    initiator_name: str
    isid: int
    target_name: str
    tpg_tag: int
    connection_count: int = 1
    cids: set[int] = field(default_factory=lambda: {0})
    params: SessionParams = field(default_factory=SessionParams)


class FakeLookup:
    def __init__(self, sessions: list[FakeSession] | None = None) -> None:
        self.sessions = sessions or []
        self.next_tsih = 0x10

    def find(self, initiator_name: str, isid: int, target_name: str, tpg_tag: int) -> FakeSession | None:
        for s in self.sessions:
            if (s.initiator_name, s.isid, s.target_name, s.tpg_tag) == (
                initiator_name,
                isid,
                target_name,
                tpg_tag,
            ):
                return s
        return None

    def by_tsih(self, tsih: int) -> FakeSession | None:
        return next((s for s in self.sessions if s.tsih == tsih), None)

    def allocate_tsih(self) -> int:
        self.next_tsih += 1
        return self.next_tsih


def make_config(
    *,
    acl_auth: AuthConfig | None = None,
    tpg_attrs: dict[str, int | str] | None = None,
    acls: bool = True,
    enable: bool = True,
    tpg_auth: AuthConfig | None = None,
    params: dict[str, str] | None = None,
    alias: str = "",
) -> Config:
    tpg = TpgConfig(
        tag=1,
        enable=enable,
        portals=[PortalConfig("0.0.0.0", 3260)],
        luns=[LunConfig(0, "fileio/d0"), LunConfig(1, "fileio/d1")],
        node_acls=[AclConfig(INITIATOR, auth=acl_auth or AuthConfig())] if acls else [],
        attributes=dict(tpg_attrs or {}),
        parameters=dict(params or {}),
        auth=tpg_auth or AuthConfig(),
    )
    return Config(targets=[TargetConfig(TARGET, tpgs=[tpg], alias=alias)])


def kv(data: bytes | memoryview) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in bytes(data).split(b"\0"):
        if item:
            k, _, v = item.decode().partition("=")
            out[k] = v
    return out


def enc(**pairs: str) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs.items())


class Initiator:
    """A minimal initiator driving a LoginMachine with LoginRequest objects."""

    def __init__(self, machine: LoginMachine, *, isid: int = ISID, tsih: int = 0, cid: int = 0) -> None:
        self.m = machine
        self.isid, self.tsih, self.cid = isid, tsih, cid
        self.itt = 7
        self.cmdsn = 100
        self.exp_statsn = 0
        self.wire = True  # pass every PDU through the codec and framing: the exchange is byte-level

    def send(
        self, data: bytes, csg: int, nsg: int, transit: bool, cont: bool = False, **kw: int
    ) -> LoginStep:
        fields = dict(
            itt=self.itt,
            isid=self.isid,
            tsih=self.tsih,
            cid=self.cid,
            cmdsn=self.cmdsn,
            exp_statsn=self.exp_statsn,
        )
        fields.update(kw)
        req = LoginRequest(csg=csg, nsg=nsg, transit=transit, cont=cont, data=data, **fields)
        step = self.m.receive(wire_roundtrip(req) if self.wire else req)
        if self.wire:
            step.responses = [wire_roundtrip(r) for r in step.responses]
        if step.responses:
            self.exp_statsn = (step.responses[-1].statsn + 1) & 0xFFFFFFFF
        return step


def wire_roundtrip(pdu: Any) -> Any:
    reader = PduReader()
    reader.feed(codec.encode_pdu_bytes(pdu))
    raw = reader.next_pdu()
    assert raw is not None and reader.next_pdu() is None
    out = codec.decode_pdu(raw)
    assert type(out) is type(pdu)
    return out


def machine(config: Config, lookup: FakeLookup | None = None, **kw: object) -> LoginMachine:
    return LoginMachine(config, PORTAL, lookup or FakeLookup(), initiator_address=("192.0.2.99", 40000), **kw)  # type: ignore[arg-type]


def only(step: LoginStep) -> LoginResponse:
    assert len(step.responses) == 1
    return step.responses[0]


def status(step: LoginStep) -> LoginStatus:
    r = only(step)
    return LoginStatus((r.status_class << 8) | r.status_detail)


# --------------------------------------------------------------------------- byte-level exchanges


def test_discovery_login_bytes_open_iscsi() -> None:
    """open-iscsi `iscsiadm -m discovery -t st`: security stage with AuthMethod=None, then operational."""
    data = (
        b"InitiatorName=iqn.1993-08.org.debian:01:abcdef\0InitiatorAlias=host1\0"
        b"SessionType=Discovery\0AuthMethod=None\0"
    )
    bhs = (
        bytes([0x43, 0x81, 0x00, 0x00, 0x00])  # immediate Login, T=1 CSG=0 NSG=1, versions 0/0, AHS 0
        + len(data).to_bytes(3, "big")
        + bytes.fromhex("00023d000001")  # ISID
        + b"\x00\x00"  # TSIH
        + b"\x00\x00\x00\x00"  # ITT
        + b"\x00\x00\x00\x00"  # CID, reserved
        + b"\x00\x00\x00\x00"  # CmdSN
        + b"\x00\x00\x00\x00"  # ExpStatSN
        + bytes(16)
    )
    reader = PduReader()
    reader.feed(bhs + data + bytes(-len(data) % 4))
    raw = reader.next_pdu()
    assert raw is not None
    req = codec.decode_pdu(raw)
    assert isinstance(req, LoginRequest)
    m = machine(make_config(), initial_statsn=0x1000)
    step = m.receive(req)
    wire = codec.encode_pdu_bytes(only(step))
    assert wire[0] == 0x23 and wire[1] == 0x81  # Login Response, T=1 CSG=0 NSG=1
    assert wire[2:4] == b"\x00\x00"  # version max / active
    assert wire[8:14] == bytes.fromhex("00023d000001") and wire[14:16] == b"\x00\x00"
    assert wire[24:28] == (0x1000).to_bytes(4, "big")  # StatSN
    assert wire[36:38] == b"\x00\x00"  # status class/detail
    assert kv(only(step).data) == {"AuthMethod": "None"}  # no TargetPortalGroupTag in a discovery session

    op = (
        b"HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0"
        b"IFMarker=No\0OFMarker=No\0ErrorRecoveryLevel=0\0MaxRecvDataSegmentLength=32768\0"
    )
    step = m.receive(
        LoginRequest(
            itt=0, isid=ISID, tsih=0, cid=0, cmdsn=0, exp_statsn=0x1001, csg=1, nsg=3, transit=True, data=op
        )
    )
    wire = codec.encode_pdu_bytes(only(step))
    assert wire[1] == 0x87  # T=1 CSG=1 NSG=3
    assert wire[24:28] == (0x1001).to_bytes(4, "big")
    assert int.from_bytes(wire[14:16], "big") == step.result.tsih if step.result else False
    answers = kv(only(step).data)
    assert answers["HeaderDigest"] == "None" and answers["DataDigest"] == "None"
    assert answers["DefaultTime2Retain"] == "0" and answers["ErrorRecoveryLevel"] == "0"
    assert answers["IFMarker"] == "No" and answers["OFMarker"] == "No"
    # sanlab's default declaration (SANLAB_DEFAULTS; LIO declares 8192)
    assert answers["MaxRecvDataSegmentLength"] == "262144"
    assert step.complete and not step.failed
    r = step.result
    assert r is not None and r.session_type is SessionType.DISCOVERY and r.kind is LoginKind.NEW_SESSION
    assert r.connection_params.max_xmit_data_segment_length == 32768
    assert r.connection_params.max_recv_data_segment_length == 262144
    assert r.next_statsn == 0x1002 and r.exp_cmdsn == 0 and r.target is None


def test_discovery_irrelevant_keys() -> None:
    m = machine(make_config())
    i = Initiator(m)
    step = i.send(
        enc(InitiatorName=INITIATOR, SessionType="Discovery", MaxBurstLength="65536", InitialR2T="No"),
        1,
        3,
        True,
    )
    ans = kv(only(step).data)
    assert ans["MaxBurstLength"] == "Irrelevant" and ans["InitialR2T"] == "Irrelevant"
    assert step.complete


# --------------------------------------------------------------------------- normal sessions


def _op_keys() -> bytes:
    return enc(
        HeaderDigest="CRC32C,None",
        DataDigest="None",
        MaxConnections="1",
        InitialR2T="No",
        ImmediateData="Yes",
        MaxRecvDataSegmentLength="262144",
        MaxBurstLength="16776192",
        FirstBurstLength="262144",
        DefaultTime2Wait="2",
        DefaultTime2Retain="0",
        MaxOutstandingR2T="1",
        DataPDUInOrder="Yes",
        DataSequenceInOrder="Yes",
        ErrorRecoveryLevel="0",
    )


def test_normal_login_without_auth() -> None:
    lookup = FakeLookup()
    m = machine(make_config(alias="disk one"), lookup, initial_statsn=5)
    i = Initiator(m)
    step = i.send(
        enc(InitiatorName=INITIATOR, SessionType="Normal", TargetName=TARGET, AuthMethod="None"), 0, 1, True
    )
    r = only(step)
    assert r.transit and r.nsg == 1 and r.csg == 0 and r.statsn == 5
    assert r.exp_cmdsn == 100 and r.max_cmdsn == 100 + 64 - 1
    assert kv(r.data) == {"TargetPortalGroupTag": "1", "AuthMethod": "None"}
    step = i.send(_op_keys(), 1, 3, True)
    r = only(step)
    ans = kv(r.data)
    assert ans["TargetAlias"] == "disk one"
    assert ans["HeaderDigest"] == "CRC32C"
    assert ans["InitialR2T"] == "Yes"  # OR with the target's Yes
    assert ans["MaxBurstLength"] == "262144" and ans["FirstBurstLength"] == "65536"
    assert ans["MaxRecvDataSegmentLength"] == "262144"
    assert r.transit and r.nsg == 3 and r.tsih == 0x11 and r.statsn == 6
    res = step.result
    assert res is not None and step.complete
    sp, cp = res.session_params, res.connection_params
    assert (sp.initial_r2t, sp.immediate_data, sp.max_burst_length, sp.first_burst_length) == (
        True,
        True,
        262144,
        65536,
    )
    assert sp.default_time2retain == 0 and sp.tsih == 0x11 and sp.target_name == TARGET and sp.tpg_tag == 1
    assert cp.header_digest and not cp.data_digest and cp.max_xmit_data_segment_length == 262144
    assert res.acl is not None and res.acl.node_wwn == INITIATOR and not res.dynamic_acl
    assert res.tpg is not None and res.tpg.tag == 1 and res.auth_method == "None"


def test_login_straight_into_operational_stage() -> None:
    m = machine(make_config())
    step = Initiator(m).send(enc(InitiatorName=INITIATOR, TargetName=TARGET) + _op_keys(), 1, 3, True)
    assert step.complete
    ans = kv(only(step).data)
    assert ans["TargetPortalGroupTag"] == "1" and "AuthMethod" not in ans


def test_operational_stage_without_transit_then_transit() -> None:
    m = machine(make_config())
    i = Initiator(m)
    step = i.send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET, MaxRecvDataSegmentLength="65536"), 1, 3, False
    )
    r = only(step)
    assert not r.transit and not step.complete
    assert kv(r.data)["MaxRecvDataSegmentLength"] == "262144"
    step = i.send(b"", 1, 3, True)
    assert step.complete and kv(only(step).data) == {}  # MaxRecvDataSegmentLength declared once only
    assert step.result is not None and step.result.connection_params.max_xmit_data_segment_length == 65536


def test_target_settings_from_tpg_parameters() -> None:
    cfg = make_config(
        params={"MaxRecvDataSegmentLength": "65536", "HeaderDigest": "None", "MaxBurstLength": "131072"}
    )
    m = machine(cfg)
    step = Initiator(m).send(enc(InitiatorName=INITIATOR, TargetName=TARGET) + _op_keys(), 1, 3, True)
    ans = kv(only(step).data)
    assert ans["HeaderDigest"] == "None" and ans["MaxBurstLength"] == "131072"
    assert ans["MaxRecvDataSegmentLength"] == "65536"
    assert step.result is not None and step.result.connection_params.max_recv_data_segment_length == 65536


def test_text_continuation_from_initiator() -> None:
    m = machine(make_config())
    i = Initiator(m)
    whole = enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="None")
    step = i.send(whole[:20], 0, 1, False, cont=True)
    r = only(step)
    assert not r.transit and not r.cont and r.data == b"" and r.status_class == 0
    step = i.send(whole[20:], 0, 1, True)
    assert kv(only(step).data) == {"TargetPortalGroupTag": "1", "AuthMethod": "None"}
    assert only(step).transit


def test_long_target_text_is_continued() -> None:
    m = machine(make_config())
    i = Initiator(m)
    vendor = {f"X-com.example.some-long-vendor-key-number-{n:04d}": "value" for n in range(200)}
    data = enc(InitiatorName=INITIATOR, TargetName=TARGET, **vendor)
    pieces = [data[i : i + 8192] for i in range(0, len(data), 8192)]
    for piece in pieces[:-1]:
        assert only(i.send(piece, 1, 3, False, cont=True)).data == b""
    step = i.send(pieces[-1], 1, 3, True)
    got = b""
    r = only(step)
    while r.cont:
        assert not r.transit and len(r.data) <= 8192
        got += bytes(r.data)
        step = i.send(b"", 1, 3, True)
        r = only(step)
    got += bytes(r.data)
    assert r.transit and step.complete
    ans = kv(got)
    assert all(ans[k] == "NotUnderstood" for k in vendor)


def test_statsn_increments_per_response() -> None:
    m = machine(make_config(), initial_statsn=0xFFFFFFFF)
    i = Initiator(m)
    a = only(i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="None"), 0, 1, True))
    b = only(i.send(b"", 1, 3, True))
    assert (a.statsn, b.statsn) == (0xFFFFFFFF, 0)


def test_demo_mode_generates_acl() -> None:
    cfg = make_config(acls=False, tpg_attrs={"generate_node_acls": 1, "demo_mode_write_protect": 0})
    step = Initiator(machine(cfg)).send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True)
    res = step.result
    assert res is not None and res.dynamic_acl and res.acl is not None
    assert [(ml.index, ml.tpg_lun, ml.write_protect) for ml in res.acl.mapped_luns] == [
        (0, 0, False),
        (1, 1, False),
    ]


def test_ipv6_portal_matching() -> None:
    assert portal_serves("::", 3260, ("192.0.2.1", 3260))
    assert portal_serves("0.0.0.0", 3260, ("::ffff:192.0.2.1", 3260))
    assert not portal_serves("0.0.0.0", 3260, ("2001:db8::1", 3260))
    assert portal_serves("2001:db8::1", 3260, ("2001:db8:0::1", 3260))
    assert not portal_serves("192.0.2.1", 3261, ("192.0.2.1", 3260))


# --------------------------------------------------------------------------- CHAP


def _chap_login(
    cfg: Config,
    algs: str,
    *,
    user: str = "alice",
    secret: str = "alicesecret12",
    mutual: bytes | None = None,
    lookup: FakeLookup | None = None,
) -> tuple[LoginStep, Initiator, dict[str, str]]:
    m = machine(cfg, lookup)
    i = Initiator(m)
    step = i.send(
        enc(InitiatorName=INITIATOR, SessionType="Normal", TargetName=TARGET, AuthMethod="CHAP,None"),
        0,
        1,
        True,
    )
    r = only(step)
    assert not r.transit and kv(r.data)["AuthMethod"] == "CHAP"
    step = i.send(enc(CHAP_A=algs), 0, 1, True)
    r = only(step)
    ch = kv(r.data)
    assert not r.transit and set(ch) == {"CHAP_A", "CHAP_I", "CHAP_C"}
    alg = ChapAlgorithm(int(ch["CHAP_A"]))
    challenge = decode_binary(ch["CHAP_C"])
    assert len(challenge) >= 16
    resp = chap_response(alg, int(ch["CHAP_I"]), secret.encode(), challenge)
    keys = {"CHAP_N": user, "CHAP_R": encode_binary(resp)}
    if mutual is not None:
        keys.update(CHAP_I="77", CHAP_C=encode_binary(mutual, base64_form=True))
    step = i.send(enc(**keys), 0, 1, True)
    return step, i, ch


def test_chap_md5_one_way() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    step, i, ch = _chap_login(cfg, "5")
    assert ch["CHAP_A"] == "5"
    r = only(step)
    assert r.transit and r.nsg == 1 and kv(r.data) == {}
    step = i.send(_op_keys(), 1, 3, True)
    assert step.complete and step.result is not None
    assert step.result.auth_method == "CHAP" and not step.result.mutual_chap


def test_chap_sha256_mutual() -> None:
    auth = AuthConfig("alice", "alicesecret12", "tgtuser", "targetsecret99")
    cfg = make_config(acl_auth=auth, tpg_attrs={"authentication": 1})
    mine = bytes(range(16))
    step, i, ch = _chap_login(cfg, "7,5", mutual=mine)
    assert ch["CHAP_A"] == "7" and len(decode_binary(ch["CHAP_C"])) == 32
    r = only(step)
    ans = kv(r.data)
    assert ans["CHAP_N"] == "tgtuser"
    expected = hashlib.sha256(bytes([77]) + b"targetsecret99" + mine).digest()
    assert decode_binary(ans["CHAP_R"]) == expected
    assert r.transit
    step = i.send(b"", 1, 3, True)
    assert step.complete and step.result is not None and step.result.mutual_chap


def test_chap_uses_tpg_credentials_in_demo_mode() -> None:
    cfg = make_config(
        acls=False,
        tpg_attrs={"generate_node_acls": 1, "authentication": 1},
        tpg_auth=AuthConfig("bob", "bobsecret1234"),
    )
    step, _, _ = _chap_login(cfg, "5", user="bob", secret="bobsecret1234")
    assert only(step).transit and not step.failed


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"secret": "wrongsecret12"}, "bad response"),
        ({"user": "mallory"}, "bad name"),
        ({"mutual": b"short"}, "too-short mutual challenge"),
    ],
)
def test_chap_failures(kwargs: dict[str, object], why: str) -> None:
    auth = AuthConfig("alice", "alicesecret12", "tgtuser", "targetsecret99")
    cfg = make_config(acl_auth=auth, tpg_attrs={"authentication": 1})
    step, _, _ = _chap_login(cfg, "5", **kwargs)  # type: ignore[arg-type]
    assert step.failed, why
    assert status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_chap_reflected_challenge_refused() -> None:
    auth = AuthConfig("alice", "alicesecret12", "tgtuser", "targetsecret99")
    m = machine(make_config(acl_auth=auth, tpg_attrs={"authentication": 1}))
    i = Initiator(m)
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="CHAP"), 0, 1, True)
    ch = kv(only(i.send(enc(CHAP_A="5"), 0, 1, True)).data)
    challenge = decode_binary(ch["CHAP_C"])
    resp = chap_response(ChapAlgorithm.MD5, int(ch["CHAP_I"]), b"alicesecret12", challenge)
    step = i.send(
        enc(CHAP_N="alice", CHAP_R=encode_binary(resp), CHAP_I="1", CHAP_C=ch["CHAP_C"]), 0, 1, True
    )
    assert step.failed and status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_mutual_chap_without_target_secret_fails() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    step, _, _ = _chap_login(cfg, "5", mutual=bytes(range(1, 17)))
    assert step.failed and status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_chap_unsupported_algorithm() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    i = Initiator(machine(cfg))
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="CHAP"), 0, 1, False)
    step = i.send(enc(CHAP_A="99,junk"), 0, 1, False)
    assert step.failed and status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_chap_bad_encoding() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    i = Initiator(machine(cfg))
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="CHAP"), 0, 1, False)
    i.send(enc(CHAP_A="5"), 0, 1, False)
    step = i.send(enc(CHAP_N="alice", CHAP_R="0xZZ"), 0, 1, True)
    assert step.failed and status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_chap_missing_response() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    i = Initiator(machine(cfg))
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="CHAP"), 0, 1, False)
    i.send(enc(CHAP_A="5"), 0, 1, False)
    step = i.send(enc(CHAP_N="alice"), 0, 1, True)
    assert step.failed and status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_transit_before_chap_done_stays() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    i = Initiator(machine(cfg))
    r = only(i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="CHAP"), 0, 3, True))
    assert not r.transit and r.status_class == 0


def test_auth_required_but_none_offered() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    step = Initiator(machine(cfg)).send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="None"), 0, 1, True
    )
    assert status(step) is LoginStatus.AUTHENTICATION_FAILURE and step.failed


def test_auth_required_but_security_stage_skipped() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    step = Initiator(machine(cfg)).send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True)
    assert status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_auth_required_transit_without_authmethod() -> None:
    cfg = make_config(acl_auth=AuthConfig("alice", "alicesecret12"), tpg_attrs={"authentication": 1})
    step = Initiator(machine(cfg)).send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 0, 1, True)
    assert status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_chap_only_offer_without_credentials_fails() -> None:
    step = Initiator(machine(make_config())).send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="CHAP"), 0, 1, True
    )
    assert status(step) is LoginStatus.AUTHENTICATION_FAILURE


def test_discovery_auth_enforced() -> None:
    cfg = make_config()
    cfg.discovery_auth = AuthConfig("disc", "discsecret123")
    cfg.discovery_auth_enforced = True
    i = Initiator(machine(cfg))
    step = i.send(enc(InitiatorName=INITIATOR, SessionType="Discovery", AuthMethod="None"), 0, 1, True)
    assert status(step) is LoginStatus.AUTHENTICATION_FAILURE
    i = Initiator(machine(cfg))
    i.send(enc(InitiatorName=INITIATOR, SessionType="Discovery", AuthMethod="CHAP"), 0, 1, False)
    ch = kv(only(i.send(enc(CHAP_A="5"), 0, 1, False)).data)
    resp = chap_response(ChapAlgorithm.MD5, int(ch["CHAP_I"]), b"discsecret123", decode_binary(ch["CHAP_C"]))
    r = only(i.send(enc(CHAP_N="disc", CHAP_R=encode_binary(resp)), 0, 3, True))
    assert r.transit and r.tsih != 0


# --------------------------------------------------------------------------- failure statuses


def _first(cfg: Config, data: bytes, lookup: FakeLookup | None = None, **kw: int) -> LoginStep:
    return Initiator(machine(cfg, lookup), **kw).send(data, 0, 1, True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (enc(SessionType="Normal", TargetName=TARGET), LoginStatus.MISSING_PARAMETER),
        (enc(InitiatorName=INITIATOR, SessionType="Normal"), LoginStatus.MISSING_PARAMETER),
        (enc(InitiatorName=INITIATOR, SessionType="Bogus"), LoginStatus.SESSION_TYPE_NOT_SUPPORTED),
        (enc(InitiatorName=INITIATOR, TargetName="iqn.2024-01.org.sanlab:nope"), LoginStatus.NOT_FOUND),
        (enc(InitiatorName="iqn.2024-01.org.other:x", TargetName=TARGET), LoginStatus.AUTHORIZATION_FAILURE),
        (
            enc(InitiatorName=INITIATOR, TargetName=TARGET) + b"MaxBurstLength=512\0MaxBurstLength=1024\0",
            LoginStatus.INITIATOR_ERROR,
        ),
        (b"InitiatorName=" + INITIATOR.encode() + b"\0garbage-without-equals\0", LoginStatus.INITIATOR_ERROR),
        (b"InitiatorName=" + INITIATOR.encode(), LoginStatus.INITIATOR_ERROR),  # no final NUL
    ],
)
def test_first_request_failures(data: bytes, expected: LoginStatus) -> None:
    step = _first(make_config(), data)
    assert step.failed and status(step) is expected
    r = only(step)
    assert r.tsih == 0 and not r.transit and r.data == b""


def test_disabled_tpg() -> None:
    step = _first(make_config(enable=False), enc(InitiatorName=INITIATOR, TargetName=TARGET))
    assert status(step) is LoginStatus.TARGET_REMOVED


def test_portal_not_served() -> None:
    m = LoginMachine(make_config(), ("192.0.2.10", 3261), FakeLookup())
    step = Initiator(m).send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 0, 1, True)
    assert status(step) is LoginStatus.NOT_FOUND


def test_unsupported_version() -> None:
    step = Initiator(machine(make_config())).send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET), 0, 1, True, version_min=1, version_max=2
    )
    assert status(step) is LoginStatus.UNSUPPORTED_VERSION


@pytest.mark.parametrize("change", [{"itt": 8}, {"isid": ISID + 1}, {"cid": 3}, {"version_max": 1}])
def test_changed_fields_are_protocol_errors(change: dict[str, int]) -> None:
    i = Initiator(machine(make_config()))
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="None"), 0, 1, False)
    step = i.send(b"", 0, 1, True, False, **change)
    assert step.failed and status(step) is LoginStatus.INITIATOR_ERROR


def test_stage_errors() -> None:
    i = Initiator(machine(make_config()))
    i.wire = False  # the codec itself refuses these; the machine must too
    assert status(i.send(b"", 0, 1, True, cont=True)) is LoginStatus.INITIATOR_ERROR
    i = Initiator(machine(make_config()))
    i.wire = False
    assert (
        status(i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 3, 3, True))
        is LoginStatus.INITIATOR_ERROR
    )
    i = Initiator(machine(make_config()))
    assert (
        status(i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 0, True))
        is LoginStatus.INITIATOR_ERROR
    )
    i = Initiator(machine(make_config()))
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, AuthMethod="None"), 0, 1, False)
    assert status(i.send(b"", 1, 3, True)) is LoginStatus.INITIATOR_ERROR  # CSG jumped without transit


def test_key_repeated_in_a_later_pdu() -> None:
    i = Initiator(machine(make_config()))
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, MaxBurstLength="4096"), 1, 3, False)
    step = i.send(enc(MaxBurstLength="8192"), 1, 3, True)
    assert status(step) is LoginStatus.INITIATOR_ERROR


def test_security_key_in_operational_stage() -> None:
    i = Initiator(machine(make_config()))
    step = i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET, CHAP_A="5"), 1, 3, True)
    assert status(step) is LoginStatus.INITIATOR_ERROR


def test_too_many_pdus() -> None:
    i = Initiator(machine(make_config()))
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, False)
    step = None
    for _ in range(100):
        step = i.send(b"", 1, 3, False)
        if step.failed:
            break
    assert step is not None and step.failed and status(step) is LoginStatus.INITIATOR_ERROR


def test_receive_after_failure_and_timeout() -> None:
    m = machine(make_config(tpg_attrs={"login_timeout": 5}))
    i = Initiator(m)
    i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, False)
    assert m.timeout_s == 5
    step = m.expire()
    assert step.failed and step.responses == []
    assert i.send(b"", 1, 3, True).failed


# --------------------------------------------------------------------------- sessions: reinstatement, MC/S


def _existing(max_connections: int = 1, cids: set[int] | None = None) -> FakeSession:
    return FakeSession(
        tsih=0x22,
        initiator_name=INITIATOR,
        isid=ISID,
        target_name=TARGET,
        tpg_tag=1,
        connection_count=len(cids or {0}),
        cids=cids or {0},
        params=SessionParams(max_connections=max_connections, target_name=TARGET, max_burst_length=4096),
    )


def test_session_reinstatement() -> None:
    lookup = FakeLookup([_existing()])
    step = Initiator(machine(make_config(), lookup)).send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True
    )
    res = step.result
    assert res is not None and res.kind is LoginKind.SESSION_REINSTATEMENT and res.is_new_session
    assert res.existing is lookup.sessions[0] and res.tsih != 0x22


def test_add_connection() -> None:
    lookup = FakeLookup([_existing(max_connections=2)])
    step = Initiator(machine(make_config(), lookup), tsih=0x22, cid=1).send(
        enc(
            InitiatorName=INITIATOR,
            TargetName=TARGET,
            MaxBurstLength="1024",
            MaxRecvDataSegmentLength="16384",
        ),
        1,
        3,
        True,
    )
    res = step.result
    assert res is not None and res.kind is LoginKind.ADD_CONNECTION and res.tsih == 0x22
    assert only(step).tsih == 0x22
    ans = kv(only(step).data)
    assert ans["MaxBurstLength"] == "Irrelevant"  # leading-only key on a non-leading connection
    assert "TargetPortalGroupTag" not in ans
    assert res.session_params.max_burst_length == 4096  # the session's values stand
    assert res.connection_params.max_xmit_data_segment_length == 16384 and res.cid == 1


def test_connection_reinstatement() -> None:
    lookup = FakeLookup([_existing(max_connections=1)])
    step = Initiator(machine(make_config(), lookup), tsih=0x22, cid=0).send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True
    )
    assert step.result is not None and step.result.kind is LoginKind.CONNECTION_REINSTATEMENT


def test_too_many_connections() -> None:
    lookup = FakeLookup([_existing(max_connections=1)])
    step = _first(make_config(), enc(InitiatorName=INITIATOR, TargetName=TARGET), lookup, tsih=0x22, cid=1)
    assert status(step) is LoginStatus.TOO_MANY_CONNECTIONS


@pytest.mark.parametrize(("tsih", "isid"), [(0x99, ISID), (0x22, ISID + 5)])
def test_session_does_not_exist(tsih: int, isid: int) -> None:
    lookup = FakeLookup([_existing(max_connections=4)])
    step = _first(
        make_config(), enc(InitiatorName=INITIATOR, TargetName=TARGET), lookup, tsih=tsih, isid=isid, cid=1
    )
    assert status(step) is LoginStatus.SESSION_DOES_NOT_EXIST


def test_connection_for_other_tpg_cant_be_included() -> None:
    other = dataclasses.replace(_existing(max_connections=4), tpg_tag=2)
    step = _first(
        make_config(), enc(InitiatorName=INITIATOR, TargetName=TARGET), FakeLookup([other]), tsih=0x22, cid=1
    )
    assert status(step) is LoginStatus.CANT_INCLUDE_IN_SESSION


def test_malformed_login_pdu_gets_initiator_error() -> None:
    bhs = bytearray(48)
    bhs[0], bhs[1] = 0x43, 0xC1  # T and C both set: the codec refuses to decode it
    bhs[8:14] = ISID.to_bytes(6, "big")
    bhs[16:20] = (0x1234).to_bytes(4, "big")
    bhs[24:28] = (9).to_bytes(4, "big")
    reader = PduReader()
    reader.feed(bytes(bhs))
    raw = reader.next_pdu()
    assert raw is not None
    with pytest.raises(codec.PduDecodeError) as info:
        codec.decode_pdu(raw)
    m = machine(make_config(), initial_statsn=3)
    step = m.malformed(raw.bhs, str(info.value))
    r = only(step)
    assert step.failed and status(step) is LoginStatus.INITIATOR_ERROR
    assert (r.itt, r.isid, r.exp_cmdsn, r.statsn) == (0x1234, ISID, 9, 3)
    assert m.receive(LoginRequest(itt=1, isid=1, tsih=0, cid=0, cmdsn=0, exp_statsn=0, csg=0, nsg=1)).failed


# --------------------------------------------------------------------------- the target's own offers (6.2)


def test_target_offers_configured_keys_the_initiator_did_not_offer() -> None:
    """A TPG configured with MaxBurstLength=131072 and InitialR2T=No: the initiator is silent on both, so the
    target offers them in its answer to the transition request (T=0) and transits once they are answered."""
    cfg = make_config(params={"MaxBurstLength": "131072", "InitialR2T": "No", "ImmediateData": "Yes"})
    m = machine(cfg)
    i = Initiator(m)
    step = i.send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET, MaxRecvDataSegmentLength="65536"), 1, 3, True
    )
    r = only(step)
    assert not r.transit and not step.complete and r.status_class == 0
    offered = kv(r.data)
    # ImmediateData=Yes is the RFC default: nothing to offer
    assert offered["MaxBurstLength"] == "131072" and offered["InitialR2T"] == "No"
    assert "ImmediateData" not in offered and offered["MaxRecvDataSegmentLength"] == "262144"
    step = i.send(enc(MaxBurstLength="65536", InitialR2T="No"), 1, 3, True)
    r = only(step)
    assert r.transit and step.complete and kv(r.data) == {}  # answers get no answer
    assert step.result is not None
    sp = step.result.session_params
    assert sp.max_burst_length == 65536 and sp.initial_r2t is False
    assert sp.first_burst_length == 65536


def test_target_offer_not_made_when_the_initiator_offered_the_key() -> None:
    cfg = make_config(params={"MaxBurstLength": "131072", "InitialR2T": "No"})
    m = machine(cfg)
    step = Initiator(m).send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET, MaxBurstLength="262144", InitialR2T="Yes"), 1, 3, True
    )
    r = only(step)
    assert r.transit and step.complete
    assert kv(r.data)["MaxBurstLength"] == "131072" and kv(r.data)["InitialR2T"] == "Yes"


def test_small_configured_max_burst_drags_first_burst_along() -> None:
    m = machine(make_config(params={"MaxBurstLength": "16384"}))
    i = Initiator(m)
    offered = kv(only(i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True)).data)
    assert offered["MaxBurstLength"] == "16384" and offered["FirstBurstLength"] == "16384"
    step = i.send(enc(MaxBurstLength="16384", FirstBurstLength="8192"), 1, 3, True)
    assert step.complete and step.result is not None
    assert step.result.session_params.first_burst_length == 8192


@pytest.mark.parametrize(
    ("params", "answer"),
    [
        ({"MaxBurstLength": "131072"}, {"MaxBurstLength": "262144"}),  # min: cannot exceed our offer
        ({"InitialR2T": "Yes", "DataPDUInOrder": "No"}, {"DataPDUInOrder": "Maybe"}),  # not a boolean
        ({"ImmediateData": "No"}, {"ImmediateData": "Yes"}),  # AND with our No must be No
        ({"HeaderDigest": "CRC32C"}, {"HeaderDigest": "None"}),  # not one of our values
        ({"DefaultTime2Wait": "5"}, {"DefaultTime2Wait": "1"}),  # max: cannot be below our offer
    ],
)
def test_invalid_answer_to_target_offer_fails_the_login(
    params: dict[str, str], answer: dict[str, str]
) -> None:
    m = machine(make_config(params=params))
    i = Initiator(m)
    r = only(i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True))
    assert not r.transit and set(answer) <= set(kv(r.data))
    step = i.send(enc(**answer), 1, 3, True)
    assert step.failed and status(step) is LoginStatus.INITIATOR_ERROR


def test_reject_answer_and_ignored_offer_keep_rfc_defaults() -> None:
    m = machine(make_config(params={"MaxBurstLength": "131072", "HeaderDigest": "CRC32C"}))
    i = Initiator(m)
    only(i.send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True))
    step = i.send(enc(HeaderDigest="Reject"), 1, 3, True)  # MaxBurstLength not answered at all
    assert step.complete and step.result is not None
    assert step.result.session_params.max_burst_length == 262144
    assert not step.result.connection_params.header_digest


def test_no_offers_in_discovery_or_on_a_second_connection() -> None:
    cfg = make_config(params={"MaxBurstLength": "131072", "MaxConnections": "4", "HeaderDigest": "CRC32C"})
    m = machine(cfg)
    r = only(Initiator(m).send(enc(InitiatorName=INITIATOR, SessionType="Discovery"), 1, 3, True))
    assert r.transit and kv(r.data) == {"MaxRecvDataSegmentLength": "262144"}
    existing = FakeSession(0x21, INITIATOR, ISID, TARGET, 1, params=SessionParams(max_connections=4))
    m2 = machine(cfg, FakeLookup([existing]))
    step = Initiator(m2, tsih=0x21, cid=1).send(enc(InitiatorName=INITIATOR, TargetName=TARGET), 1, 3, True)
    # leading-only keys are not offered on a second connection; connection keys (HeaderDigest) still are
    offered = kv(only(step).data)
    assert "MaxBurstLength" not in offered and "MaxConnections" not in offered
    assert offered["HeaderDigest"] == "CRC32C"


def test_configured_mrdsl_is_declared_as_configured() -> None:
    """A TPG parameter (e.g. LIO's 8192 from an imported saveconfig.json) overrides sanlab's 262144 default, and
    the connection receives at most what was declared."""
    m = machine(make_config(params={"MaxRecvDataSegmentLength": "8192"}))
    i = Initiator(m)
    step = i.send(
        enc(InitiatorName=INITIATOR, TargetName=TARGET, MaxRecvDataSegmentLength="65536"), 1, 3, True
    )
    r = only(step)
    assert kv(r.data)["MaxRecvDataSegmentLength"] == "8192"
    assert step.result is not None
    assert step.result.connection_params.max_recv_data_segment_length == 8192
    assert step.result.connection_params.max_xmit_data_segment_length == 65536
