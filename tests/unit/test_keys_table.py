"""The key table (RFC 7143 section 13) as data."""

from __future__ import annotations

from target.iscsi import keys as K


def test_table_covers_rfc7143_keys() -> None:
    expected = {
        "HeaderDigest", "DataDigest", "MaxConnections", "SendTargets", "TargetName", "InitiatorName",
        "TargetAlias", "InitiatorAlias", "TargetAddress", "TargetPortalGroupTag", "InitialR2T", "ImmediateData",
        "MaxRecvDataSegmentLength", "MaxBurstLength", "FirstBurstLength", "DefaultTime2Wait",
        "DefaultTime2Retain", "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder",
        "ErrorRecoveryLevel", "SessionType", "AuthMethod", "TaskReporting", "iSCSIProtocolLevel",
        "OFMarker", "IFMarker", "OFMarkInt", "IFMarkInt", "RDMAExtensions",
    }  # fmt: skip
    assert expected <= set(K.KEYS)


def test_rows_match_the_rfc() -> None:
    assert (
        K.KEYS["MaxBurstLength"].kind is K.KeyKind.NUMERICAL_MIN
        and K.KEYS["MaxBurstLength"].default == "262144"
    )
    assert K.KEYS["DefaultTime2Wait"].kind is K.KeyKind.NUMERICAL_MAX
    assert (
        K.KEYS["InitialR2T"].kind is K.KeyKind.BOOLEAN_OR
        and K.KEYS["ImmediateData"].kind is K.KeyKind.BOOLEAN_AND
    )
    assert K.KEYS["MaxRecvDataSegmentLength"].kind is K.KeyKind.DECLARATIVE
    assert K.KEYS["MaxRecvDataSegmentLength"].scope is K.Scope.CONNECTION
    assert K.KEYS["ErrorRecoveryLevel"].leading_only and (K.KEYS["ErrorRecoveryLevel"].maximum == 2)
    assert K.KEYS["HeaderDigest"].use is K.Use.IO and K.KEYS["SendTargets"].use is K.Use.FFP
    assert (
        K.KEYS["MaxConnections"].irrelevant_in_discovery
        and not K.KEYS["HeaderDigest"].irrelevant_in_discovery
    )
    assert {"AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"} == K.SECURITY_KEYS
    for kd in K.KEY_TABLE:
        if kd.kind in (K.KeyKind.NUMERICAL_MIN, K.KeyKind.NUMERICAL_MAX) and kd.default is not None:
            n = K.parse_number(kd.default)
            assert n is not None and kd.in_range(n), kd.name


def test_value_syntax() -> None:
    assert K.parse_number("0x1F") == 31 and K.parse_number("42") == 42
    for bad in ("", "-1", "+1", " 1", "0x", "1e3", "٣"):
        assert K.parse_number(bad) is None
    assert K.parse_boolean("Yes") is True and K.parse_boolean("yes") is None
    assert K.split_list("CRC32C,,None") == ["CRC32C", "None"]
    assert K.is_vendor_key("X-com.foo") and K.is_vendor_key("X#org.bar") and not K.is_vendor_key("Xfoo")
    assert (
        K.valid_key_name("MaxBurstLength") and not K.valid_key_name("a b") and not K.valid_key_name("x" * 64)
    )
