"""One iSCSI connection in the full feature phase, sans-I/O (h11 style).

Theory of operation
-------------------
The edge (target.server) feeds framed PDUs in (`receive_raw`, or `receive_pdu` for already decoded ones)
and calls the completion methods (`command_complete`, `command_aborted`, `tmf_complete`) and `tick(now)`.
The connection never blocks and never touches a socket: it queues events, which the edge drains with
`take_events()`:

    SendPdu(pdu)             write this target PDU (the edge encodes it with the connection's digests)
    SendWire(parts)          write these already encoded bytes (the direct path below, digests included)
    ExecuteCommand(task, r)  run ScsiRequest r in the SCSI layer; answer with command_complete/aborted
    RunTaskManagement(job)   run target.iscsi.tmf.perform(job, dispatcher); answer with tmf_complete
    CloseConnection(reason)  flush what is queued, then close the socket

`wakeup` (set by the edge) is called whenever events are queued, so events caused by another connection of
the session (MC/S delivery, logout of another CID) reach this connection's edge too.

Per-opcode handling (RFC 7143 section 11; anything not listed gets a Reject):

    SCSI Command   checks (11.3), CmdSN window, immediate data, R2Ts, execute once data is in + in order
    Data-Out       placed in the task's buffer (task.py); unknown ITT: silently dropped (as LIO)
    NOP-Out        ITT != 0xffffffff: NOP-In echo; ITT == 0xffffffff: no answer (a reply to our ping)
    Text           SendTargets / renegotiation via the login team's TextNegotiator
    Task Mgmt      tmf.prepare -> RunTaskManagement or immediate answer
    Logout         close session / close connection (this or another CID) / remove for recovery (ERL 2)
    SNACK          ERL 0: Reject (protocol error)
    Login          Reject (protocol error): only valid before the full feature phase

The direct path: when the edge sets `direct` (a `DirectIo`) and `wire_digests`, a SCSI
Command that is a plain in-order SIMPLE READ or WRITE - CmdSN = ExpCmdSN with nothing held, F set, no AHS, a
read that fits one Data-In or a write whose data all came as immediate data, an ITT not in use - is offered to
it before anything else is done. If the SCSI layer completes it at once (target.scsi.sbc.direct: the same
answer the general path would give, GOOD with exactly the expected data), the connection advances ExpCmdSN and
MaxCmdSN as for a command delivered and completed, and queues the encoded Data-In (F+S, status GOOD) or SCSI
Response (GOOD) with the next StatSN; no Task, request or result object is built. Otherwise (None) nothing has
changed and the command takes the general path.

Non-immediate PDUs carrying a CmdSN pass through the session's CmdSN window (sequence.py) before they act.
Malformed PDUs get a Reject with their BHS; a data digest error gets Reject DATA_DIGEST_ERROR and the PDU is
discarded (the CmdSN of a discarded command stays a gap, RFC 7143 7.2/6.3). Framing errors and header
digest errors are handled by the edge (drop the connection).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target.iscsi import erl, tmf
from target.iscsi.negotiation import TextNegotiator
from target.iscsi.params import ConnectionParams
from target.iscsi.sequence import PLUG, Admission
from target.iscsi.task import (
    DEFAULT_MAX_TRANSFER,
    DataOutError,
    R2TRequest,
    Task,
    TaskState,
    TransferLimits,
    compute_residual,
    write_residual,
)
from target.pdu import codec
from target.pdu import lun as lunmod
from target.pdu.fastinit import fast_frozen_init
from target.pdu.framing import RawPdu
from target.pdu.pdus import (
    R2T,
    RESERVED_TAG,
    AsyncEvent,
    AsyncMessage,
    DataIn,
    DataOut,
    InitiatorPdu,
    LoginRequest,
    LogoutReason,
    LogoutRequest,
    LogoutResponse,
    LogoutResponseCode,
    NopIn,
    NopOut,
    Pdu,
    Reject,
    RejectReason,
    ScsiCommand,
    ScsiResponse,
    SnackRequest,
    TargetPdu,
    TaskMgmtRequest,
    TaskMgmtResponse,
    TextRequest,
)
from target.scsi.command import ScsiRequest, ScsiResult, ScsiStatus, TaskAttr

if TYPE_CHECKING:
    from target.iscsi.session import Session

log = logging.getLogger("target.iscsi.connection")

if TYPE_CHECKING:
    _AdapterBase = logging.LoggerAdapter[logging.Logger]
else:
    _AdapterBase = logging.LoggerAdapter


class SessionLog(_AdapterBase):
    """Structured logging for one connection: every line is prefixed with the session's identity (initiator
    name, ISID, TSIH, CID) and carries it as record attributes (`iscsi_initiator`, `iscsi_isid`, `iscsi_tsih`,
    `iscsi_cid`) for structured handlers. Lines about a command pass `extra={"itt": itt}`: the prefix then
    names the ITT too and the record gets `iscsi_itt`."""

    def __init__(self, logger: logging.Logger, *, initiator: str, isid: int, tsih: int, cid: int) -> None:
        super().__init__(
            logger, {"iscsi_initiator": initiator, "iscsi_isid": isid, "iscsi_tsih": tsih, "iscsi_cid": cid}
        )
        self.prefix = f"[{initiator} isid=0x{isid:012x} tsih={tsih} cid={cid}]"

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        call_extra = kwargs.get("extra") or {}
        itt = call_extra.get("itt")
        extra.update({k if k.startswith("iscsi_") else f"iscsi_{k}": v for k, v in call_extra.items()})
        kwargs["extra"] = extra
        if itt is not None:
            return f"{self.prefix} itt=0x{int(itt):08x}: {msg}", kwargs
        return f"{self.prefix}: {msg}", kwargs

    def with_logger(self, logger: logging.Logger) -> SessionLog:
        """The same identity on another logger (e.g. target.iscsi.tmf, target.server)."""
        other = SessionLog.__new__(SessionLog)
        logging.LoggerAdapter.__init__(other, logger, dict(self.extra or {}))
        other.prefix = self.prefix
        return other


# --------------------------------------------------------------------------- events


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class SendPdu:
    pdu: TargetPdu


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ExecuteCommand:
    task: Task
    request: ScsiRequest


@dataclass(frozen=True, slots=True)
class RunTaskManagement:
    job: tmf.TmfJob


@dataclass(frozen=True, slots=True)
class CloseConnection:
    reason: str


@dataclass(frozen=True, slots=True)
class ParamsChanged:
    """Text renegotiation changed connection parameters (e.g. MaxRecvDataSegmentLength): the edge updates
    its PduReader limit."""

    params: ConnectionParams


@dataclass(frozen=True, slots=True)
class SendWire:
    """Encoded PDU bytes for the socket (the direct path), digests included."""

    parts: list[bytes | bytearray | memoryview]


Event = SendPdu | SendWire | ExecuteCommand | RunTaskManagement | CloseConnection | ParamsChanged

#: the direct READ/WRITE hook the edge installs (see the module docstring): (lun, cdb, itt, expected data
#: transfer length, write data or None for a read) -> the read data, True for a write done, or None
DirectIo = Callable[[int, bytes, int, int, "bytes | memoryview | None"], "bytes | bytearray | bool | None"]
_DIRECT_READ_FLAGS = (0xC0, 0xC1)  # F + R, untagged or SIMPLE
_DIRECT_WRITE_FLAGS = (0xA0, 0xA1)  # F + W, untagged or SIMPLE
_LUN_CACHE_MAX = 256


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    nopin_interval: float = 15.0  # seconds of silence before we ping; 0 disables
    nopin_timeout: float = 15.0  # seconds to wait for any PDU after a ping before dropping the connection
    max_transfer: int = DEFAULT_MAX_TRANSFER


#: the task attribute of a SCSI Command (anything else counts as SIMPLE)
_TASK_ATTRS: dict[int, TaskAttr] = {int(a): a for a in TaskAttr}


def _fixed_sense(key: int, asc: int, ascq: int) -> bytes:
    """Fixed-format sense data (SPC-4 4.5.3), 18 bytes."""
    return bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])


class Connection:
    def __init__(
        self,
        session: Session,
        cid: int,
        limits: TransferLimits,
        *,
        statsn: int = 0,
        settings: ConnectionSettings | None = None,
        text_negotiator: TextNegotiator | None = None,
        now: float = 0.0,
        name: str = "",
    ) -> None:
        self.session = session
        self.cid = cid
        self.limits = limits
        self.statsn = statsn & 0xFFFFFFFF  # the next StatSN to assign
        self.settings = settings or ConnectionSettings()
        self.text_negotiator = text_negotiator
        nexus = session.nexus
        self.log = SessionLog(
            log, initiator=nexus.initiator_name, isid=nexus.isid, tsih=session.tsih, cid=cid
        )
        self.name = name or self.log.prefix
        self.tasks: dict[int, Task] = {}
        self.closed = False
        self.digest_errors = 0  # data digest errors seen (metrics; header digest errors end the connection)
        self.wakeup: Callable[[], None] | None = None
        self._events: list[Event] = []
        self._ttts: Iterator[int] = session.ttt_source()
        self._current_bhs: bytes | None = None
        # NOP-In keepalive (LIO nopin_timeout / nopin_response_timeout)
        self._last_rx = now
        self._ping_ttt: int | None = None
        self._ping_sent = 0.0
        #: the direct READ/WRITE hook (set by the edge)
        self.direct: DirectIo | None = None
        #: the SCSI Command being received was offered to the direct path and refused (its task does not try again)
        self._direct_refused = False
        #: (header digest, data digest) of this connection, for what the direct path encodes itself
        self.wire_digests = (False, False)
        self._luns: dict[int, int] = {}  # LUN field -> LUN, for the direct path (bounded)

    # ============================================================================== edge interface

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def receive_raw(self, raw: RawPdu, now: float | None = None) -> None:
        """One framed PDU from the initiator."""
        if self.closed:
            return
        if now is not None:
            self._last_rx = now
        self._ping_ttt = None
        refused = False
        if raw.bhs[0] == 0x01 and self.direct is not None:
            answered = self._direct_command(raw)
            if answered:
                return
            refused = answered is None
        self._direct_refused = refused
        self._current_bhs = bytes(raw.bhs)
        try:
            # a target opcode sent by the initiator is a protocol error (RFC 7143 11.2.1.2)
            pdu = codec.decode_pdu(raw, from_initiator=True)
        except codec.PduDecodeError as exc:
            self.log.warning("rejecting malformed PDU: %s", exc, extra={"itt": raw.itt})
            self._reject(exc.reason)
            return
        if not raw.data_digest_ok:
            # RFC 7143 7.8: answer with Reject (Data Digest Error) and discard the PDU
            self.log.warning("data digest error on %s", type(pdu).__name__, extra={"itt": raw.itt})
            self.digest_errors += 1
            self._reject(RejectReason.DATA_DIGEST_ERROR)
            return
        self._dispatch(pdu)
        self._current_bhs = None

    def receive_pdu(self, pdu: InitiatorPdu, now: float | None = None) -> None:
        """An already decoded PDU (tests, or an edge that decodes itself)."""
        if self.closed:
            return
        if now is not None:
            self._last_rx = now
        self._ping_ttt = None
        self._current_bhs = None
        self._direct_refused = False
        self._dispatch(pdu)

    def tick(self, now: float) -> None:
        """Timers: NOP-In ping after `nopin_interval` of silence, drop after `nopin_timeout` unanswered."""
        if self.closed or self.settings.nopin_interval <= 0:
            return
        if self._ping_ttt is not None:
            if now - self._ping_sent >= self.settings.nopin_timeout:
                self.log.warning("no answer to NOP-In within %ss, dropping", self.settings.nopin_timeout)
                self.close("nop-in timeout")
            return
        if now - self._last_rx >= self.settings.nopin_interval:
            ttt = next(self._ttts)
            self._ping_ttt = ttt
            self._ping_sent = now
            # a ping does not advance StatSN (RFC 7143 11.19.3: ITT 0xffffffff)
            self._send(NopIn(itt=RESERVED_TAG, ttt=ttt, statsn=self.statsn, exp_cmdsn=0, max_cmdsn=0))

    def close(self, reason: str) -> None:
        """Close this connection (idempotent): its tasks lose their allegiance, the edge closes the socket."""
        if self.closed:
            return
        self.closed = True
        self.log.info("connection closed: %s", reason)
        for task in list(self.tasks.values()):
            self._drop_task(task)
        self.tasks.clear()
        self._emit(CloseConnection(reason))
        self.session.remove_connection(self)

    def request_logout(self, time2wait: int = 0) -> None:
        """Async Message "target requests logout" (RFC 7143 11.9.1, event 1); Parameter3 = seconds to logout."""
        if self.closed:
            return
        self._send(
            AsyncMessage(
                statsn=0,
                exp_cmdsn=0,
                max_cmdsn=0,
                async_event=AsyncEvent.LOGOUT_REQUEST,
                parameter3=time2wait,
            ),
            advance=True,
        )

    # ------------------------------------------------------------------------- completions from the edge

    def command_complete(self, task: Task, result: ScsiResult) -> None:
        """The SCSI layer finished `task`: Data-In and/or SCSI Response."""
        if self.tasks.get(task.itt) is not task or task.state is TaskState.ABORTED:
            return  # aborted or connection gone meanwhile: no response
        self._finish_task(task)
        if not self.closed:
            self._respond(task, result)

    def command_aborted(self, task: Task) -> None:
        """The SCSI layer aborted `task` so that it gets no response (TMF / nexus loss)."""
        if self.tasks.get(task.itt) is task:
            task.state = TaskState.ABORTED
            self._finish_task(task)

    def command_aborted_by_other(self, task: Task, *, tas: bool) -> None:
        """A TMF of ANOTHER I_T nexus (LUN reset, target reset, CLEAR TASK SET) aborted `task` before it reached
        the SCSI layer (e.g. still waiting for Data-Out). SAM-5 5.6 / SPC-4 7.5.8 (control mode page TAS): with
        TAS=1 the task completes with TASK ABORTED status, with TAS=0 it just ends without a response."""
        if self.tasks.get(task.itt) is not task or task.state in (TaskState.EXECUTING, TaskState.DONE):
            return
        task.state = TaskState.ABORTED  # its CmdSN slot is freed now (or when its turn comes)
        self._finish_task(task)
        if tas and not self.closed:
            self._respond(task, ScsiResult(status=ScsiStatus.TASK_ABORTED))

    def tmf_complete(self, job: tmf.TmfJob, response: int) -> None:
        if self.closed:
            return
        self._send(
            TaskMgmtResponse(itt=job.itt, statsn=0, exp_cmdsn=0, max_cmdsn=0, response=response), advance=True
        )

    # ============================================================================== internals: output

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if self.wakeup is not None:
            self.wakeup()

    def _send(self, pdu: TargetPdu, *, advance: bool = False) -> None:
        """Queue a PDU, filling in StatSN (advancing it for status-carrying PDUs), ExpCmdSN and MaxCmdSN."""
        window = self.session.window
        changes: dict[str, Any] = {"exp_cmdsn": window.exp_cmdsn, "max_cmdsn": window.max_cmdsn}
        if advance:
            changes["statsn"] = self.statsn
            self.statsn = (self.statsn + 1) & 0xFFFFFFFF
        elif hasattr(pdu, "statsn") and not isinstance(pdu, DataIn):
            changes["statsn"] = self.statsn
        self._emit(SendPdu(_replace(pdu, changes)))

    def _next_statsn(self) -> int:
        sn = self.statsn
        self.statsn = (sn + 1) & 0xFFFFFFFF
        return sn

    def _reject(self, reason: RejectReason, bhs: bytes | None = None) -> None:
        data = bhs if bhs is not None else (self._current_bhs or b"")
        self._send(Reject(reason=reason, statsn=0, exp_cmdsn=0, max_cmdsn=0, data=data), advance=True)

    def _reject_pdu(self, pdu: Pdu, reason: RejectReason) -> None:
        bhs = self._current_bhs
        if bhs is None:
            try:
                bhs = codec.encode_pdu_bytes(pdu)[:48]
            except Exception:  # best effort: the BHS is diagnostic only
                bhs = b""
        self._reject(reason, bhs)

    # ============================================================================== internals: input

    def _dispatch(self, pdu: Pdu) -> None:
        if isinstance(pdu, DataOut):
            self._on_data_out(pdu)
        elif isinstance(pdu, ScsiCommand):
            self._on_scsi_command(pdu)
        elif isinstance(pdu, NopOut):
            self._on_nop_out(pdu)
        elif isinstance(pdu, (TaskMgmtRequest, TextRequest, LogoutRequest)):
            self._on_command_pdu(pdu)
        elif isinstance(pdu, SnackRequest):
            # RFC 7143 11.16: SNACK support is only required at ERL > 0 (LIO: Reject, protocol error)
            self._reject_pdu(pdu, erl.snack_reject_reason())
        elif isinstance(pdu, LoginRequest):
            self._reject_pdu(pdu, RejectReason.PROTOCOL_ERROR)
        else:  # a target opcode sent by the initiator
            self._reject_pdu(pdu, RejectReason.PROTOCOL_ERROR)

    def _submit(self, pdu: InitiatorPdu, item: object, cmdsn: int, immediate: bool) -> bool:
        """Pass through the CmdSN window; deliver what became due (maybe on other connections)."""
        result = self.session.window.submit(cmdsn, immediate, (self, item))
        if result.admission is Admission.DROPPED:
            self.log.debug("CmdSN %d outside window, dropped", cmdsn, extra={"itt": pdu.itt})
            return False
        _deliver_all(result.deliver)
        return True

    def plug_cmdsn(self, cmdsn: int) -> bool:
        """Treat `cmdsn` as received (ABORT TASK for a command that never arrived, RFC 7143 11.5.1)."""
        due = self.session.window.plug(cmdsn)
        if due is None:
            return False
        _deliver_all(due)
        return True

    def _deliver(self, item: object) -> None:
        """A command's CmdSN turn came (or it is immediate)."""
        if isinstance(item, Task):
            item.delivered = True
            if item.state is TaskState.ABORTED or self.closed:
                if not item.immediate:
                    self.session.window.complete()
                return
            self._maybe_execute(item)
            return
        if not isinstance(item, (TaskMgmtRequest, TextRequest, LogoutRequest, NopOut)):
            return
        immediate = item.immediate
        if not immediate:
            self.session.window.complete()  # inline PDUs free their slot at once
        if self.closed:
            return
        if isinstance(item, TaskMgmtRequest):
            self._on_tmf(item)
        elif isinstance(item, TextRequest):
            self._on_text(item)
        elif isinstance(item, LogoutRequest):
            self._on_logout(item)
        else:
            self._answer_nop(item)

    # ------------------------------------------------------------------------- SCSI Command

    def _on_scsi_command(self, cmd: ScsiCommand) -> None:
        s = self.session
        lim = self.limits
        if s.discovery:
            self._reject_pdu(cmd, RejectReason.PROTOCOL_ERROR)
            return
        if s.logout_requested:
            self._reject_pdu(cmd, RejectReason.WAITING_FOR_LOGOUT)
            return
        n = len(cmd.data)
        # RFC 7143 11.3.1 / 11.3.4 and LIO iscsit_setup_scsi_cmd checks
        if (
            (n and not cmd.write)
            or (n and not lim.immediate_data)
            or (cmd.write and n > cmd.expected_data_length)
            or (not cmd.final and not cmd.write)
            or (not cmd.final and lim.initial_r2t)
        ):
            self._reject_pdu(cmd, RejectReason.PROTOCOL_ERROR)
            return
        if n > lim.first_burst_length:
            self._reject_pdu(cmd, RejectReason.INVALID_PDU_FIELD)
            return
        if cmd.itt == RESERVED_TAG or s.find_task(cmd.itt) is not None:
            self._reject_pdu(cmd, RejectReason.TASK_IN_PROGRESS)
            return
        if cmd.immediate and s.immediate_in_flight >= _max_immediate():
            self._reject_pdu(cmd, RejectReason.IMMEDIATE_COMMAND_REJECT)
            return
        try:
            lun = lunmod.decode_lun(cmd.lun)
        except Exception:
            lun = 0xFFFF  # an address we cannot decode reaches the SCSI layer as an unmapped LUN
        attr = _TASK_ATTRS.get(cmd.attr, TaskAttr.SIMPLE)
        task = Task(
            itt=cmd.itt,
            cmdsn=cmd.cmdsn,
            lun_field=cmd.lun,
            lun=lun,
            cdb=bytes(cmd.cdb),
            attr=attr,
            immediate=cmd.immediate,
            read=cmd.read,
            write=cmd.write,
            expected_data_length=cmd.expected_data_length,
            bidi_read_length=cmd.bidi_read_length,
            limits=lim,
            direct_refused=self._direct_refused,
        )
        wlen = task.write_length
        if wlen > self.settings.max_transfer:
            task.early_status = (ScsiStatus.CHECK_CONDITION, _fixed_sense(0x05, 0x24, 0x00))
        elif wlen and s.buffered + wlen > s.max_buffered:
            task.early_status = (ScsiStatus.TASK_SET_FULL, b"")
        # set everything up first: delivery (maybe at once) executes the task when its data is in
        if not cmd.immediate and not s.window.in_window(cmd.cmdsn):
            self.log.debug("CmdSN %d outside window, dropped", cmd.cmdsn, extra={"itt": cmd.itt})
            return
        self.tasks[task.itt] = task
        if cmd.immediate:
            s.immediate_in_flight += 1
        r2ts: list[R2TRequest] = []
        if task.early_status is not None:
            task.state = TaskState.HELD
        else:
            if wlen:
                s.buffered += wlen
                task.start_write(cmd.data, cmd.final)
                r2ts = task.next_r2ts(self._ttts)
            task.state = TaskState.HELD if task.all_data_in else TaskState.RECEIVING
        for r in r2ts:
            self._send_r2t(task, r)
        if not self._submit(cmd, task, cmd.cmdsn, cmd.immediate):  # a duplicate CmdSN
            self._drop_task(task)

    def _direct_command(self, raw: RawPdu) -> bool | None:
        """The direct path (module docstring): True when the command was answered; False when it is not one the
        direct path takes; None when the SCSI layer refused it (then its task does not offer it again)."""
        fields = codec.SCSI_COMMAND_BHS.unpack_from(raw.bhs)
        _, flags, _, length_word, lun_field, itt, edtl, cmdsn, _, cdb = fields
        lim = self.limits
        if flags in _DIRECT_READ_FLAGS:
            if length_word or edtl > lim.max_xmit_data_segment_length or edtl > lim.max_burst_length:
                return False
            data: bytes | memoryview | None = None
        elif flags in _DIRECT_WRITE_FLAGS:
            # all of the data came as immediate data (length_word is the DataSegmentLength: no AHS)
            if length_word != edtl or not lim.immediate_data or edtl > lim.first_burst_length:
                return False
            data = raw.data
        else:
            return False
        s = self.session
        window = s.window
        if (
            not edtl
            or edtl > self.settings.max_transfer
            or not raw.data_digest_ok
            or cmdsn != window.exp_cmdsn
            or window.held_count
            or not window.in_window(cmdsn)
            or itt == RESERVED_TAG
            or s.discovery
            or s.logout_requested
            or itt in self.tasks
            or (len(s.connections) > 1 and s.find_task(itt) is not None)
        ):
            return False
        lun = self._luns.get(lun_field)
        if lun is None:
            try:
                lun = lunmod.decode_lun(lun_field)
            except Exception:
                return False
            if len(self._luns) >= _LUN_CACHE_MAX:
                self._luns.clear()
            self._luns[lun_field] = lun
        assert self.direct is not None
        result = self.direct(lun, cdb, itt, edtl, data)
        if result is None:
            return None
        if log.isEnabledFor(logging.DEBUG):
            self.log.debug("execute lun=%d cdb=%s (direct)", lun, cdb[:1].hex(), extra={"itt": itt})
        window.pass_through(cmdsn)
        statsn = self._next_statsn()
        data_in: bytes | bytearray = b""
        if isinstance(result, bool):  # a write, done
            header = codec.good_scsi_response(itt, statsn, window.exp_cmdsn, window.max_cmdsn)
        else:
            header = codec.data_in_with_status(
                itt, lun_field, statsn, window.exp_cmdsn, window.max_cmdsn, len(result)
            )
            data_in = result
        hd, dd = self.wire_digests
        self._emit(SendWire(codec.wire_segments(header, data_in, header_digest=hd, data_digest=dd)))
        return True

    def _send_r2ts(self, task: Task) -> None:
        for r in task.next_r2ts(self._ttts):
            self._send_r2t(task, r)

    def _send_r2t(self, task: Task, r: R2TRequest) -> None:
        window = self.session.window
        self._emit(
            SendPdu(
                R2T(
                    itt=task.itt,
                    ttt=r.ttt,
                    statsn=self.statsn,
                    exp_cmdsn=window.exp_cmdsn,
                    max_cmdsn=window.max_cmdsn,
                    r2tsn=r.r2tsn,
                    buffer_offset=r.offset,
                    desired_length=r.length,
                    lun=task.lun_field,
                )
            )
        )

    def _maybe_execute(self, task: Task) -> None:
        if not task.delivered or task.state in (TaskState.EXECUTING, TaskState.DONE, TaskState.ABORTED):
            return
        if task.early_status is not None:
            status, sense = task.early_status
            self._finish_task(task)
            self._respond(task, ScsiResult(status=status, sense=sense))
            return
        if not task.all_data_in:
            return
        if (
            self.direct is not None
            and not task.direct_refused
            and task.attr is TaskAttr.SIMPLE
            and task.read != task.write
        ):
            # a command the receive-time check could not take (solicited data, several Data-In, out of CmdSN
            # order): the direct path still applies once it is due and its data is in
            result = self.direct(
                task.lun,
                task.cdb,
                task.itt,
                task.expected_data_length,
                memoryview(task.buffer) if task.write else None,
            )
            if result is not None:
                self._finish_task(task)
                self._respond(task, ScsiResult(data_in=b"" if isinstance(result, bool) else result))
                return
        task.state = TaskState.EXECUTING
        request = ScsiRequest(
            nexus=self.session.nexus,
            lun=task.lun,
            cdb=task.cdb,
            tag=task.itt,
            attr=task.attr,
            data_out=memoryview(task.buffer) if task.write else b"",
            expected_in_length=task.read_length,
            expected_out_length=task.write_length,
            lun_map=self.session.lun_map,
        )
        if log.isEnabledFor(logging.DEBUG):
            self.log.debug("execute lun=%d cdb=%s", task.lun, task.cdb[:1].hex(), extra={"itt": task.itt})
        self._emit(ExecuteCommand(task, request))

    # ------------------------------------------------------------------------- Data-Out

    def _on_data_out(self, pdu: DataOut) -> None:
        task = self.tasks.get(pdu.itt)
        if task is None or task.early_status is not None or task.state is TaskState.ABORTED:
            # LIO: "Unable to locate ITT ... dumping payload": e.g. data for a task just aborted
            self.log.debug("Data-Out for an unknown task dropped", extra={"itt": pdu.itt})
            return
        if not task.write or task.state is not TaskState.RECEIVING:
            self._reject_pdu(pdu, RejectReason.PROTOCOL_ERROR)
            return
        try:
            task.data_out(pdu.ttt, pdu.datasn, pdu.buffer_offset, pdu.data, pdu.final)
        except DataOutError as exc:
            self.log.warning("bad Data-Out: %s", exc, extra={"itt": task.itt})
            self._reject_pdu(pdu, exc.reason)
            # a sequence may have ended: ask for what is still missing
            self._send_r2ts(task)
            return
        if task.all_data_in:
            task.r2ts.clear()
            task.state = TaskState.HELD
            self._maybe_execute(task)
        else:
            self._send_r2ts(task)

    # ------------------------------------------------------------------------- responses

    def _finish_task(self, task: Task) -> None:
        """Terminal bookkeeping: forget the task, free its buffer and its CmdSN slot (before the response,
        so the response already carries the larger MaxCmdSN, as LIO does)."""
        s = self.session
        if self.tasks.get(task.itt) is task:
            del self.tasks[task.itt]
        if task.state is not TaskState.ABORTED:
            task.state = TaskState.DONE
        if task.write and task.buffer is not None and len(task.buffer):
            s.buffered = max(0, s.buffered - task.write_length)
            task.buffer = bytearray()
        if task.immediate:
            s.immediate_in_flight = max(0, s.immediate_in_flight - 1)
        elif task.delivered:
            s.window.complete()

    def _drop_task(self, task: Task) -> None:
        task.state = TaskState.ABORTED
        self._finish_task(task)

    def _data_in(
        self,
        task: Task,
        datasn: int,
        offset: int,
        data: memoryview,
        final: bool,
        status: int | None = None,
        overflow: bool = False,
        underflow: bool = False,
        residual: int = 0,
    ) -> DataIn:
        """One Data-In of `task`; with `status` it is the phase-collapsed last one (status, residual, StatSN)."""
        window = self.session.window
        last = status is not None
        return DataIn(
            itt=task.itt,
            datasn=datasn,
            buffer_offset=offset,
            exp_cmdsn=window.exp_cmdsn,
            max_cmdsn=window.max_cmdsn,
            statsn=self._next_statsn() if last else 0,
            lun=task.lun_field,
            final=final,
            status_present=last,
            status=status or 0,
            overflow=overflow,
            underflow=underflow,
            residual=residual,
            data=data,
        )

    def _respond(self, task: Task, result: ScsiResult) -> None:
        status = result.status
        data_in = result.data_in
        if (
            status is ScsiStatus.GOOD
            and task.read
            and not task.write
            and not result.sense
            and 0 < len(data_in) == task.expected_data_length
            and len(data_in) <= task.limits.max_xmit_data_segment_length
            and len(data_in) <= task.limits.max_burst_length
        ):
            # the hot path (a plain read, all data in one phase-collapsed Data-In, no residual): the same PDU
            # the general path below builds, without its chunk generator and residual computation
            task.datain_count = 1
            self._emit(SendPdu(self._data_in(task, 0, 0, memoryview(data_in), True, status=0)))
            return
        if not isinstance(status, ScsiStatus) and status in ScsiStatus._value2member_map_:
            status = ScsiStatus(status)
        data = memoryview(data_in) if len(data_in) else memoryview(b"")
        bidi = task.read and task.write
        read_len = task.read_length
        actual = len(data)
        read_res = compute_residual(read_len, actual)
        send = data[: min(actual, read_len)]
        wres = None
        if task.write:
            # the SCSI layer reports underflow as out_residual > 0 and overflow as out_overflow (or a
            # negative out_residual)
            overflow = int(getattr(result, "out_overflow", 0) or 0)
            wres = write_residual(task.write_length, -overflow if overflow > 0 else result.out_residual)
        collapse = (
            not bidi
            and not result.sense
            and len(send) > 0
            and status in (ScsiStatus.GOOD, ScsiStatus.CONDITION_MET)
            and wres is None
        )
        window = self.session.window
        if len(send):
            for chunk in task.data_in_chunks(send):
                # the last Data-In carries the status when it can be phase-collapsed (RFC 7143 11.7.4)
                if chunk.last and collapse:
                    pdu = self._data_in(
                        task, chunk.datasn, chunk.offset, chunk.data, True, int(status),
                        read_res.overflow, read_res.underflow, read_res.count,
                    )  # fmt: skip
                else:
                    pdu = self._data_in(task, chunk.datasn, chunk.offset, chunk.data, chunk.final)
                self._emit(SendPdu(pdu))
            if collapse:
                return
        sense = b""
        if result.sense:
            sense = len(result.sense).to_bytes(2, "big") + bytes(result.sense)
        if bidi:
            assert wres is not None
            res, bres = wres, read_res
        elif task.write:
            assert wres is not None
            res, bres = wres, None
        else:
            res, bres = read_res, None
        self._emit(
            SendPdu(
                ScsiResponse(
                    itt=task.itt,
                    statsn=self._next_statsn(),
                    exp_cmdsn=window.exp_cmdsn,
                    max_cmdsn=window.max_cmdsn,
                    status=int(status),
                    exp_datasn=task.datain_count + task.r2t_count,
                    residual=res.count,
                    overflow=res.overflow,
                    underflow=res.underflow,
                    bidi_residual=bres.count if bres else 0,
                    bidi_overflow=bres.overflow if bres else False,
                    bidi_underflow=bres.underflow if bres else False,
                    data=sense,
                )
            )
        )

    # ------------------------------------------------------------------------- NOP-Out

    def _on_nop_out(self, pdu: NopOut) -> None:
        if pdu.itt == RESERVED_TAG:
            # RFC 7143 11.18: ITT 0xffffffff must be immediate; it is a reply (to our ping) or a one-way ping
            if not pdu.immediate:
                self._reject_pdu(pdu, RejectReason.PROTOCOL_ERROR)
            return
        if pdu.ttt != RESERVED_TAG:
            # a NOP-Out that answers a ping must carry ITT 0xffffffff
            self._reject_pdu(pdu, RejectReason.PROTOCOL_ERROR)
            return
        self._submit(pdu, pdu, pdu.cmdsn, pdu.immediate)

    def _answer_nop(self, pdu: NopOut) -> None:
        self._send(
            NopIn(
                itt=pdu.itt, ttt=RESERVED_TAG, statsn=0, exp_cmdsn=0, max_cmdsn=0, lun=pdu.lun, data=pdu.data
            ),
            advance=True,
        )

    # ------------------------------------------------------------------------- TMF / Text / Logout

    def _on_command_pdu(self, pdu: TaskMgmtRequest | TextRequest | LogoutRequest) -> None:
        if isinstance(pdu, TextRequest) and pdu.data:
            pdu = _replace(pdu, {"data": bytes(pdu.data)})  # the receive buffer may be reused while held
        self._submit(pdu, pdu, pdu.cmdsn, pdu.immediate)

    def _on_tmf(self, req: TaskMgmtRequest) -> None:
        if self.session.discovery:
            self._reject_pdu(req, RejectReason.PROTOCOL_ERROR)
            return
        job = tmf.prepare(req, self.session, self)
        if job.response is not None:
            self.tmf_complete(job, job.response)
        else:
            self._emit(RunTaskManagement(job))

    def _on_text(self, req: TextRequest) -> None:
        """Text Request in the full feature phase: SendTargets and renegotiation (login team's negotiator,
        which also does the C-bit assembly and TTT continuation of RFC 7143 11.10/11.11)."""
        if self.text_negotiator is None:
            self._reject_pdu(req, RejectReason.COMMAND_NOT_SUPPORTED)
            return
        try:
            outcome = self.text_negotiator.receive(req)
        except Exception:
            self.log.exception("text negotiation failed", extra={"itt": req.itt})
            self._reject_pdu(req, RejectReason.PROTOCOL_ERROR)
            return
        if outcome.reply is None:
            self.log.warning("text request rejected: %s", outcome.error, extra={"itt": req.itt})
            self._reject_pdu(req, RejectReason.PROTOCOL_ERROR)
            return
        window = self.session.window
        self._send(
            outcome.reply.to_pdu(statsn=self.statsn, exp_cmdsn=window.exp_cmdsn, max_cmdsn=window.max_cmdsn),
            advance=True,
        )
        cp = outcome.connection_params
        if cp is not None:
            self.limits = dataclasses.replace(
                self.limits,
                max_xmit_data_segment_length=cp.max_xmit_data_segment_length,
                max_recv_data_segment_length=cp.max_recv_data_segment_length,
            )
            self._emit(ParamsChanged(cp))

    def _on_logout(self, req: LogoutRequest) -> None:
        s = self.session
        code = LogoutResponseCode.CLOSED
        close_self = False
        close_session = False
        other: Connection | None = None
        if req.reason == LogoutReason.CLOSE_SESSION:
            close_session = True
        elif req.reason == LogoutReason.CLOSE_CONNECTION:
            if req.cid == self.cid:
                close_self = True
            else:
                other = s.connections.get(req.cid)
                if other is None:
                    code = LogoutResponseCode.CID_NOT_FOUND
        elif req.reason == LogoutReason.REMOVE_FOR_RECOVERY:
            # connection recovery needs ErrorRecoveryLevel 2 (RFC 7143 6.2.2)
            code = erl.remove_for_recovery_response(s.error_recovery_level)
        else:
            self._reject_pdu(req, RejectReason.PROTOCOL_ERROR)
            return
        # RFC 7143 11.14: pending commands of the connection/session are terminated; no responses for them
        if close_session:
            for conn, task in list(s.all_tasks()):
                conn._drop_task(task)
        elif close_self:
            for task in list(self.tasks.values()):
                self._drop_task(task)
        try:
            reason_name = LogoutReason(req.reason).name
        except ValueError:
            reason_name = str(req.reason)
        self.log.info(
            "logout request: %s (CID %d): %s", reason_name, req.cid, LogoutResponseCode(code).name,
            extra={"itt": req.itt},
        )  # fmt: skip
        self._send(
            LogoutResponse(itt=req.itt, statsn=0, exp_cmdsn=0, max_cmdsn=0, response=code), advance=True
        )
        if other is not None:
            other.close(f"logged out by CID {self.cid}")
        if close_session:
            s.close("logout")
        elif close_self:
            self.close("logout")


def _deliver_all(items: list[Any]) -> None:
    for item in items:
        if item is PLUG:
            continue
        conn, it = item
        conn._deliver(it)


def _max_immediate() -> int:
    from target.iscsi.session import MAX_IMMEDIATE_IN_FLIGHT

    return MAX_IMMEDIATE_IN_FLIGHT


def _replace(pdu: Any, changes: dict[str, Any]) -> Any:
    """dataclasses.replace for frozen slotted PDUs."""
    return dataclasses.replace(pdu, **changes)
