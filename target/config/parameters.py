"""The iSCSI login keys a TPG may configure ("parameters"), with their value syntax (RFC 7143 section 13).

This is only the configuration-time check: the login team's negotiation table decides how the configured
value combines with the initiator's offer. Key names are case-sensitive (RFC 7143 6.1). LIO's own key
MaxXmitDataSegmentLength (the target's cap on what it sends) and the obsolete marker keys that LIO still
lists (RFC 7143 dropped markers; only "No" makes sense) are accepted so LIO configs import cleanly.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping

#: RFC 7143 13.12 (MaxRecvDataSegmentLength), 13.13-13.14 (burst lengths): 512 to 2**24-1
_SEGMENT_MIN = 512
_SEGMENT_MAX = 2**24 - 1

Checker = Callable[[str], str | None]


def _number(lo: int, hi: int) -> Checker:
    def check(value: str) -> str | None:
        try:
            # RFC 7143 6.1: numbers are decimal or hex constants ("0x...")
            n = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            return f"{value!r} is not a number"
        if value.strip() != value or not lo <= n <= hi:
            return f"{value!r} is not in the range {lo}-{hi}"
        return None

    return check


def _boolean(value: str) -> str | None:
    return None if value in ("Yes", "No") else f"{value!r} is not Yes or No"


def _list_of(*allowed: str) -> Checker:
    def check(value: str) -> str | None:
        items = value.split(",")
        bad = [v for v in items if v not in allowed]
        if bad or not value:
            return f"{value!r} is not a comma-separated list of {', '.join(allowed)}"
        if len(set(items)) != len(items):
            return f"{value!r} lists a value twice"
        return None

    return check


def _text(max_bytes: int) -> Checker:
    def check(value: str) -> str | None:
        if len(value.encode("utf-8")) > max_bytes:
            return f"value is longer than {max_bytes} bytes"
        if any(ord(ch) < 0x20 for ch in value):
            return "value contains control characters"
        return None

    return check


def _no_markers(value: str) -> str | None:
    if value != "No":
        return f"{value!r}: markers are not supported (RFC 7143 removed them); use No"
    return None


def _marker_interval(value: str) -> str | None:
    # LIO lists "2048~65535"; RFC 3720 12.18: a range or a number in 1-65535; "Reject"/"Irrelevant" after
    # a negotiation that turned markers down
    if value in ("Reject", "Irrelevant"):
        return None
    parts = value.split("~")
    if len(parts) > 2 or not all(p.isdigit() and 1 <= int(p) <= 65535 for p in parts):
        return f"{value!r} is not a marker interval (N or N~M, 1-65535)"
    return None


#: key -> value checker. Declarative: the table is the spec.
TPG_PARAMETERS: Mapping[str, Checker] = {
    "AuthMethod": _list_of("CHAP", "None"),  # 12.1: the methods we implement
    "HeaderDigest": _list_of("CRC32C", "None"),  # 13.1
    "DataDigest": _list_of("CRC32C", "None"),  # 13.1
    "MaxConnections": _number(1, 65535),  # 13.2
    "TargetAlias": _text(255),  # 13.6
    "InitialR2T": _boolean,  # 13.10
    "ImmediateData": _boolean,  # 13.11
    "MaxRecvDataSegmentLength": _number(_SEGMENT_MIN, _SEGMENT_MAX),  # 13.12
    "MaxXmitDataSegmentLength": _number(_SEGMENT_MIN, _SEGMENT_MAX),  # LIO-specific
    "MaxBurstLength": _number(_SEGMENT_MIN, _SEGMENT_MAX),  # 13.13
    "FirstBurstLength": _number(_SEGMENT_MIN, _SEGMENT_MAX),  # 13.14
    "DefaultTime2Wait": _number(0, 3600),  # 13.15
    "DefaultTime2Retain": _number(0, 3600),  # 13.16
    "MaxOutstandingR2T": _number(1, 65535),  # 13.17
    "DataPDUInOrder": _boolean,  # 13.18
    "DataSequenceInOrder": _boolean,  # 13.19
    "ErrorRecoveryLevel": _number(0, 2),  # 13.20
    # RFC 7145 (iSER) keys LIO lists on every TPG; they only matter on iSER portals, which we do not serve
    "RDMAExtensions": _boolean,
    "InitiatorRecvDataSegmentLength": _number(_SEGMENT_MIN, _SEGMENT_MAX),
    "TargetRecvDataSegmentLength": _number(_SEGMENT_MIN, _SEGMENT_MAX),
    "IFMarker": _no_markers,  # RFC 3720 A.3 (obsolete)
    "OFMarker": _no_markers,
    "IFMarkInt": _marker_interval,
    "OFMarkInt": _marker_interval,
}


def check_parameter(name: str, value: str) -> str | None:
    """Problem with one configured key, or None."""
    checker = TPG_PARAMETERS.get(name)
    if checker is None:
        lowered = {k.lower(): k for k in TPG_PARAMETERS}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.8)
        hint = lowered[close[0]] if close else None
        suffix = f" (did you mean {hint!r}?)" if hint else ""
        return f"{name!r} is not an iSCSI key a target can configure{suffix}"
    return checker(value)


def check_parameter_set(params: Mapping[str, str]) -> list[tuple[str, str]]:
    """Cross-key rules: [(key, problem)]. Assumes the single keys were checked."""
    problems: list[tuple[str, str]] = []
    first, max_burst = params.get("FirstBurstLength"), params.get("MaxBurstLength")
    if first is not None and max_burst is not None:
        try:
            if int(first, 0) > int(max_burst, 0):
                # RFC 7143 13.14: FirstBurstLength MUST NOT exceed MaxBurstLength
                problems.append(
                    ("FirstBurstLength", f"{first} exceeds MaxBurstLength {max_burst} (RFC 7143 13.14)")
                )
        except ValueError:
            pass
    return problems
