"""iSCSI PDUs (RFC 7143 section 11) as frozen dataclasses: one class per opcode.

Field names follow the RFC (snake_case). Sequence numbers and tags are plain ints (32-bit, unsigned).
`lun` is the raw 8-byte LUN field as an unsigned 64-bit int (see `target.pdu.lun` for SAM addressing).
`isid` is the 6-byte ISID as an unsigned 48-bit int. `data` is the data segment without padding or digest
(bytes or a memoryview into a receive buffer). The codec (`target.pdu.codec`) turns these into bytes and back;
nothing in this module touches the wire format.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from target.pdu.fastinit import fast_frozen_init

RESERVED_TAG = 0xFFFFFFFF  # "reserved" ITT/TTT value (RFC 7143 11.2.1.8/11.18)
BHS_LENGTH = 48


class Opcode(enum.IntEnum):
    """RFC 7143 11.2.1.2. Initiator opcodes 0x00-0x1f, target opcodes 0x20-0x3f."""

    NOP_OUT = 0x00
    SCSI_COMMAND = 0x01
    TASK_MGMT_REQUEST = 0x02
    LOGIN_REQUEST = 0x03
    TEXT_REQUEST = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQUEST = 0x06
    SNACK_REQUEST = 0x10
    NOP_IN = 0x20
    SCSI_RESPONSE = 0x21
    TASK_MGMT_RESPONSE = 0x22
    LOGIN_RESPONSE = 0x23
    TEXT_RESPONSE = 0x24
    DATA_IN = 0x25
    LOGOUT_RESPONSE = 0x26
    R2T = 0x31
    ASYNC_MESSAGE = 0x32
    REJECT = 0x3F


class TaskAttribute(enum.IntEnum):
    """SCSI Command ATTR field (RFC 7143 11.3.1.2)."""

    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


class TmfFunction(enum.IntEnum):
    """RFC 7143 11.5.1."""

    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TmfResponse(enum.IntEnum):
    """RFC 7143 11.6.1."""

    COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    TASK_REASSIGN_NOT_SUPPORTED = 4
    NOT_SUPPORTED = 5
    AUTHORIZATION_FAILED = 6
    REJECTED = 255


class ScsiResponseCode(enum.IntEnum):
    """iSCSI Response field of the SCSI Response PDU (RFC 7143 11.4.3)."""

    COMMAND_COMPLETED = 0x00
    TARGET_FAILURE = 0x01


class LogoutReason(enum.IntEnum):
    CLOSE_SESSION = 0
    CLOSE_CONNECTION = 1
    REMOVE_FOR_RECOVERY = 2


class LogoutResponseCode(enum.IntEnum):
    CLOSED = 0
    CID_NOT_FOUND = 1
    RECOVERY_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class RejectReason(enum.IntEnum):
    """RFC 7143 11.17.1."""

    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OPERATION_REJECT = 0x0A
    DEPRECATED_NEGOTIATION_RESET = 0x0B
    WAITING_FOR_LOGOUT = 0x0C


class AsyncEvent(enum.IntEnum):
    """RFC 7143 11.9.1."""

    SCSI_ASYNC_EVENT = 0
    LOGOUT_REQUEST = 1
    CONNECTION_DROP = 2
    SESSION_DROP = 3
    NEGOTIATION_REQUEST = 4
    TASK_TERMINATION = 5
    VENDOR_SPECIFIC = 255


class SnackType(enum.IntEnum):
    DATA_R2T = 0
    STATUS = 1
    DATA_ACK = 2
    R_DATA = 3


class Stage(enum.IntEnum):
    """Login stages (CSG/NSG), RFC 7143 11.12.3."""

    SECURITY = 0
    OPERATIONAL = 1
    FULL_FEATURE = 3


class LoginStatus(enum.IntEnum):
    """(class << 8) | detail, RFC 7143 11.13.5."""

    SUCCESS = 0x0000
    TARGET_MOVED_TEMPORARILY = 0x0101
    TARGET_MOVED_PERMANENTLY = 0x0102
    INITIATOR_ERROR = 0x0200
    AUTHENTICATION_FAILURE = 0x0201
    AUTHORIZATION_FAILURE = 0x0202
    NOT_FOUND = 0x0203
    TARGET_REMOVED = 0x0204
    UNSUPPORTED_VERSION = 0x0205
    TOO_MANY_CONNECTIONS = 0x0206
    MISSING_PARAMETER = 0x0207
    CANT_INCLUDE_IN_SESSION = 0x0208
    SESSION_TYPE_NOT_SUPPORTED = 0x0209
    SESSION_DOES_NOT_EXIST = 0x020A
    INVALID_DURING_LOGIN = 0x020B
    TARGET_ERROR = 0x0300
    SERVICE_UNAVAILABLE = 0x0301
    OUT_OF_RESOURCES = 0x0302

    @property
    def status_class(self) -> int:
        return self.value >> 8

    @property
    def status_detail(self) -> int:
        return self.value & 0xFF


# --------------------------------------------------------------------------- initiator -> target


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class NopOut:
    itt: int
    cmdsn: int
    exp_statsn: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    immediate: bool = False
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.NOP_OUT, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ScsiCommand:
    itt: int
    cmdsn: int
    exp_statsn: int
    cdb: bytes  # the whole CDB: 16 bytes from the BHS (trailing zeros kept) plus any extended-CDB AHS bytes
    expected_data_length: int = 0
    lun: int = 0
    read: bool = False
    write: bool = False
    final: bool = True
    attr: TaskAttribute = TaskAttribute.SIMPLE
    immediate: bool = False
    bidi_read_length: int | None = None  # Bidirectional Read Expected Data Transfer Length AHS
    data: bytes | memoryview = b""  # immediate data
    opcode: Opcode = field(default=Opcode.SCSI_COMMAND, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class TaskMgmtRequest:
    itt: int
    cmdsn: int
    exp_statsn: int
    function: int  # TmfFunction value; kept an int so unknown functions reach the "not supported" answer
    lun: int = 0
    rtt: int = RESERVED_TAG  # Referenced Task Tag
    ref_cmdsn: int = 0
    exp_datasn: int = 0
    immediate: bool = False
    opcode: Opcode = field(default=Opcode.TASK_MGMT_REQUEST, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LoginRequest:
    itt: int
    isid: int
    tsih: int
    cid: int
    cmdsn: int
    exp_statsn: int
    csg: int
    nsg: int
    transit: bool = False
    cont: bool = False
    version_max: int = 0
    version_min: int = 0
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.LOGIN_REQUEST, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class TextRequest:
    itt: int
    cmdsn: int
    exp_statsn: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    final: bool = True
    cont: bool = False
    immediate: bool = False
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.TEXT_REQUEST, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class DataOut:
    itt: int
    ttt: int
    exp_statsn: int
    datasn: int
    buffer_offset: int
    lun: int = 0
    final: bool = False
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.DATA_OUT, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LogoutRequest:
    itt: int
    cmdsn: int
    exp_statsn: int
    reason: int  # LogoutReason value
    cid: int = 0
    immediate: bool = False
    opcode: Opcode = field(default=Opcode.LOGOUT_REQUEST, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class SnackRequest:
    itt: int
    exp_statsn: int
    type: int  # SnackType value
    ttt: int = RESERVED_TAG
    lun: int = 0
    begrun: int = 0
    runlength: int = 0
    opcode: Opcode = field(default=Opcode.SNACK_REQUEST, init=False, repr=False)


# --------------------------------------------------------------------------- target -> initiator


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class NopIn:
    itt: int
    ttt: int
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    lun: int = 0
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.NOP_IN, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ScsiResponse:
    itt: int
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    status: int  # SCSI status byte (target.scsi.status.ScsiStatus)
    response: int = ScsiResponseCode.COMMAND_COMPLETED
    exp_datasn: int = 0
    residual: int = 0
    bidi_residual: int = 0
    overflow: bool = False  # O: residual overflow
    underflow: bool = False  # U: residual underflow
    bidi_overflow: bool = False  # o
    bidi_underflow: bool = False  # u
    snack_tag: int = 0
    data: bytes | memoryview = b""  # SenseLength (2 bytes) + sense data, or empty
    opcode: Opcode = field(default=Opcode.SCSI_RESPONSE, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class TaskMgmtResponse:
    itt: int
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    response: int  # TmfResponse value
    opcode: Opcode = field(default=Opcode.TASK_MGMT_RESPONSE, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LoginResponse:
    itt: int
    isid: int
    tsih: int
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    csg: int
    nsg: int
    transit: bool = False
    cont: bool = False
    version_max: int = 0
    version_active: int = 0
    status_class: int = 0
    status_detail: int = 0
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.LOGIN_RESPONSE, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class TextResponse:
    itt: int
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    final: bool = True
    cont: bool = False
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.TEXT_RESPONSE, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class DataIn:
    itt: int
    datasn: int
    buffer_offset: int
    exp_cmdsn: int
    max_cmdsn: int
    statsn: int = 0  # meaningful only with status_present
    ttt: int = RESERVED_TAG
    lun: int = 0
    final: bool = False
    ack: bool = False  # A bit (DataACK SNACK requested, ERL>0)
    status_present: bool = False  # S bit: phase-collapsed status
    status: int = 0
    overflow: bool = False
    underflow: bool = False
    residual: int = 0
    data: bytes | memoryview = b""
    opcode: Opcode = field(default=Opcode.DATA_IN, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LogoutResponse:
    itt: int
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    response: int = LogoutResponseCode.CLOSED
    time2wait: int = 0
    time2retain: int = 0
    opcode: Opcode = field(default=Opcode.LOGOUT_RESPONSE, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class R2T:
    itt: int
    ttt: int
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    r2tsn: int
    buffer_offset: int
    desired_length: int
    lun: int = 0
    opcode: Opcode = field(default=Opcode.R2T, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class AsyncMessage:
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    async_event: int  # AsyncEvent value
    async_vcode: int = 0
    parameter1: int = 0
    parameter2: int = 0
    parameter3: int = 0
    lun: int = 0
    data: bytes | memoryview = b""  # SenseLength + sense data for SCSI_ASYNC_EVENT
    opcode: Opcode = field(default=Opcode.ASYNC_MESSAGE, init=False, repr=False)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Reject:
    reason: int  # RejectReason value
    statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    datasn_r2tsn: int = 0
    data: bytes | memoryview = b""  # the rejected PDU's BHS (48 bytes)
    opcode: Opcode = field(default=Opcode.REJECT, init=False, repr=False)


InitiatorPdu = (
    NopOut
    | ScsiCommand
    | TaskMgmtRequest
    | LoginRequest
    | TextRequest
    | DataOut
    | LogoutRequest
    | SnackRequest
)
TargetPdu = (
    NopIn
    | ScsiResponse
    | TaskMgmtResponse
    | LoginResponse
    | TextResponse
    | DataIn
    | LogoutResponse
    | R2T
    | AsyncMessage
    | Reject
)
Pdu = InitiatorPdu | TargetPdu
