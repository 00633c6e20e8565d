"""Negotiated iSCSI parameters as typed values (RFC 7143 section 13).

`SessionParams` holds the session-wide (SW) results, fixed by the leading connection's login; `ConnectionParams`
the per-connection (CO) ones. Both are built by `target.iscsi.negotiation` from the negotiated key values and
read by the full feature phase (PDU sizes, digests, R2T and immediate-data rules, ERL, timers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from target.iscsi.keys import KEYS, parse_boolean, parse_number


class SessionType(enum.Enum):
    NORMAL = "Normal"
    DISCOVERY = "Discovery"


def _int(values: dict[str, str], key: str) -> int:
    raw = values.get(key)
    parsed = parse_number(raw) if raw is not None else None
    if parsed is None:
        default = KEYS[key].default
        assert default is not None
        parsed = parse_number(default)
        assert parsed is not None
    return parsed


def _bool(values: dict[str, str], key: str) -> bool:
    raw = values.get(key)
    parsed = parse_boolean(raw) if raw is not None else None
    if parsed is None:
        default = KEYS[key].default
        assert default is not None
        parsed = parse_boolean(default)
        assert parsed is not None
    return parsed


@dataclass(frozen=True, slots=True)
class SessionParams:
    """Session-wide negotiated values (defaults are RFC 7143's)."""

    session_type: SessionType = SessionType.NORMAL
    initiator_name: str = ""
    initiator_alias: str = ""
    target_name: str = ""  # empty in a discovery session
    target_alias: str = ""
    tpg_tag: int = 1
    isid: int = 0
    tsih: int = 0
    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    first_burst_length: int = 65536
    max_burst_length: int = 262144
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    default_time2wait: int = 2
    default_time2retain: int = 20
    error_recovery_level: int = 0
    protocol_level: int = 1
    task_reporting: str = "RFC3720"
    auth_method: str = "None"
    #: every negotiated key=value of the leading login (including the above), for logs and diagnostics
    values: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def discovery(self) -> bool:
        return self.session_type is SessionType.DISCOVERY

    @classmethod
    def from_values(
        cls,
        values: dict[str, str],
        *,
        initiator_name: str,
        target_name: str,
        tpg_tag: int,
        isid: int = 0,
        tsih: int = 0,
        target_alias: str = "",
    ) -> SessionParams:
        st = SessionType.DISCOVERY if values.get("SessionType") == "Discovery" else SessionType.NORMAL
        return cls(
            session_type=st,
            initiator_name=initiator_name,
            initiator_alias=values.get("InitiatorAlias", ""),
            target_name=target_name,
            target_alias=target_alias,
            tpg_tag=tpg_tag,
            isid=isid,
            tsih=tsih,
            max_connections=_int(values, "MaxConnections"),
            initial_r2t=_bool(values, "InitialR2T"),
            immediate_data=_bool(values, "ImmediateData"),
            first_burst_length=_int(values, "FirstBurstLength"),
            max_burst_length=_int(values, "MaxBurstLength"),
            max_outstanding_r2t=_int(values, "MaxOutstandingR2T"),
            data_pdu_in_order=_bool(values, "DataPDUInOrder"),
            data_sequence_in_order=_bool(values, "DataSequenceInOrder"),
            default_time2wait=_int(values, "DefaultTime2Wait"),
            default_time2retain=_int(values, "DefaultTime2Retain"),
            error_recovery_level=_int(values, "ErrorRecoveryLevel"),
            protocol_level=_int(values, "iSCSIProtocolLevel"),
            task_reporting=values.get("TaskReporting", "RFC3720"),
            auth_method=values.get("AuthMethod", "None"),
            values=dict(values),
        )


@dataclass(frozen=True, slots=True)
class ConnectionParams:
    """Per-connection negotiated values."""

    cid: int = 0
    #: the largest data segment the target accepts (its own declared MaxRecvDataSegmentLength)
    max_recv_data_segment_length: int = 8192
    #: the largest data segment the target may send (the initiator's declared MaxRecvDataSegmentLength,
    #: capped by the target's MaxXmitDataSegmentLength setting as LIO does)
    max_xmit_data_segment_length: int = 8192
    header_digest: bool = False
    data_digest: bool = False
    auth_method: str = "None"
    values: dict[str, str] = field(default_factory=dict, compare=False)
