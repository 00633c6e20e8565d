"""Task Management Function requests (RFC 7143 11.5 / 11.6; SAM-5 7) for the iSCSI transport.

Theory of operation
-------------------
`prepare()` is sans-I/O: it runs when the TMF request's CmdSN turn comes (usually immediate), answers what
the transport alone can answer, and aborts tasks that never reached the SCSI layer (still waiting for
Data-Out, or held for their CmdSN turn). Everything else becomes a `TmfJob` for `perform()`, the only
coroutine here, which calls the SCSI layer's task-management verbs (target.scsi.dispatch.Dispatcher).

Answers decided here:
    unknown function                         -> FUNCTION NOT SUPPORTED (11.6.1, response 5)
    TASK REASSIGN at ErrorRecoveryLevel < 2  -> TASK REASSIGN NOT SUPPORTED (response 4)
    LUN-addressed function, LUN not mapped   -> LUN DOES NOT EXIST (response 2)
    ABORT TASK, task held/receiving          -> aborted here (no response for it), FUNCTION COMPLETE
    ABORT TASK, task not found (11.5.1):
        RefCmdSN in the window, < the TMF's  -> "consider the CmdSN received" (plug the gap), COMPLETE
        otherwise, e.g. RefCmdSN < ExpCmdSN  -> TASK DOES NOT EXIST (11.5.1 c: outside the valid CmdSN window;
        (the task completed already)            LIO's iscsit_tmr_abort_task answers the same, and libiscsi's
                                                iSCSITMF.AbortTaskSimpleAsync expects it)
Aborted tasks get no response on this session (the SCSI layer raises TaskAborted for the ones it runs).

CLEAR TASK SET, LOGICAL UNIT RESET and TARGET WARM/COLD RESET also reach the tasks of OTHER sessions on the
affected LUs (SAM-5 7.4, 7.10). Those still waiting for Data-Out never reached the SCSI layer, so the
transport aborts them here, through the session registry: with the LU's TAS bit set they complete with
TASK ABORTED status, otherwise they end silently (the SCSI layer handles the ones it is running).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from target.iscsi import erl
from target.iscsi.sequence import sn_lt
from target.iscsi.task import Task, TaskState
from target.pdu import lun as lunmod
from target.pdu.pdus import TaskMgmtRequest, TmfFunction, TmfResponse
from target.scsi.command import LunAccess, Nexus

if TYPE_CHECKING:
    from target.iscsi.connection import Connection
    from target.iscsi.session import Session

log = logging.getLogger("target.iscsi.tmf")

_LUN_FUNCTIONS = {
    TmfFunction.ABORT_TASK,
    TmfFunction.ABORT_TASK_SET,
    TmfFunction.CLEAR_ACA,
    TmfFunction.CLEAR_TASK_SET,
    TmfFunction.LOGICAL_UNIT_RESET,
}


@dataclass
class TmfJob:
    itt: int
    function: int
    lun: int
    rtt: int
    ref_cmdsn: int
    nexus: Nexus
    lun_map: dict[int, LunAccess] = field(default_factory=dict)
    #: set when the transport answered by itself (perform() is then not needed)
    response: int | None = None
    #: TARGET COLD RESET: after the response every connection to every initiator is closed (11.5.1)
    close_all_after: bool = False


def prepare(req: TaskMgmtRequest, session: Session, conn: Connection) -> TmfJob:
    try:
        lun = lunmod.decode_lun(req.lun)
    except Exception:
        lun = -1
    job = TmfJob(
        itt=req.itt,
        function=req.function,
        lun=lun,
        rtt=req.rtt,
        ref_cmdsn=req.ref_cmdsn,
        nexus=session.nexus,
        lun_map=session.lun_map,
    )
    try:
        function = TmfFunction(req.function)
    except ValueError:
        job.response = TmfResponse.NOT_SUPPORTED
        return job
    if function is TmfFunction.TASK_REASSIGN:
        # connection recovery (task reassignment) needs ErrorRecoveryLevel 2 (RFC 7143 6.2.2)
        job.response = erl.task_reassign_response(session.error_recovery_level)
        return job
    if function in _LUN_FUNCTIONS and lun not in session.lun_map:
        job.response = TmfResponse.LUN_DOES_NOT_EXIST
        return job
    # ABORT TASK can come in bursts from a struggling initiator: DEBUG; the set/LU/target functions are INFO
    level = logging.DEBUG if function is TmfFunction.ABORT_TASK else logging.INFO
    conn.log.with_logger(log).log(
        level, "TMF %s lun=%d rtt=0x%08x", function.name, lun, req.rtt, extra={"itt": req.itt}
    )

    if function is TmfFunction.ABORT_TASK:
        found = session.find_task(req.rtt)
        if found is not None:
            owner, task = found
            if task.lun != lun:
                job.response = TmfResponse.TASK_DOES_NOT_EXIST
            elif task.state is not TaskState.EXECUTING:
                _abort_local(owner, task)
                job.response = TmfResponse.COMPLETE
            return job
        window = session.window
        if window.is_past(req.ref_cmdsn):
            # completed (and answered) before the abort arrived: outside the window (RFC 7143 11.5.1 c, as LIO)
            job.response = TmfResponse.TASK_DOES_NOT_EXIST
        elif window.in_window(req.ref_cmdsn) and (req.immediate or sn_lt(req.ref_cmdsn, req.cmdsn)):
            conn.plug_cmdsn(req.ref_cmdsn)
            job.response = TmfResponse.COMPLETE
        else:
            job.response = TmfResponse.TASK_DOES_NOT_EXIST
        return job

    if function in (TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET, TmfFunction.LOGICAL_UNIT_RESET):
        for owner, task in list(session.all_tasks()):
            if task.lun == lun and task.state is not TaskState.EXECUTING:
                _abort_local(owner, task)
        if function is not TmfFunction.ABORT_TASK_SET:
            # CLEAR TASK SET and LOGICAL UNIT RESET reach every I_T nexus of the LU (SAM-5 7.4, 7.10)
            _abort_other_sessions(session, {id(session.lun_map[lun].lu)})
    elif function in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
        for owner, task in list(session.all_tasks()):
            if task.state is not TaskState.EXECUTING:
                _abort_local(owner, task)
        # a target reset is a LU reset of every LU the issuing nexus reaches (RFC 7143 11.5.1)
        _abort_other_sessions(session, {id(access.lu) for access in session.lun_map.values()})
        job.close_all_after = function is TmfFunction.TARGET_COLD_RESET
    return job


def _abort_other_sessions(session: Session, lus: set[int]) -> None:
    """Tasks of OTHER sessions on the reset LUs that are still waiting for Data-Out never reached the SCSI
    layer, so its reset cannot see them: abort them here. What their initiator sees depends on the LU's TAS
    bit (control mode page), as for the tasks the SCSI layer aborts. Tasks already executing are the SCSI
    layer's; tasks with all their data, only waiting for their CmdSN turn, run after the reset (as in LIO)."""
    for other in session.others():
        for owner, task in list(other.all_tasks()):
            if task.state is not TaskState.RECEIVING:
                continue
            access = other.lun_map.get(task.lun)
            if access is None or id(access.lu) not in lus:
                continue
            tas = bool(getattr(access.lu, "tas", True))
            owner.log.with_logger(log).info(
                "task waiting for Data-Out aborted by a reset from %s (TAS=%d)",
                session.nexus.initiator_port,
                int(tas),
                extra={"itt": task.itt},
            )
            owner.command_aborted_by_other(task, tas=tas)


def _abort_local(conn: Connection, task: Task) -> None:
    conn.log.with_logger(log).debug("task aborted before execution", extra={"itt": task.itt})
    conn.command_aborted(task)


_BY_NAME = {
    "COMPLETE": TmfResponse.COMPLETE,
    "FUNCTION_COMPLETE": TmfResponse.COMPLETE,
    "SUCCEEDED": TmfResponse.COMPLETE,
    "TASK_DOES_NOT_EXIST": TmfResponse.TASK_DOES_NOT_EXIST,
    "NO_TASK": TmfResponse.TASK_DOES_NOT_EXIST,
    "NOT_FOUND": TmfResponse.TASK_DOES_NOT_EXIST,
    "LUN_DOES_NOT_EXIST": TmfResponse.LUN_DOES_NOT_EXIST,
    "INCORRECT_LUN": TmfResponse.LUN_DOES_NOT_EXIST,
    "NOT_SUPPORTED": TmfResponse.NOT_SUPPORTED,
    "FUNCTION_NOT_SUPPORTED": TmfResponse.NOT_SUPPORTED,
    "AUTHORIZATION_FAILED": TmfResponse.AUTHORIZATION_FAILED,
    "REJECTED": TmfResponse.REJECTED,
    "FUNCTION_REJECTED": TmfResponse.REJECTED,
}


def to_response(result: Any) -> TmfResponse:
    """Map the SCSI layer's TmfResult (an enum, or None for success) to the iSCSI TMF response code."""
    if result is None or result is True:
        return TmfResponse.COMPLETE
    name = getattr(result, "name", None)
    if isinstance(name, str) and name.upper() in _BY_NAME:
        return _BY_NAME[name.upper()]
    if isinstance(result, int) and result in TmfResponse._value2member_map_:
        return TmfResponse(result)
    return TmfResponse.REJECTED


async def perform(job: TmfJob, dispatcher: Any) -> TmfResponse:
    """Run the SCSI layer's TMF for a prepared job (prepare() returned no response)."""
    if job.response is not None:
        return TmfResponse(job.response)
    function = TmfFunction(job.function)
    nexus, lun = job.nexus, job.lun
    try:
        if function is TmfFunction.ABORT_TASK:
            result = await dispatcher.abort_task(nexus, lun, job.rtt, lun_map=job.lun_map)
        elif function is TmfFunction.ABORT_TASK_SET:
            result = await dispatcher.abort_task_set(nexus, lun, lun_map=job.lun_map)
        elif function is TmfFunction.CLEAR_TASK_SET:
            result = await dispatcher.clear_task_set(nexus, lun, lun_map=job.lun_map)
        elif function is TmfFunction.LOGICAL_UNIT_RESET:
            result = await dispatcher.lun_reset(nexus, lun, lun_map=job.lun_map)
        elif function is TmfFunction.CLEAR_ACA:
            result = await dispatcher.clear_aca(nexus, lun, lun_map=job.lun_map)
        elif function in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
            result = await dispatcher.target_reset(
                nexus, job.lun_map, cold=function is TmfFunction.TARGET_COLD_RESET
            )
        else:
            return TmfResponse.NOT_SUPPORTED
    except Exception:
        log.exception("TMF %s failed", function.name)
        return TmfResponse.REJECTED
    return to_response(result)
