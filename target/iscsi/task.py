"""One SCSI task as the iSCSI transport sees it: write-data collection (immediate data, unsolicited Data-Out,
R2T sequences) and read-data delivery (Data-In sequences, phase-collapsed status, residuals).

Theory of operation (RFC 7143 4.2.3 / 11.7 / 11.8)
--------------------------------------------------
A write task owns one preallocated buffer of EDTL bytes. Data arrives in three ways:

1. immediate data in the SCSI Command PDU (ImmediateData=Yes), at offset 0;
2. unsolicited Data-Out PDUs (InitialR2T=No and F=0 on the command), TTT 0xffffffff, continuing where the
   immediate data stopped, together no more than min(FirstBurstLength, EDTL); the last carries F=1;
3. solicited Data-Out answering R2Ts: each R2T asks for a contiguous range of at most MaxBurstLength bytes,
   at most MaxOutstandingR2T are outstanding; each R2T sequence has its own TTT and DataSN space from 0.

With DataPDUInOrder=Yes and DataSequenceInOrder=Yes (the values every initiator negotiates, and the only
ones this target offers) every sequence is filled strictly in increasing offset order, so progress is one
"next offset" per sequence. Once every byte is in, the task is ready to execute.

Reads: the SCSI result's data is cut into Data-In PDUs of at most MaxXmitDataSegmentLength (the initiator's
MaxRecvDataSegmentLength) bytes, grouped into sequences of at most MaxBurstLength bytes (F=1 on the last
PDU of each sequence), DataSN counting from 0 over the whole command. With status GOOD-like and no sense
data the last Data-In carries the status (S=1, 11.7.3), otherwise a SCSI Response follows.
Residuals (11.4.5): the initiator expected EDTL bytes; if the command produced more, only EDTL are sent
and the overflow is reported (O bit); if fewer, underflow (U bit).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from target.iscsi.params import ConnectionParams, SessionParams
from target.pdu.pdus import RESERVED_TAG, RejectReason
from target.scsi.command import ScsiStatus, TaskAttr

#: largest write buffer one command may preallocate (bytes); larger EDTLs get CHECK CONDITION
DEFAULT_MAX_TRANSFER = 64 * 1024 * 1024


class TaskState(enum.Enum):
    RECEIVING = "receiving"  # waiting for write data
    HELD = "held"  # all data in (or none needed), waiting for its CmdSN turn
    READY = "ready"  # delivered in CmdSN order and all data in: hand to the SCSI layer
    EXECUTING = "executing"
    DONE = "done"
    ABORTED = "aborted"


class DataOutError(Exception):
    """A Data-Out PDU that breaks the rules: carries the Reject reason it implies."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """The negotiated values a task needs (RFC 7143 13.x keys)."""

    max_xmit_data_segment_length: int = 8192  # initiator's MaxRecvDataSegmentLength
    max_recv_data_segment_length: int = 8192  # ours
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    max_outstanding_r2t: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    error_recovery_level: int = 0


@dataclass
class R2TState:
    ttt: int
    r2tsn: int
    offset: int
    length: int
    next_offset: int
    next_datasn: int = 0

    @property
    def complete(self) -> bool:
        return self.next_offset >= self.offset + self.length


@dataclass(frozen=True, slots=True)
class R2TRequest:
    """An R2T to send (the connection fills in StatSN/ExpCmdSN/MaxCmdSN)."""

    ttt: int
    r2tsn: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class DataInChunk:
    datasn: int
    offset: int
    data: memoryview
    final: bool  # F bit: last PDU of a sequence (MaxBurstLength) or of the command
    last: bool  # last Data-In of the command (where phase-collapsed status may ride)


@dataclass
class Task:
    """Transport state of one SCSI command on a connection (command allegiance)."""

    itt: int
    cmdsn: int
    lun_field: int  # raw 8-byte LUN field (echoed back in Data-In/R2T)
    lun: int  # decoded LUN number
    cdb: bytes
    attr: TaskAttr
    immediate: bool
    read: bool
    write: bool
    expected_data_length: int  # EDTL from the BHS: the write length (bidi) or the read length
    bidi_read_length: int | None
    limits: TransferLimits
    state: TaskState = TaskState.RECEIVING
    buffer: bytearray = field(default_factory=bytearray)
    received: int = 0  # bytes of write data in the buffer (contiguous from 0)
    unsolicited_open: bool = False  # unsolicited Data-Out (TTT 0xffffffff) still expected
    unsolicited_next_datasn: int = 0
    r2ts: dict[int, R2TState] = field(default_factory=dict)
    next_r2tsn: int = 0
    next_r2t_offset: int = 0  # where the next R2T starts
    r2t_count: int = 0  # R2Ts sent (for ExpDataSN of the response)
    datain_count: int = 0
    delivered: bool = False  # its CmdSN turn has come (always True for immediate commands)
    #: a response the transport already decided on (e.g. CHECK CONDITION for a too-large transfer)
    early_status: tuple[ScsiStatus, bytes] | None = None
    #: the direct READ/WRITE path was offered this command on arrival and refused it (not offered again)
    direct_refused: bool = False

    # ----------------------------------------------------------------------------------------- set-up

    @property
    def write_length(self) -> int:
        return self.expected_data_length if self.write else 0

    @property
    def read_length(self) -> int:
        if self.read and self.write:
            return self.bidi_read_length or 0
        return self.expected_data_length if self.read else 0

    @property
    def unsolicited_limit(self) -> int:
        """Bytes the initiator may send without R2T: min(FirstBurstLength, EDTL) (RFC 7143 13.14)."""
        return min(self.limits.first_burst_length, self.write_length)

    def start_write(self, immediate_data: bytes | memoryview, final: bool) -> None:
        """Take the command PDU's immediate data; `final` is the command's F bit."""
        length = self.write_length
        self.buffer = bytearray(length)
        n = len(immediate_data)
        if n:
            self.buffer[0:n] = immediate_data
        self.received = n
        self.next_r2t_offset = n
        # F=0 announces unsolicited Data-Out (only legal with InitialR2T=No, checked by the connection)
        self.unsolicited_open = not final and self.received < self.unsolicited_limit

    @property
    def all_data_in(self) -> bool:
        return self.received >= self.write_length

    # ----------------------------------------------------------------------------------------- R2T

    def next_r2ts(self, allocate_ttt: Iterator[int]) -> list[R2TRequest]:
        """R2Ts to send now: for what is neither received nor requested, within MaxOutstandingR2T."""
        out: list[R2TRequest] = []
        if self.unsolicited_open or self.state is TaskState.ABORTED:
            return out
        length = self.write_length
        while self.next_r2t_offset < length and len(self.r2ts) < self.limits.max_outstanding_r2t:
            chunk = min(self.limits.max_burst_length, length - self.next_r2t_offset)
            ttt = next(allocate_ttt)
            state = R2TState(
                ttt=ttt,
                r2tsn=self.next_r2tsn,
                offset=self.next_r2t_offset,
                length=chunk,
                next_offset=self.next_r2t_offset,
            )
            self.r2ts[ttt] = state
            out.append(R2TRequest(ttt, state.r2tsn, state.offset, chunk))
            self.next_r2tsn += 1
            self.r2t_count += 1
            self.next_r2t_offset += chunk
        return out

    # ----------------------------------------------------------------------------------------- Data-Out

    def data_out(self, ttt: int, datasn: int, offset: int, data: bytes | memoryview, final: bool) -> None:
        """Place one Data-Out PDU's payload. Raises DataOutError (the PDU is then discarded)."""
        n = len(data)
        if offset + n > self.write_length:
            # LIO: "DataOut Offset + Length greater than EDTL" -> reject, invalid PDU field
            raise DataOutError(
                RejectReason.INVALID_PDU_FIELD, "Data-Out beyond expected data transfer length"
            )
        if ttt == RESERVED_TAG:
            if not self.unsolicited_open:
                raise DataOutError(RejectReason.PROTOCOL_ERROR, "unsolicited Data-Out not expected")
            if datasn != self.unsolicited_next_datasn:
                raise DataOutError(RejectReason.PROTOCOL_ERROR, "unsolicited Data-Out DataSN out of order")
            if offset != self.received:
                raise DataOutError(RejectReason.PROTOCOL_ERROR, "unsolicited Data-Out offset out of order")
            if offset + n > self.unsolicited_limit:
                raise DataOutError(RejectReason.INVALID_PDU_FIELD, "unsolicited data beyond FirstBurstLength")
            self.buffer[offset : offset + n] = data
            self.received += n
            self.unsolicited_next_datasn += 1
            self.next_r2t_offset = self.received
            if final or self.received >= self.unsolicited_limit:
                self.unsolicited_open = False
            return
        r2t = self.r2ts.get(ttt)
        if r2t is None:
            raise DataOutError(RejectReason.INVALID_PDU_FIELD, "Data-Out for an unknown Target Transfer Tag")
        if datasn != r2t.next_datasn:
            raise DataOutError(RejectReason.PROTOCOL_ERROR, "Data-Out DataSN out of order")
        if offset != r2t.next_offset:
            raise DataOutError(RejectReason.PROTOCOL_ERROR, "Data-Out offset out of order")
        if offset + n > r2t.offset + r2t.length:
            raise DataOutError(RejectReason.INVALID_PDU_FIELD, "Data-Out beyond the R2T's desired length")
        self.buffer[offset : offset + n] = data
        r2t.next_offset += n
        r2t.next_datasn += 1
        self.received += n
        if r2t.complete:
            del self.r2ts[ttt]
        elif final:
            # F before the whole burst arrived: at ERL 0 we cannot ask again; treat as a protocol error
            del self.r2ts[ttt]
            raise DataOutError(
                RejectReason.PROTOCOL_ERROR, "Data-Out sequence ended before its R2T was satisfied"
            )

    # ----------------------------------------------------------------------------------------- Data-In

    def data_in_chunks(self, data: memoryview) -> Iterator[DataInChunk]:
        """Split `data` (already cut to the read EDTL) into Data-In PDUs (RFC 7143 11.7)."""
        total = len(data)
        mxdsl = max(512, self.limits.max_xmit_data_segment_length)
        burst = max(512, self.limits.max_burst_length)
        offset = 0
        datasn = 0
        while offset < total:
            burst_end = min(total, offset + burst)
            while offset < burst_end:
                n = min(mxdsl, burst_end - offset)
                end = offset + n
                yield DataInChunk(datasn, offset, data[offset:end], final=end == burst_end, last=end == total)
                datasn += 1
                offset = end
        self.datain_count = datasn


@dataclass(frozen=True, slots=True)
class Residual:
    overflow: bool = False
    underflow: bool = False
    count: int = 0


def compute_residual(expected: int, actual: int) -> Residual:
    """RFC 7143 11.4.5: overflow when the command wanted more than the initiator expected, else underflow."""
    if actual > expected:
        return Residual(overflow=True, count=actual - expected)
    if actual < expected:
        return Residual(underflow=True, count=expected - actual)
    return Residual()


def write_residual(expected: int, out_residual: int) -> Residual:
    """Write residual from the SCSI result: out_residual > 0 means the command used that many bytes fewer
    than EDTL (underflow); < 0 means it wanted that many more (overflow)."""
    if out_residual > 0:
        return Residual(underflow=True, count=min(out_residual, expected))
    if out_residual < 0:
        return Residual(overflow=True, count=-out_residual)
    return Residual()


def limits_from_params(sp: SessionParams, cp: ConnectionParams) -> TransferLimits:
    """TransferLimits from the login team's negotiated SessionParams / ConnectionParams."""
    return TransferLimits(
        max_xmit_data_segment_length=cp.max_xmit_data_segment_length,
        max_recv_data_segment_length=cp.max_recv_data_segment_length,
        max_burst_length=sp.max_burst_length,
        first_burst_length=sp.first_burst_length,
        max_outstanding_r2t=max(1, sp.max_outstanding_r2t),
        initial_r2t=sp.initial_r2t,
        immediate_data=sp.immediate_data,
        error_recovery_level=sp.error_recovery_level,
    )
