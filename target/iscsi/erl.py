"""Error recovery levels (RFC 7143 section 7): what each ErrorRecoveryLevel obliges the target to do, as data.

ERL 0 (session recovery) is what this target implements: any connection failure ends the session's tasks
on that connection, and the initiator recovers by reinstating the session. Within-command recovery
(ERL 1: SNACK, DataACK, retransmission of Data-In/R2T/status) and within-connection recovery (ERL 2:
logout for recovery, task reassignment, Time2Retain) are not offered; the helpers below give the
standard's answer when an initiator asks for them anyway.
"""

from __future__ import annotations

import enum

from target.pdu.pdus import LogoutResponseCode, RejectReason, TmfResponse


class ErrorRecoveryLevel(enum.IntEnum):
    SESSION = 0  # session recovery only
    DIGEST = 1  # + within-command / within-connection recovery (SNACK)
    CONNECTION = 2  # + connection recovery (task reassignment)


#: the highest level this target implements (offered in login negotiation as ErrorRecoveryLevel=0 by LIO too)
IMPLEMENTED = ErrorRecoveryLevel.SESSION


def snack_supported(erl: int) -> bool:
    """SNACK is mandatory only at ERL >= 1 (RFC 7143 11.16); at ERL 0 it gets Reject (protocol error)."""
    return erl >= ErrorRecoveryLevel.DIGEST and IMPLEMENTED >= ErrorRecoveryLevel.DIGEST


def snack_reject_reason() -> RejectReason:
    return RejectReason.PROTOCOL_ERROR


def connection_recovery_supported(erl: int) -> bool:
    """Logout "remove the connection for recovery" and TASK REASSIGN need ERL 2 (RFC 7143 6.2.2, 7.1.4)."""
    return erl >= ErrorRecoveryLevel.CONNECTION and IMPLEMENTED >= ErrorRecoveryLevel.CONNECTION


def remove_for_recovery_response(erl: int) -> LogoutResponseCode:
    if connection_recovery_supported(erl):  # pragma: no cover - not implemented
        return LogoutResponseCode.CLOSED
    return LogoutResponseCode.RECOVERY_NOT_SUPPORTED


def task_reassign_response(erl: int) -> TmfResponse:
    """RFC 7143 11.6.1: at ERL < 2 the answer is "Task reassignment not supported" (4)."""
    return TmfResponse.TASK_REASSIGN_NOT_SUPPORTED


def time2retain(erl: int, negotiated: int) -> int:
    """Time2Retain in a Logout Response: meaningful only when connection recovery is possible."""
    return negotiated if connection_recovery_supported(erl) else 0
