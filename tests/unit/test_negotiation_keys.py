"""Result functions, the login negotiator and full-feature-phase text negotiation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target.iscsi import keys as K
from target.iscsi.negotiation import (
    LoginNegotiator,
    NegotiationError,
    TextNegotiator,
    answer_for,
    result_and,
    result_max,
    result_min,
    result_or,
    select_from_list,
    target_settings,
)
from target.iscsi.params import ConnectionParams, SessionParams
from target.pdu.pdus import RESERVED_TAG, TextRequest

SETTINGS = target_settings({})


@given(st.integers(0, 2**24), st.integers(0, 2**24))
def test_min_max_properties(a: int, b: int) -> None:
    assert result_min(a, b) <= a and result_min(a, b) <= b and result_min(a, b) in (a, b)
    assert result_max(a, b) >= a and result_max(a, b) >= b and result_max(a, b) in (a, b)
    assert result_min(a, b) == result_min(b, a)


@given(st.booleans(), st.booleans())
def test_boolean_properties(a: bool, b: bool) -> None:
    assert result_and(a, b) == (a and b) and result_or(a, b) == (a or b)


@given(
    st.sampled_from(list(K.KEYS.values())), st.text(max_size=300), st.one_of(st.none(), st.text(max_size=40))
)
def test_garbage_never_raises_and_is_deterministic(keydef: K.KeyDef, offered: str, own: str | None) -> None:
    a = answer_for(keydef, offered, own)
    assert a == answer_for(keydef, offered, own)
    assert isinstance(a, str)


@given(st.integers(-(2**40), 2**40))
def test_numeric_answers_within_range(n: int) -> None:
    keydef = K.KEYS["MaxBurstLength"]
    answer = answer_for(keydef, str(n), "262144")
    if 512 <= n <= 2**24 - 1:
        assert int(answer) == min(n, 262144)
    else:
        assert answer == "Reject"


@given(st.lists(st.sampled_from(["CRC32C", "None", "Foo", "md5"]), min_size=1, max_size=5))
def test_list_selection_picks_first_supported(offered: list[str]) -> None:
    chosen = select_from_list(offered, ["CRC32C", "None"])
    supported = [v for v in offered if v in ("CRC32C", "None")]
    assert chosen == (supported[0] if supported else None)
    assert answer_for(K.KEYS["HeaderDigest"], ",".join(offered), "CRC32C,None") == (chosen or "Reject")


def test_specific_answers() -> None:
    assert answer_for(K.KEYS["DefaultTime2Wait"], "5", "2") == "5"  # max
    assert answer_for(K.KEYS["DefaultTime2Retain"], "0x0a", "20") == "10"  # hex accepted, min
    assert answer_for(K.KEYS["ErrorRecoveryLevel"], "3", "0") == "Reject"  # out of range
    assert answer_for(K.KEYS["ImmediateData"], "Yes", "No") == "No"
    assert answer_for(K.KEYS["InitialR2T"], "No", "Yes") == "Yes"
    assert answer_for(K.KEYS["InitialR2T"], "maybe", "Yes") == "Reject"
    assert answer_for(K.KEYS["OFMarkInt"], "2048~65535", None) == "Reject"
    assert answer_for(K.KEYS["IFMarker"], "Yes", None) == "No"
    assert answer_for(K.KEYS["RDMAExtensions"], "Yes", None) == "No"
    assert answer_for(K.KEYS["HeaderDigest"], "", "CRC32C,None") == "Reject"


def test_login_negotiator_special_answers() -> None:
    n = LoginNegotiator(SETTINGS, leading=True, discovery=False)
    offer = n.process(
        [
            ("X-com.example.foo", "1"),
            ("X#org.example.bar", "2"),
            ("FooBar", "3"),
            ("TargetAlias", "x"),
            ("SendTargets", "All"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "No"),
            ("FirstBurstLength", "4096"),
            ("TargetRecvDataSegmentLength", "8192"),
            ("iSCSIProtocolLevel", "2"),
        ],
        security_stage=False,
    )
    ans = dict(offer.answers)
    assert ans["X-com.example.foo"] == ans["X#org.example.bar"] == ans["FooBar"] == "NotUnderstood"
    assert ans["TargetAlias"] == "Reject" and ans["SendTargets"] == "Reject"
    assert ans["FirstBurstLength"] == "Irrelevant"  # InitialR2T=Yes and ImmediateData=No
    assert ans["TargetRecvDataSegmentLength"] == "Irrelevant"
    assert ans["iSCSIProtocolLevel"] == "1"
    params = n.session_params(initiator_name="i", target_name="t", tpg_tag=1, isid=0, tsih=1)
    assert params.immediate_data is False and params.protocol_level == 1


def test_first_burst_capped_by_max_burst() -> None:
    n = LoginNegotiator(SETTINGS)
    ans = dict(
        n.process([("MaxBurstLength", "8192"), ("FirstBurstLength", "65536")], security_stage=False).answers
    )
    assert ans == {"MaxBurstLength": "8192", "FirstBurstLength": "8192"}


def test_mrdsl_out_of_range_rejected_default_kept() -> None:
    n = LoginNegotiator(SETTINGS)
    ans = dict(n.process([("MaxRecvDataSegmentLength", "100")], security_stage=False).answers)
    assert ans["MaxRecvDataSegmentLength"] == "Reject"
    assert n.connection_params(0).max_xmit_data_segment_length == 8192


def test_xmit_capped_by_max_xmit_setting() -> None:
    n = LoginNegotiator(target_settings({"MaxXmitDataSegmentLength": "65536"}))
    n.process([("MaxRecvDataSegmentLength", "1048576")], security_stage=False)
    assert n.connection_params(0).max_xmit_data_segment_length == 65536


# --------------------------------------------------------------------------- full feature phase


def _text(**kw: object) -> TextRequest:
    base: dict[str, object] = dict(itt=1, cmdsn=5, exp_statsn=9)
    base.update(kw)
    return TextRequest(**base)  # type: ignore[arg-type]


def _kv(data: bytes) -> dict[str, str]:
    return dict(item.decode().split("=", 1) for item in data.split(b"\0") if item)


def test_text_negotiator_mrdsl_and_rejects() -> None:
    changes: list[ConnectionParams] = []
    tn = TextNegotiator(
        SETTINGS,
        ConnectionParams(max_xmit_data_segment_length=8192),
        SessionParams(),
        on_params=changes.append,
    )
    out = tn.receive(
        _text(data=b"MaxRecvDataSegmentLength=65536\0MaxBurstLength=512\0X-foo=1\0InitiatorAlias=h\0")
    )
    assert out.reply is not None and out.reply.final and out.reply.ttt == RESERVED_TAG
    ans = _kv(out.reply.data)
    assert ans == {"MaxRecvDataSegmentLength": "8192", "MaxBurstLength": "Reject", "X-foo": "NotUnderstood"}
    assert out.connection_params is not None and out.connection_params.max_xmit_data_segment_length == 65536
    assert changes and changes[0].max_xmit_data_segment_length == 65536
    pdu = out.reply.to_pdu(statsn=3, exp_cmdsn=6, max_cmdsn=70)
    assert pdu.statsn == 3 and pdu.itt == 1 and pdu.final


def test_text_negotiator_long_answer_continues() -> None:
    pairs = [("TargetName", f"iqn.2024-01.org.sanlab:t{i:04d}") for i in range(300)]
    tn = TextNegotiator(
        SETTINGS,
        ConnectionParams(max_xmit_data_segment_length=1024),
        SessionParams(),
        send_targets=lambda v: pairs,
    )
    out = tn.receive(_text(data=b"SendTargets=All\0"))
    got = b""
    steps = 0
    assert out.reply is not None
    while out.reply is not None and out.reply.cont:
        assert not out.reply.final and out.reply.ttt != RESERVED_TAG and len(out.reply.data) <= 1024
        got += out.reply.data
        out = tn.receive(_text(ttt=out.reply.ttt, data=b""))
        steps += 1
    assert out.reply is not None and out.reply.final and out.reply.ttt == RESERVED_TAG
    got += out.reply.data
    assert steps > 1 and got.count(b"TargetName=") == 300


def test_text_negotiator_request_continuation_and_errors() -> None:
    tn = TextNegotiator(SETTINGS, ConnectionParams(), SessionParams(), send_targets=lambda v: None)
    first = tn.receive(_text(data=b"SendTar", final=False, cont=True))
    assert (
        first.reply is not None
        and first.reply.data == b""
        and not first.reply.final
        and first.reply.ttt != RESERVED_TAG
    )
    out = tn.receive(_text(data=b"gets=All\0", ttt=first.reply.ttt))
    assert out.reply is not None and _kv(out.reply.data) == {"SendTargets": "Reject"}
    assert tn.receive(_text(data=b"", ttt=0x1234)).error  # unknown TTT
    assert tn.receive(_text(data=b"a=1\0", final=True, cont=True)).error
    assert tn.receive(_text(data=b"A=1\0A=2\0")).error  # duplicate key
    assert tn.receive(_text(data=b"no-equals\0")).error
    assert tn.answer([("A", "1"), ("A", "2")]) == [("A", "NotUnderstood"), ("A", "Reject")]


def test_text_negotiator_non_final_request_keeps_exchange_open() -> None:
    tn = TextNegotiator(SETTINGS, ConnectionParams(), SessionParams())
    out = tn.receive(_text(data=b"X-a=1\0", final=False))
    assert out.reply is not None and not out.reply.final and out.reply.ttt != RESERVED_TAG
    out2 = tn.receive(_text(data=b"", ttt=out.reply.ttt))
    assert out2.reply is not None and out2.reply.final


def test_identical_declaration_may_repeat_but_a_changed_one_or_a_negotiated_key_may_not() -> None:
    # libiscsi repeats InitiatorName/SessionType in every security-stage PDU of a CHAP login (LIO accepts it)
    neg = LoginNegotiator(target_settings({}), discovery=True)
    neg.process([("InitiatorName", "iqn.2026-11.x:i"), ("SessionType", "Discovery")], security_stage=True)
    neg.process([("InitiatorName", "iqn.2026-11.x:i"), ("SessionType", "Discovery")], security_stage=True)
    with pytest.raises(NegotiationError):
        neg.process([("InitiatorName", "iqn.2026-11.x:other")], security_stage=True)
    neg2 = LoginNegotiator(target_settings({}))
    neg2.process([("MaxBurstLength", "65536")], security_stage=False)
    with pytest.raises(NegotiationError):
        neg2.process([("MaxBurstLength", "65536")], security_stage=False)


def test_target_offers_only_keys_whose_rfc_default_the_configuration_rejects() -> None:
    configured = {
        "MaxBurstLength": "131072",  # differs from 262144: offered
        "FirstBurstLength": "65536",  # the RFC default: nothing to offer
        "InitialR2T": "No",  # differs: offered
        "HeaderDigest": "CRC32C,None",  # the default None is acceptable: not offered
        "DataDigest": "CRC32C",  # None not acceptable: offered
        "AuthMethod": "CHAP",  # security stage: never offered here
        "TargetAlias": "tgt",  # a declaration, not a negotiation
        "MaxXmitDataSegmentLength": "65536",  # not an RFC key
        "DefaultTime2Wait": "bogus",  # invalid: ignored
    }
    n = LoginNegotiator(target_settings(configured), configured=configured)
    n.process([("ImmediateData", "Yes")], security_stage=False)
    assert n.proposals() == [("MaxBurstLength", "131072"), ("InitialR2T", "No"), ("DataDigest", "CRC32C")]
    assert n.offers_pending and n.proposals() == []  # once per login
    n.process(
        [("MaxBurstLength", "4096"), ("InitialR2T", "No"), ("DataDigest", "CRC32C")], security_stage=False
    )
    assert not n.offers_pending
    assert n.values["MaxBurstLength"] == "4096" and n.values["InitialR2T"] == "No"
    assert n.connection_params(0).data_digest
