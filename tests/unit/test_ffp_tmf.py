"""Task management in the transport: abort of tasks waiting for Data-Out, RefCmdSN rules, unsupported
functions, unmapped LUNs, and the mapping of the SCSI layer's results."""

from __future__ import annotations

import asyncio

from target.iscsi import tmf
from target.iscsi.connection import Connection, ExecuteCommand, RunTaskManagement, SendPdu
from target.iscsi.session import Session
from target.iscsi.task import TransferLimits
from target.pdu.pdus import (
    R2T,
    RESERVED_TAG,
    DataOut,
    ScsiCommand,
    TaskMgmtRequest,
    TaskMgmtResponse,
    TmfFunction,
    TmfResponse,
)
from target.scsi.command import LunAccess, Nexus

NEXUS = Nexus("iqn.2024-01.test:init", 1, "iqn.2024-01.test:tgt", 1)
WRITE10 = bytes([0x2A]) + bytes(15)
READ10 = bytes([0x28]) + bytes(15)


def make() -> tuple[Session, Connection]:
    s = Session(tsih=1, nexus=NEXUS, exp_cmdsn=1, lun_map={0: LunAccess(lu=object())})
    c = Connection(s, 0, TransferLimits(immediate_data=False), statsn=1)
    s.add_connection(c)
    return s, c


def tmf_req(
    function: int, *, rtt: int = RESERVED_TAG, ref: int = 0, lun: int = 0, cmdsn: int = 1
) -> TaskMgmtRequest:
    return TaskMgmtRequest(
        itt=0x100,
        cmdsn=cmdsn,
        exp_statsn=0,
        function=function,
        lun=lun,
        rtt=rtt,
        ref_cmdsn=ref,
        immediate=True,
    )


def responses(c: Connection) -> list[int]:
    return [
        e.pdu.response
        for e in c.take_events()
        if isinstance(e, SendPdu) and isinstance(e.pdu, TaskMgmtResponse)
    ]


def test_abort_task_waiting_for_dataout() -> None:
    s, c = make()
    c.receive_pdu(
        ScsiCommand(itt=1, cmdsn=1, exp_statsn=0, cdb=WRITE10, expected_data_length=4096, write=True)
    )
    (r2t,) = [e.pdu for e in c.take_events() if isinstance(e, SendPdu)]
    assert isinstance(r2t, R2T)
    assert s.buffered == 4096
    c.receive_pdu(tmf_req(TmfFunction.ABORT_TASK, rtt=1, ref=1, cmdsn=2))
    assert responses(c) == [TmfResponse.COMPLETE]
    assert 1 not in c.tasks and s.buffered == 0
    assert s.window.max_cmdsn == 65  # the aborted command's slot is free again
    # late Data-Out for the aborted task is dropped silently, never executed
    c.receive_pdu(
        DataOut(itt=1, ttt=r2t.ttt, exp_statsn=0, datasn=0, buffer_offset=0, final=True, data=bytes(4096))
    )
    assert c.take_events() == []


def test_abort_task_not_found_refcmdsn_rules() -> None:
    s, c = make()
    c.receive_pdu(ScsiCommand(itt=1, cmdsn=1, exp_statsn=0, cdb=READ10, expected_data_length=0))
    (ex,) = [e for e in c.take_events() if isinstance(e, ExecuteCommand)]
    from target.scsi.command import ScsiResult

    c.command_complete(ex.task, ScsiResult())
    c.take_events()
    # completed before the abort: RefCmdSN < ExpCmdSN is outside the window -> TASK DOES NOT EXIST (11.5.1 c, LIO)
    c.receive_pdu(tmf_req(TmfFunction.ABORT_TASK, rtt=1, ref=1, cmdsn=2))
    assert responses(c) == [TmfResponse.TASK_DOES_NOT_EXIST]
    # never arrived but inside the window and before the TMF: plug the gap, FUNCTION COMPLETE
    c.receive_pdu(tmf_req(TmfFunction.ABORT_TASK, rtt=9, ref=2, cmdsn=2))
    assert responses(c) == [TmfResponse.COMPLETE]
    assert s.window.exp_cmdsn == 3
    # outside the window: TASK DOES NOT EXIST
    c.receive_pdu(tmf_req(TmfFunction.ABORT_TASK, rtt=9, ref=5000, cmdsn=3))
    assert responses(c) == [TmfResponse.TASK_DOES_NOT_EXIST]


def test_plugged_gap_releases_held_command() -> None:
    _s, c = make()
    c.receive_pdu(ScsiCommand(itt=2, cmdsn=2, exp_statsn=0, cdb=READ10))
    assert not [e for e in c.take_events() if isinstance(e, ExecuteCommand)]
    c.receive_pdu(tmf_req(TmfFunction.ABORT_TASK, rtt=1, ref=1, cmdsn=3))
    events = c.take_events()
    assert [e.task.itt for e in events if isinstance(e, ExecuteCommand)] == [2]


def test_unsupported_and_unmapped() -> None:
    _s, c = make()
    c.receive_pdu(tmf_req(TmfFunction.TASK_REASSIGN, rtt=1))
    c.receive_pdu(tmf_req(42))
    c.receive_pdu(tmf_req(TmfFunction.LOGICAL_UNIT_RESET, lun=0x0005_0000_0000_0000))
    c.receive_pdu(tmf_req(TmfFunction.ABORT_TASK_SET, lun=0x0007_0000_0000_0000))
    assert responses(c) == [
        TmfResponse.TASK_REASSIGN_NOT_SUPPORTED,
        TmfResponse.NOT_SUPPORTED,
        TmfResponse.LUN_DOES_NOT_EXIST,
        TmfResponse.LUN_DOES_NOT_EXIST,
    ]


def test_lun_reset_goes_to_dispatcher_and_maps_result() -> None:
    _s, c = make()
    c.receive_pdu(tmf_req(TmfFunction.LOGICAL_UNIT_RESET))
    (ev,) = c.take_events()
    assert isinstance(ev, RunTaskManagement)

    class FakeDispatcher:
        def __init__(self) -> None:
            self.calls: list[tuple[str, int]] = []

        async def lun_reset(self, nexus: Nexus, lun: int, **kw: object) -> object:
            self.calls.append(("lun_reset", lun))
            from target.scsi.task_set import TmfResult

            return TmfResult.FUNCTION_COMPLETE

    d = FakeDispatcher()
    resp = asyncio.run(tmf.perform(ev.job, d))
    assert resp == TmfResponse.COMPLETE and d.calls == [("lun_reset", 0)]
    c.tmf_complete(ev.job, resp)
    assert responses(c) == [TmfResponse.COMPLETE]


def test_to_response_mapping() -> None:
    from target.scsi.task_set import TmfResult

    assert tmf.to_response(TmfResult.TASK_DOES_NOT_EXIST) == TmfResponse.TASK_DOES_NOT_EXIST
    assert tmf.to_response(TmfResult.FUNCTION_REJECTED) == TmfResponse.REJECTED
    assert tmf.to_response(TmfResult.NOT_SUPPORTED) == TmfResponse.NOT_SUPPORTED
    assert tmf.to_response(None) == TmfResponse.COMPLETE
