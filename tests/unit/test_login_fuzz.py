"""Hypothesis walks of the login machine: any request sequence gets answers, never an exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from target.config.model import AclConfig, AuthConfig, Config, PortalConfig, TargetConfig, TpgConfig
from target.iscsi.login import LoginMachine
from target.pdu.pdus import LoginRequest, LoginStatus

TARGET = "iqn.2024-01.org.sanlab:fuzz"
INI = "iqn.1993-08.org.debian:01:fuzz"


class _NoSessions:
    def find(self, initiator_name: str, isid: int, target_name: str, tpg_tag: int) -> None:
        return None

    def by_tsih(self, tsih: int) -> None:
        return None

    def allocate_tsih(self) -> int:
        return 1


def _config(auth: bool) -> Config:
    tpg = TpgConfig(
        portals=[PortalConfig("0.0.0.0", 3260)],
        node_acls=[AclConfig(INI, auth=AuthConfig("u", "secretsecret") if auth else AuthConfig())],
        attributes={"authentication": int(auth)},
    )
    return Config(targets=[TargetConfig(TARGET, tpgs=[tpg])])


_keys = st.sampled_from(
    [
        "InitiatorName",
        "TargetName",
        "SessionType",
        "AuthMethod",
        "CHAP_A",
        "CHAP_N",
        "CHAP_R",
        "CHAP_I",
        "CHAP_C",
        "MaxBurstLength",
        "HeaderDigest",
        "InitialR2T",
        "X-vendor",
        "MaxRecvDataSegmentLength",
    ]
)
_values = st.one_of(
    st.sampled_from(
        [INI, TARGET, "Normal", "Discovery", "CHAP", "None", "5", "0x00", "Yes", "512", "CRC32C"]
    ),
    st.text(max_size=20).filter(lambda v: "\0" not in v),
)
_data = st.one_of(
    st.lists(st.tuples(_keys, _values), max_size=6).map(
        lambda pairs: b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)
    ),
    st.binary(max_size=64),
)
_request = st.builds(
    LoginRequest,
    itt=st.sampled_from([1, 2]),
    isid=st.just(5),
    tsih=st.sampled_from([0, 0, 7]),
    cid=st.just(0),
    cmdsn=st.integers(0, 2**32 - 1),
    exp_statsn=st.integers(0, 2**32 - 1),
    csg=st.sampled_from([0, 1, 2, 3]),
    nsg=st.sampled_from([0, 1, 2, 3]),
    transit=st.booleans(),
    cont=st.booleans(),
    version_max=st.sampled_from([0, 0, 1]),
    version_min=st.sampled_from([0, 0, 1]),
    data=_data,
)


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(_request, min_size=1, max_size=8))
def test_any_request_sequence_is_answered(auth: bool, requests: list[LoginRequest]) -> None:
    m = LoginMachine(_config(auth), ("192.0.2.1", 3260), _NoSessions(), initial_statsn=0)
    finished = False
    for req in requests:
        step = m.receive(req)
        if finished:
            assert step.failed and not step.responses
            continue
        assert len(step.responses) == 1
        resp = step.responses[0]
        assert resp.itt == requests[0].itt or step.failed
        status = LoginStatus((resp.status_class << 8) | resp.status_detail)
        assert status is not LoginStatus.TARGET_ERROR  # no internal errors
        assert step.failed == (status is not LoginStatus.SUCCESS)
        if step.complete:
            assert step.result is not None and resp.transit and resp.nsg == 3 and resp.tsih == 1
        if resp.transit:
            assert req.transit  # 11.13.3: the target never sets T unless the initiator did
        finished = step.failed or step.complete
