"""Sense data: sense keys, additional sense codes, and the CHECK CONDITION exception (SPC-4 4.5).

A handler that must fail a command raises `CheckCondition`; the device turns it into a CHECK CONDITION
`ScsiResult` with sense data in the format the control mode page's D_SENSE bit selects (fixed, SPC-4 4.5.3,
or descriptor, SPC-4 4.5.2). Field pointers (SPC-4 4.5.2.4.2, sense key specific "field pointer" bytes) point
at the offending CDB byte/bit (`cd=True`) or parameter-list byte/bit (`cd=False`).

Statuses other than CHECK CONDITION (RESERVATION CONFLICT, BUSY, TASK SET FULL) are raised as `StatusError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from target.scsi.command import ScsiResult, ScsiStatus


class SenseKey(enum.IntEnum):
    """SPC-4 4.5.6, table 27."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


class Asc(enum.IntEnum):
    """Additional sense code and qualifier, as (ASC << 8) | ASCQ (SPC-4 4.5.6, table 28)."""

    NO_ADDITIONAL_SENSE = 0x0000
    LOGICAL_UNIT_NOT_READY_CAUSE_NOT_REPORTABLE = 0x0400
    LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION_REQUIRED = 0x0403
    LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION = 0x040A
    LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE = 0x040B
    LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE = 0x040C
    LOGICAL_UNIT_NOT_READY_OFFLINE = 0x0412  # LIO answers a port in the offline ALUA state with it
    LOGICAL_UNIT_COMMUNICATION_FAILURE = 0x0800
    UNREACHABLE_COPY_TARGET = 0x0804
    WRITE_ERROR = 0x0C00
    COPY_TARGET_DEVICE_NOT_REACHABLE = 0x0D02
    INCORRECT_COPY_TARGET_DEVICE_TYPE = 0x0D03
    INVALID_INFORMATION_UNIT = 0x0E00
    INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT = 0x0E03
    LOGICAL_BLOCK_GUARD_CHECK_FAILED = 0x1001
    LOGICAL_BLOCK_APPLICATION_TAG_CHECK_FAILED = 0x1002
    LOGICAL_BLOCK_REFERENCE_TAG_CHECK_FAILED = 0x1003
    UNRECOVERED_READ_ERROR = 0x1100
    PARAMETER_LIST_LENGTH_ERROR = 0x1A00
    MISCOMPARE_DURING_VERIFY_OPERATION = 0x1D00
    INVALID_COMMAND_OPERATION_CODE = 0x2000
    ACCESS_DENIED_NO_ACCESS_RIGHTS = 0x2002
    LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE = 0x2100
    INVALID_FIELD_IN_CDB = 0x2400
    LOGICAL_UNIT_NOT_SUPPORTED = 0x2500
    INVALID_FIELD_IN_PARAMETER_LIST = 0x2600
    PARAMETER_NOT_SUPPORTED = 0x2601
    PARAMETER_VALUE_INVALID = 0x2602
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = 0x2604
    TOO_MANY_TARGET_DESCRIPTORS = 0x2606
    UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE = 0x2607
    TOO_MANY_SEGMENT_DESCRIPTORS = 0x2608
    UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE = 0x2609
    UNEXPECTED_INEXACT_SEGMENT = 0x260A
    INLINE_DATA_LENGTH_EXCEEDED = 0x260B
    INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION = 0x260C
    COPY_SEGMENT_GRANULARITY_VIOLATION = 0x260D
    WRITE_PROTECTED = 0x2700
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = 0x2707
    NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED = 0x2800
    POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED = 0x2900
    POWER_ON_OCCURRED = 0x2901
    SCSI_BUS_RESET_OCCURRED = 0x2902
    BUS_DEVICE_RESET_FUNCTION_OCCURRED = 0x2903
    DEVICE_INTERNAL_RESET = 0x2904
    I_T_NEXUS_LOSS_OCCURRED = 0x2907
    PARAMETERS_CHANGED = 0x2A00
    MODE_PARAMETERS_CHANGED = 0x2A01
    LOG_PARAMETERS_CHANGED = 0x2A02
    RESERVATIONS_PREEMPTED = 0x2A03
    RESERVATIONS_RELEASED = 0x2A04
    REGISTRATIONS_PREEMPTED = 0x2A05
    ASYMMETRIC_ACCESS_STATE_CHANGED = 0x2A06
    IMPLICIT_ASYMMETRIC_ACCESS_STATE_TRANSITION_FAILED = 0x2A07
    PRIORITY_CHANGED = 0x2A08
    CAPACITY_DATA_HAS_CHANGED = 0x2A09
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = 0x2F00
    COMMANDS_CLEARED_BY_DEVICE_SERVER = 0x2F02
    THIN_PROVISIONING_SOFT_THRESHOLD_REACHED = 0x3807
    SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900
    MEDIUM_NOT_PRESENT = 0x3A00
    LOGICAL_UNIT_FAILURE = 0x3E01
    INQUIRY_DATA_HAS_CHANGED = 0x3F03
    REPORTED_LUNS_DATA_HAS_CHANGED = 0x3F0E
    INTERNAL_TARGET_FAILURE = 0x4400
    #: SPC-4 5.13.5.3.2: with sense key DATA PROTECT, while a recoverable lost persistent reservation condition
    #: exists (T10 ASC table: 44h/01h)
    PERSISTENT_RESERVATION_INFORMATION_LOST = 0x4401
    INITIATOR_DETECTED_ERROR_MESSAGE_RECEIVED = 0x4800
    INVALID_MESSAGE_ERROR = 0x4900
    DATA_PHASE_ERROR = 0x4B00
    OVERLAPPED_COMMANDS_ATTEMPTED = 0x4E00
    INSUFFICIENT_RESOURCES = 0x5503
    INSUFFICIENT_REGISTRATION_RESOURCES = 0x5504

    @property
    def asc(self) -> int:
        return self.value >> 8

    @property
    def ascq(self) -> int:
        return self.value & 0xFF


class SenseFormat(enum.IntEnum):
    """Response codes (SPC-4 4.5.1, table 12)."""

    FIXED_CURRENT = 0x70
    FIXED_DEFERRED = 0x71
    DESCRIPTOR_CURRENT = 0x72
    DESCRIPTOR_DEFERRED = 0x73


@dataclass(frozen=True, slots=True)
class FieldPointer:
    """Sense key specific "field pointer" (SPC-4 4.5.2.4.2): which CDB / parameter-list byte (and bit) is bad."""

    byte: int
    bit: int | None = None  # None: the whole byte (BPV=0)
    cd: bool = True  # True: in the CDB; False: in the parameter data

    def encode(self) -> bytes:
        """The 3 sense-key-specific bytes with SKSV=1."""
        b0 = 0x80 | (0x40 if self.cd else 0)
        if self.bit is not None:
            b0 |= 0x08 | (self.bit & 0x07)
        return bytes((b0, (self.byte >> 8) & 0xFF, self.byte & 0xFF))


def build_sense(
    key: SenseKey,
    asc: Asc | int,
    *,
    descriptor: bool = False,
    field: FieldPointer | None = None,
    information: int | None = None,
    sks: bytes | None = None,
) -> bytes:
    """Encode sense data. `asc` is an `Asc` or a raw (ASC << 8) | ASCQ. `sks` overrides the sense key specific
    bytes (3 bytes, SKSV set by the caller) when something other than a field pointer is reported (e.g. progress).
    """
    code = int(asc)
    asc_b, ascq_b = (code >> 8) & 0xFF, code & 0xFF
    sks_bytes = sks if sks is not None else (field.encode() if field is not None else None)
    if descriptor:
        # SPC-4 4.5.2: 8-byte header + descriptors
        descs = bytearray()
        if information is not None:
            # information descriptor (4.5.2.2): type 00h, additional length 0Ah, VALID=1
            descs += bytes((0x00, 0x0A, 0x80, 0x00)) + (information & (2**64 - 1)).to_bytes(8, "big")
        if sks_bytes is not None:
            # sense key specific descriptor (4.5.2.4): type 02h, additional length 06h
            descs += bytes((0x02, 0x06, 0x00, 0x00)) + sks_bytes + b"\x00"
        hdr = bytes((SenseFormat.DESCRIPTOR_CURRENT, int(key) & 0x0F, asc_b, ascq_b, 0, 0, 0, len(descs)))
        return hdr + bytes(descs)
    # SPC-4 4.5.3: fixed format, 18 bytes (additional sense length 10)
    buf = bytearray(18)
    buf[0] = SenseFormat.FIXED_CURRENT
    buf[2] = int(key) & 0x0F
    if information is not None and information < 2**32:
        buf[0] |= 0x80  # VALID
        buf[3:7] = information.to_bytes(4, "big")
    buf[7] = 10
    buf[12] = asc_b
    buf[13] = ascq_b
    if sks_bytes is not None:
        buf[15:18] = sks_bytes
    return bytes(buf)


def parse_sense(sense: bytes) -> tuple[SenseKey, int]:
    """(sense key, (ASC << 8) | ASCQ) of fixed or descriptor sense data (for tests and REQUEST SENSE)."""
    if len(sense) < 4:
        raise ValueError("short sense data")
    code = sense[0] & 0x7F
    if code in (SenseFormat.DESCRIPTOR_CURRENT, SenseFormat.DESCRIPTOR_DEFERRED):
        return SenseKey(sense[1] & 0x0F), (sense[2] << 8) | sense[3]
    if len(sense) < 14:
        raise ValueError("short fixed sense data")
    return SenseKey(sense[2] & 0x0F), (sense[12] << 8) | sense[13]


class CheckCondition(Exception):
    """Terminate the command with CHECK CONDITION and this sense (raised by handlers and gates)."""

    def __init__(
        self,
        key: SenseKey,
        asc: Asc | int,
        *,
        field: FieldPointer | None = None,
        information: int | None = None,
        sks: bytes | None = None,
        message: str = "",
    ) -> None:
        self.key = key
        self.asc = asc
        self.field = field
        self.information = information
        self.sks = sks
        super().__init__(message or f"{key.name} {asc:#06x}")

    def sense(self, *, descriptor: bool = False) -> bytes:
        return build_sense(
            self.key,
            self.asc,
            descriptor=descriptor,
            field=self.field,
            information=self.information,
            sks=self.sks,
        )

    def result(self, *, descriptor: bool = False) -> ScsiResult:
        return ScsiResult(status=ScsiStatus.CHECK_CONDITION, sense=self.sense(descriptor=descriptor))

    # --- the common ones -------------------------------------------------------------------------------------

    @classmethod
    def invalid_cdb(cls, byte: int, bit: int | None = None) -> CheckCondition:
        """ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at CDB byte `byte` (bit `bit`)."""
        return cls(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, field=FieldPointer(byte, bit, cd=True))

    @classmethod
    def invalid_param(cls, byte: int, bit: int | None = None) -> CheckCondition:
        """ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing at parameter byte `byte` (bit `bit`)."""
        return cls(
            SenseKey.ILLEGAL_REQUEST,
            Asc.INVALID_FIELD_IN_PARAMETER_LIST,
            field=FieldPointer(byte, bit, cd=False),
        )

    @classmethod
    def param_list_length_error(cls) -> CheckCondition:
        return cls(SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR)

    @classmethod
    def invalid_opcode(cls) -> CheckCondition:
        return cls(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE)

    @classmethod
    def lba_out_of_range(cls) -> CheckCondition:
        return cls(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE)

    @classmethod
    def write_protected(cls) -> CheckCondition:
        return cls(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)

    @classmethod
    def lun_not_supported(cls) -> CheckCondition:
        return cls(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED)

    @classmethod
    def pr_information_lost(cls) -> CheckCondition:
        """DATA PROTECT / PERSISTENT RESERVATION INFORMATION LOST (SPC-4 5.13.5.3.2)."""
        return cls(SenseKey.DATA_PROTECT, Asc.PERSISTENT_RESERVATION_INFORMATION_LOST)


class StatusError(Exception):
    """Terminate the command with a status that carries no sense (RESERVATION CONFLICT, BUSY, TASK SET FULL)."""

    def __init__(self, status: ScsiStatus, message: str = "") -> None:
        self.status = status
        super().__init__(message or status.name)

    def result(self) -> ScsiResult:
        return ScsiResult(status=self.status)
