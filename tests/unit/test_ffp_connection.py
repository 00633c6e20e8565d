"""Sans-I/O tests of the full feature phase connection: R2T sequences, Data-In splitting, residuals, NOP,
logout, rejects. No sockets: PDUs in, events out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from target.iscsi.connection import (
    CloseConnection,
    Connection,
    ConnectionSettings,
    ExecuteCommand,
    RunTaskManagement,
    SendPdu,
)
from target.iscsi.session import Session
from target.iscsi.task import TransferLimits
from target.pdu import codec
from target.pdu.framing import PduReader
from target.pdu.pdus import (
    R2T,
    RESERVED_TAG,
    DataIn,
    DataOut,
    LoginRequest,
    LogoutReason,
    LogoutRequest,
    LogoutResponse,
    LogoutResponseCode,
    NopIn,
    NopOut,
    Reject,
    RejectReason,
    ScsiCommand,
    ScsiResponse,
    SnackRequest,
)
from target.scsi.command import LunAccess, Nexus, ScsiResult, ScsiStatus

NEXUS = Nexus("iqn.2024-01.test:init", 0x23D000000001, "iqn.2024-01.test:tgt", 1)
WRITE10 = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0]) + bytes(6)
READ10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]) + bytes(6)


def make(limits: TransferLimits | None = None, **kw: object) -> tuple[Session, Connection]:
    s = Session(tsih=1, nexus=NEXUS, exp_cmdsn=1, lun_map={0: LunAccess(lu=object())})
    c = Connection(s, 0, limits or TransferLimits(), statsn=100, settings=ConnectionSettings(**kw))  # type: ignore[arg-type]
    s.add_connection(c)
    return s, c


def pdus(conn: Connection) -> list:
    return [e.pdu for e in conn.take_events() if isinstance(e, SendPdu)]


def write_cmd(itt: int, cmdsn: int, length: int, data: bytes = b"", final: bool = True) -> ScsiCommand:
    return ScsiCommand(
        itt=itt,
        cmdsn=cmdsn,
        exp_statsn=0,
        cdb=WRITE10,
        expected_data_length=length,
        write=True,
        final=final,
        data=data,
    )


def run_write(limits: TransferLimits, length: int, imm: int, unsolicited: int) -> bytes:
    """Drive a write to completion like a well-behaved initiator; return the gathered buffer."""
    s, c = make(limits)
    payload = bytes((i * 7) & 0xFF for i in range(length))
    unsol_final = unsolicited == 0
    c.receive_pdu(write_cmd(1, 1, length, payload[:imm], final=unsol_final or imm >= length))
    off = imm
    datasn = 0
    while off < imm + unsolicited:
        n = min(limits.max_recv_data_segment_length, imm + unsolicited - off)
        c.receive_pdu(
            DataOut(
                itt=1,
                ttt=RESERVED_TAG,
                exp_statsn=0,
                datasn=datasn,
                buffer_offset=off,
                final=off + n == imm + unsolicited,
                data=payload[off : off + n],
            )
        )
        off += n
        datasn += 1
    executed: list[ExecuteCommand] = []
    r2tsn = 0
    for _ in range(10000):
        events = c.take_events()
        r2ts = [e.pdu for e in events if isinstance(e, SendPdu) and isinstance(e.pdu, R2T)]
        executed += [e for e in events if isinstance(e, ExecuteCommand)]
        assert not any(isinstance(e, SendPdu) and isinstance(e.pdu, Reject) for e in events)
        if executed:
            break
        assert r2ts, "stalled: no R2T and not executed"
        assert len(r2ts) <= limits.max_outstanding_r2t
        for r in r2ts:
            assert r.r2tsn == r2tsn
            r2tsn += 1
            assert 0 < r.desired_length <= limits.max_burst_length
            o, end, dsn = r.buffer_offset, r.buffer_offset + r.desired_length, 0
            while o < end:
                n = min(limits.max_recv_data_segment_length, end - o)
                c.receive_pdu(
                    DataOut(
                        itt=1,
                        ttt=r.ttt,
                        exp_statsn=0,
                        datasn=dsn,
                        buffer_offset=o,
                        final=o + n == end,
                        data=payload[o : o + n],
                    )
                )
                o += n
                dsn += 1
    assert len(executed) == 1
    req = executed[0].request
    assert req.expected_out_length == length
    data = bytes(req.data_out)
    c.command_complete(executed[0].task, ScsiResult())
    (resp,) = pdus(c)
    assert isinstance(resp, ScsiResponse) and resp.status == 0 and resp.statsn == 100
    assert s.window.max_cmdsn == 1 + 64  # slot returned
    assert data == payload
    return data


def test_write_initial_r2t_yes_no_immediate() -> None:
    run_write(TransferLimits(initial_r2t=True, immediate_data=False), 4096, 0, 0)


def test_write_immediate_then_r2t_multiple_bursts() -> None:
    lim = TransferLimits(max_burst_length=8192, first_burst_length=4096, max_outstanding_r2t=2)
    run_write(lim, 40000, 4096, 0)


def test_write_unsolicited_dataout_first_burst() -> None:
    lim = TransferLimits(initial_r2t=False, first_burst_length=65536, max_recv_data_segment_length=8192)
    run_write(lim, 200000, 8192, 65536 - 8192)


def test_write_all_unsolicited_no_r2t() -> None:
    lim = TransferLimits(initial_r2t=False, immediate_data=False, first_burst_length=65536)
    run_write(lim, 30000, 0, 30000)


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 300000),
    mrdsl=st.sampled_from([512, 4096, 8192, 65536]),
    burst=st.sampled_from([512, 8192, 65536, 262144]),
    first=st.sampled_from([512, 8192, 65536]),
    outstanding=st.integers(1, 4),
    initial_r2t=st.booleans(),
    immediate=st.booleans(),
)
def test_write_property(
    length: int, mrdsl: int, burst: int, first: int, outstanding: int, initial_r2t: bool, immediate: bool
) -> None:
    first = min(first, burst)
    lim = TransferLimits(
        max_recv_data_segment_length=mrdsl,
        max_burst_length=burst,
        first_burst_length=first,
        max_outstanding_r2t=outstanding,
        initial_r2t=initial_r2t,
        immediate_data=immediate,
    )
    unsol_limit = min(first, length)
    imm = min(mrdsl, unsol_limit) if immediate else 0
    unsolicited = 0 if initial_r2t else unsol_limit - imm
    run_write(lim, length, imm, unsolicited)


def test_dataout_offset_beyond_edtl_rejected() -> None:
    _s, c = make(TransferLimits(immediate_data=False))
    c.receive_pdu(write_cmd(5, 1, 1024))
    (r2t,) = pdus(c)
    assert isinstance(r2t, R2T) and r2t.desired_length == 1024
    c.receive_pdu(DataOut(itt=5, ttt=r2t.ttt, exp_statsn=0, datasn=0, buffer_offset=512, data=bytes(1024)))
    (rej,) = pdus(c)
    assert isinstance(rej, Reject) and rej.reason == RejectReason.INVALID_PDU_FIELD
    assert len(rej.data) == 48  # the rejected BHS


def test_dataout_unknown_itt_silently_dropped_and_wrong_ttt_rejected() -> None:
    _s, c = make(TransferLimits(immediate_data=False))
    c.receive_pdu(DataOut(itt=77, ttt=5, exp_statsn=0, datasn=0, buffer_offset=0, data=b"x" * 4))
    assert pdus(c) == []
    c.receive_pdu(write_cmd(5, 1, 512))
    pdus(c)
    c.receive_pdu(DataOut(itt=5, ttt=0x1234567, exp_statsn=0, datasn=0, buffer_offset=0, data=bytes(512)))
    (rej,) = pdus(c)
    assert isinstance(rej, Reject) and rej.reason == RejectReason.INVALID_PDU_FIELD


def test_immediate_data_longer_than_edtl_rejected_and_cmdsn_not_consumed() -> None:
    s, c = make()
    c.receive_pdu(write_cmd(1, 1, 100, bytes(200)))
    (rej,) = pdus(c)
    assert isinstance(rej, Reject) and rej.reason == RejectReason.PROTOCOL_ERROR
    assert s.window.exp_cmdsn == 1  # a rejected command leaves a CmdSN gap (RFC 7143 7.2)


def test_final_zero_with_initial_r2t_yes_is_protocol_error() -> None:
    _s, c = make(TransferLimits(initial_r2t=True))
    c.receive_pdu(write_cmd(1, 1, 100000, bytes(512), final=False))
    (rej,) = pdus(c)
    assert isinstance(rej, Reject) and rej.reason == RejectReason.PROTOCOL_ERROR


def read_and_complete(limits: TransferLimits, edtl: int, produced: int, sense: bytes = b"") -> list:
    _s, c = make(limits)
    c.receive_pdu(ScsiCommand(itt=9, cmdsn=1, exp_statsn=0, cdb=READ10, expected_data_length=edtl, read=True))
    (ex,) = [e for e in c.take_events() if isinstance(e, ExecuteCommand)]
    assert ex.request.expected_in_length == edtl
    status = ScsiStatus.CHECK_CONDITION if sense else ScsiStatus.GOOD
    c.command_complete(
        ex.task,
        ScsiResult(
            status=status, data_in=bytes(range(256)) * (produced // 256) + bytes(produced % 256), sense=sense
        ),
    )
    return pdus(c)


def test_datain_split_by_mrdsl_and_burst_with_phase_collapse() -> None:
    out = read_and_complete(
        TransferLimits(max_xmit_data_segment_length=4096, max_burst_length=8192), 20000, 20000
    )
    assert all(isinstance(p, DataIn) for p in out)
    assert [len(p.data) for p in out] == [4096, 4096, 4096, 4096, 3616]
    assert [p.datasn for p in out] == [0, 1, 2, 3, 4]
    assert [p.final for p in out] == [False, True, False, True, True]
    assert [p.buffer_offset for p in out] == [0, 4096, 8192, 12288, 16384]
    last = out[-1]
    assert last.status_present and last.status == 0 and last.statsn == 100
    assert not last.underflow and not last.overflow
    assert not any(p.status_present for p in out[:-1])


def test_read_underflow_residual() -> None:
    out = read_and_complete(TransferLimits(), 4096, 512)
    assert len(out) == 1 and isinstance(out[0], DataIn)
    assert out[0].underflow and out[0].residual == 4096 - 512 and out[0].status_present


def test_read_overflow_residual_truncates_data() -> None:
    out = read_and_complete(TransferLimits(), 512, 4096)
    assert len(out) == 1 and len(out[0].data) == 512
    assert out[0].overflow and out[0].residual == 4096 - 512


def test_read_check_condition_gets_scsi_response_with_sense() -> None:
    sense = bytes([0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0])
    out = read_and_complete(TransferLimits(), 512, 0, sense)
    (resp,) = out
    assert isinstance(resp, ScsiResponse) and resp.status == ScsiStatus.CHECK_CONDITION
    assert bytes(resp.data) == b"\x00\x12" + sense
    assert resp.underflow and resp.residual == 512


def test_write_residual_from_scsi_result() -> None:
    _s, c = make()
    c.receive_pdu(write_cmd(1, 1, 512, bytes(512)))
    (ex,) = [e for e in c.take_events() if isinstance(e, ExecuteCommand)]
    c.command_complete(ex.task, ScsiResult(out_residual=256))
    (resp,) = pdus(c)
    assert resp.underflow and resp.residual == 256


def test_cmdsn_out_of_order_held_until_gap_fills() -> None:
    s, c = make()
    c.receive_pdu(ScsiCommand(itt=2, cmdsn=2, exp_statsn=0, cdb=READ10, expected_data_length=512, read=True))
    assert [e for e in c.take_events() if isinstance(e, ExecuteCommand)] == []
    c.receive_pdu(ScsiCommand(itt=1, cmdsn=1, exp_statsn=0, cdb=READ10, expected_data_length=512, read=True))
    ex = [e.task.itt for e in c.take_events() if isinstance(e, ExecuteCommand)]
    assert ex == [1, 2]
    assert s.window.exp_cmdsn == 3


def test_cmdsn_outside_window_dropped_and_immediate_runs_at_once() -> None:
    s, c = make()
    c.receive_pdu(ScsiCommand(itt=1, cmdsn=1000, exp_statsn=0, cdb=READ10, expected_data_length=0))
    assert c.take_events() == []
    c.receive_pdu(ScsiCommand(itt=3, cmdsn=5, exp_statsn=0, cdb=READ10, immediate=True))
    ex = [e.task.itt for e in c.take_events() if isinstance(e, ExecuteCommand)]
    assert ex == [3]
    assert s.window.exp_cmdsn == 1


def test_nop_out_ping_echo_and_reply_to_target_ping() -> None:
    _s, c = make()
    c.receive_pdu(NopOut(itt=0x10, cmdsn=1, exp_statsn=0, immediate=True, data=b"hello"))
    (nop,) = pdus(c)
    assert (
        isinstance(nop, NopIn) and nop.itt == 0x10 and nop.ttt == RESERVED_TAG and bytes(nop.data) == b"hello"
    )
    assert nop.statsn == 100 and c.statsn == 101
    c.receive_pdu(NopOut(itt=RESERVED_TAG, cmdsn=1, exp_statsn=0, ttt=5, immediate=True))
    assert pdus(c) == []


def test_target_nopin_ping_and_timeout() -> None:
    s, c = make(nopin_interval=5.0, nopin_timeout=3.0)
    c.tick(4.0)
    assert c.take_events() == []
    c.tick(5.0)
    (ping,) = pdus(c)
    assert isinstance(ping, NopIn) and ping.itt == RESERVED_TAG and ping.ttt != RESERVED_TAG
    assert c.statsn == 100  # a ping does not advance StatSN
    c.receive_pdu(NopOut(itt=RESERVED_TAG, cmdsn=1, exp_statsn=100, ttt=ping.ttt, immediate=True), now=6.0)
    c.tick(9.0)
    assert c.take_events() == []
    c.tick(11.0)
    pdus(c)
    c.tick(14.0)
    assert any(isinstance(e, CloseConnection) for e in c.take_events())
    assert c.closed and s.closed


def test_logout_close_session() -> None:
    s, c = make()
    c.receive_pdu(
        LogoutRequest(itt=7, cmdsn=1, exp_statsn=0, reason=LogoutReason.CLOSE_SESSION, immediate=True)
    )
    ev = c.take_events()
    resp = ev[0].pdu  # type: ignore[union-attr]
    assert isinstance(resp, LogoutResponse) and resp.response == LogoutResponseCode.CLOSED
    assert isinstance(ev[-1], CloseConnection)
    assert s.closed


def test_logout_remove_for_recovery_not_supported_at_erl0() -> None:
    _s, c = make()
    c.receive_pdu(
        LogoutRequest(itt=7, cmdsn=1, exp_statsn=0, reason=LogoutReason.REMOVE_FOR_RECOVERY, immediate=True)
    )
    (resp,) = pdus(c)
    assert resp.response == LogoutResponseCode.RECOVERY_NOT_SUPPORTED
    assert not c.closed


def test_logout_close_unknown_cid() -> None:
    _s, c = make()
    c.receive_pdu(
        LogoutRequest(
            itt=7, cmdsn=1, exp_statsn=0, reason=LogoutReason.CLOSE_CONNECTION, cid=9, immediate=True
        )
    )
    (resp,) = pdus(c)
    assert resp.response == LogoutResponseCode.CID_NOT_FOUND


def test_snack_and_login_in_ffp_rejected() -> None:
    _s, c = make()
    c.receive_pdu(SnackRequest(itt=1, exp_statsn=0, type=0))
    c.receive_pdu(LoginRequest(itt=1, isid=1, tsih=1, cid=0, cmdsn=1, exp_statsn=0, csg=1, nsg=3))
    out = pdus(c)
    assert [p.reason for p in out] == [RejectReason.PROTOCOL_ERROR, RejectReason.PROTOCOL_ERROR]


def test_malformed_raw_pdu_and_data_digest_error_rejected() -> None:
    _s, c = make()
    nop = codec.encode_pdu_bytes(
        NopOut(itt=1, cmdsn=1, exp_statsn=0, immediate=True, data=b"abcd"), data_digest=True
    )
    bad = nop[:-1] + bytes([nop[-1] ^ 0xFF])
    reader = PduReader(data_digest=True)
    reader.feed(bad)
    raw = reader.next_pdu()
    assert raw is not None and not raw.data_digest_ok
    c.receive_raw(raw)
    (rej,) = pdus(c)
    assert rej.reason == RejectReason.DATA_DIGEST_ERROR and bytes(rej.data) == bad[:48]
    unknown = bytearray(48)
    unknown[0] = 0x1E  # not an initiator opcode
    reader2 = PduReader()
    reader2.feed(bytes(unknown))
    raw2 = reader2.next_pdu()
    assert raw2 is not None
    c.receive_raw(raw2)
    (rej2,) = pdus(c)
    assert isinstance(rej2, Reject) and rej2.reason in (
        RejectReason.COMMAND_NOT_SUPPORTED,
        RejectReason.PROTOCOL_ERROR,
    )


def test_tmf_event_emitted_for_executing_task() -> None:
    from target.pdu.pdus import TaskMgmtRequest, TmfFunction

    s, c = make()
    c.receive_pdu(ScsiCommand(itt=1, cmdsn=1, exp_statsn=0, cdb=READ10, expected_data_length=512, read=True))
    (ex,) = c.take_events()
    assert isinstance(ex, ExecuteCommand)
    c.receive_pdu(
        TaskMgmtRequest(
            itt=2, cmdsn=2, exp_statsn=0, function=TmfFunction.ABORT_TASK, rtt=1, ref_cmdsn=1, immediate=True
        )
    )
    (ev,) = c.take_events()
    assert isinstance(ev, RunTaskManagement) and ev.job.rtt == 1
    c.command_aborted(ex.task)
    c.tmf_complete(ev.job, 0)
    (resp,) = pdus(c)
    assert resp.response == 0 and s.window.max_cmdsn == 65


def test_target_opcode_from_initiator_is_rejected_as_protocol_error() -> None:
    """RFC 7143 11.2.1.2: opcodes 0x20-0x3f are target opcodes; an initiator sending one gets a Reject."""
    _s, c = make()
    bhs = bytearray(48)
    bhs[0] = 0x21  # SCSI Response: valid PDU, wrong direction
    bhs[1] = 0x80
    bhs[16:20] = (0x42).to_bytes(4, "big")
    reader = PduReader()
    reader.feed(bytes(bhs))
    raw = reader.next_pdu()
    assert raw is not None
    c.receive_raw(raw)
    (rej,) = pdus(c)
    assert isinstance(rej, Reject)
    assert rej.reason == RejectReason.PROTOCOL_ERROR
    assert bytes(rej.data[:48]) == bytes(bhs)
    assert rej.statsn == 100 and c.statsn == 101
    assert not c.closed
