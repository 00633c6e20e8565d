"""The task set of one logical unit: task attribute ordering and aborts (SAM-5 8.5 - 8.9, 7.x TMFs).

Theory of operation. Every command runs inside `TaskSet.run()`: it is admitted (TASK SET FULL beyond the bound,
OVERLAPPED COMMANDS ATTEMPTED for a tag already in use on the nexus), waits in the dormant state until the
ordering rules enable it, runs, and leaves. With the unrestricted queue algorithm (SAM-5 8.6):

    HEAD OF QUEUE  enabled at once
    ORDERED        enabled when every older task has completed and no HEAD OF QUEUE task is pending
    SIMPLE         enabled when no older ORDERED task and no HEAD OF QUEUE task is pending
    ACA            enabled at once (SAM-5 8.6.5; the device admits one only while ACA is active)
    (UNTAGGED is treated as SIMPLE)

While an ACA condition is active (`blocked`, set by the device, see target.scsi.aca) no dormant task other than
an ACA task is enabled: the task set is blocked until the condition is cleared (SAM-5 5.9.2).

Aborting a task (SAM-5 5.6): a dormant task is woken and never runs; an enabled task is allowed to finish its
I/O (like LIO, a backstore operation is not torn in half) and its result is thrown away. The TMF returns only
after every affected task has left the set. What the aborted `run()` does then:
- tasks of the nexus that issued the TMF (or of a lost nexus): raise `TaskAborted` -> the transport sends nothing;
- tasks of other nexuses with TAS=1 (control mode page): return TASK ABORTED status;
- tasks of other nexuses with TAS=0: raise `TaskAborted`; the device establishes COMMANDS CLEARED BY ANOTHER
  INITIATOR for those nexuses (or the reset's own unit attention).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from target.scsi.command import Nexus, ScsiResult, ScsiStatus, TaskAttr
from target.scsi.sense import Asc, CheckCondition, SenseKey, StatusError

DEFAULT_MAX_TASKS = 512


class TaskAborted(Exception):
    """The task was aborted and must get no response (raised out of `Dispatcher.execute`)."""


class TmfResult(enum.IntEnum):
    """Task management outcome; values are the iSCSI TMF response codes (RFC 7143 11.6.1)."""

    FUNCTION_COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    NOT_SUPPORTED = 5
    FUNCTION_REJECTED = 255


class TaskState(enum.Enum):
    DORMANT = "dormant"
    ENABLED = "enabled"
    DONE = "done"


@dataclass(eq=False)
class Task:
    nexus: Nexus
    tag: int
    attr: TaskAttr
    seq: int
    state: TaskState = TaskState.DORMANT
    aborted: bool = False
    #: complete with TASK ABORTED status instead of silence (other nexus, TAS=1)
    report_aborted: bool = False
    # The two events are created only when someone waits on them: a dormant task waiting to be enabled, an
    # abort waiting for the task to leave. Most tasks are enabled at admission and never aborted.
    _enabled: asyncio.Event | None = field(default=None, repr=False)
    _finished: asyncio.Event | None = field(default=None, repr=False)

    @property
    def enabled(self) -> asyncio.Event:
        """Set when the task leaves the dormant state."""
        if self._enabled is None:
            self._enabled = asyncio.Event()
            if self.state is not TaskState.DORMANT:
                self._enabled.set()
        return self._enabled

    @property
    def finished(self) -> asyncio.Event:
        """Set when the task has left the task set."""
        if self._finished is None:
            self._finished = asyncio.Event()
            if self.state is TaskState.DONE:
                self._finished.set()
        return self._finished

    def _enable(self) -> None:
        self.state = TaskState.ENABLED
        if self._enabled is not None:
            self._enabled.set()


class TaskSet:
    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        self.max_tasks = max_tasks
        #: incomplete tasks in arrival order (dicts keep insertion order), by (nexus, tag)
        self._tasks: dict[tuple[Nexus, int], Task] = {}
        self._seq = itertools.count()
        self._blocked = False
        # counters kept by admit/_complete/_schedule/abort, so the common case (SIMPLE tasks, nothing dormant)
        # needs no scan of the set: dormant tasks, HEAD OF QUEUE tasks and ORDERED tasks in the set
        self._dormant = 0
        self._hoq = 0
        self._ordered = 0

    @property
    def blocked(self) -> bool:
        """An ACA condition blocks the task set: only ACA tasks are enabled."""
        return self._blocked

    @blocked.setter
    def blocked(self, value: bool) -> None:
        self._blocked = value
        self._schedule()

    def enables_simple(self, nexus: Nexus, tag: int) -> bool:
        """Whether a SIMPLE task with this tag would be admitted and enabled at once (no ACA block, no ORDERED or
        HEAD OF QUEUE task in the set, the tag not in use on the nexus, room in the set): the check the direct
        READ/WRITE path (target.scsi.sbc.direct) makes instead of admitting a task it completes in one step."""
        return (
            not self._blocked
            and not self._ordered
            and not self._hoq
            and len(self._tasks) < self.max_tasks
            and (nexus, tag) not in self._tasks
        )

    def has_aca_task(self) -> bool:
        return any(t.attr is TaskAttr.ACA and not t.aborted for t in self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def find(self, nexus: Nexus, tag: int) -> Task | None:
        return self._tasks.get((nexus, tag))

    # --- running ------------------------------------------------------------------------------------------

    async def run(
        self, nexus: Nexus, tag: int, attr: TaskAttr, work: Callable[[], Awaitable[ScsiResult]]
    ) -> ScsiResult:
        task = self.admit(nexus, tag, attr)
        try:
            if task.state is TaskState.DORMANT:
                await task.enabled.wait()
            if task.aborted:
                return self._aborted_outcome(task)
            result = await work()
            if task.aborted:
                return self._aborted_outcome(task)
            return result
        finally:
            self._complete(task)

    def admit(self, nexus: Nexus, tag: int, attr: TaskAttr) -> Task:
        key = (nexus, tag)
        if key in self._tasks:
            # SAM-5 5.8.3: a tag already in use on this nexus
            raise CheckCondition(SenseKey.ABORTED_COMMAND, Asc.OVERLAPPED_COMMANDS_ATTEMPTED)
        if len(self._tasks) >= self.max_tasks:
            raise StatusError(ScsiStatus.TASK_SET_FULL)
        task = Task(nexus=nexus, tag=tag, attr=attr, seq=next(self._seq))
        # A new task only adds constraints for the tasks behind it (there are none), so admitting it never
        # enables another task: only its own state is decided here, by the rules of `_schedule`.
        if attr is TaskAttr.HEAD_OF_QUEUE or attr is TaskAttr.ACA:
            ok = True
        elif self._blocked:
            ok = False
        elif attr is TaskAttr.ORDERED:
            ok = not self._tasks and not self._hoq
        else:
            ok = not self._ordered and not self._hoq
        if attr is TaskAttr.HEAD_OF_QUEUE:
            self._hoq += 1
        elif attr is TaskAttr.ORDERED:
            self._ordered += 1
        self._tasks[key] = task
        if ok:
            task.state = TaskState.ENABLED
        else:
            self._dormant += 1
        return task

    def _complete(self, task: Task) -> None:
        if task.state is TaskState.DONE:
            return
        if task.state is TaskState.DORMANT:
            self._dormant -= 1
        task.state = TaskState.DONE
        key = (task.nexus, task.tag)
        if self._tasks.get(key) is task:
            del self._tasks[key]
            if task.attr is TaskAttr.HEAD_OF_QUEUE:
                self._hoq -= 1
            elif task.attr is TaskAttr.ORDERED:
                self._ordered -= 1
        if task._finished is not None:
            task._finished.set()
        if self._dormant:
            self._schedule()

    def _schedule(self) -> None:
        """Enable every dormant task the ordering rules allow (see the module docstring)."""
        if not self._dormant:
            return
        hoq_pending = self._hoq > 0
        older_incomplete = False
        older_ordered = False
        for t in self._tasks.values():
            if t.state is TaskState.DORMANT:
                if t.attr in (TaskAttr.HEAD_OF_QUEUE, TaskAttr.ACA):
                    ok = True
                elif self._blocked:
                    ok = False
                elif t.attr is TaskAttr.ORDERED:
                    ok = not older_incomplete and not hoq_pending
                else:
                    ok = not older_ordered and not hoq_pending
                if ok or t.aborted:
                    self._dormant -= 1
                    t._enable()
            if t.attr is TaskAttr.ORDERED:
                older_ordered = True
            older_incomplete = True

    @staticmethod
    def _aborted_outcome(task: Task) -> ScsiResult:
        if task.report_aborted:
            return ScsiResult(status=ScsiStatus.TASK_ABORTED)
        raise TaskAborted(f"task {task.tag:#x} of {task.nexus.initiator_port} aborted")

    # --- aborting -----------------------------------------------------------------------------------------

    async def abort(self, pred: Callable[[Task], bool], *, issuer: Nexus | None, tas: bool) -> list[Task]:
        """Abort every task matching `pred`; tasks of nexuses other than `issuer` report TASK ABORTED when `tas`.
        Waits until they have all left the set; returns them."""
        victims = [t for t in self._tasks.values() if pred(t) and not t.aborted]
        for t in victims:
            t.aborted = True
            t.report_aborted = tas and issuer is not None and t.nexus != issuer
            if t.state is TaskState.DORMANT:
                self._dormant -= 1
                t._enable()
        for t in victims:
            await t.finished.wait()
        return victims

    async def abort_task(self, nexus: Nexus, tag: int) -> TmfResult:
        """ABORT TASK (SAM-5 7.2)."""
        task = self.find(nexus, tag)
        if task is None:
            return TmfResult.TASK_DOES_NOT_EXIST
        await self.abort(lambda t: t is task, issuer=nexus, tas=False)
        return TmfResult.FUNCTION_COMPLETE

    async def abort_task_set(self, nexus: Nexus) -> list[Task]:
        """ABORT TASK SET (SAM-5 7.3): every task of this I_T nexus, silently."""
        return await self.abort(lambda t: t.nexus == nexus, issuer=nexus, tas=False)

    async def abort_all(self, issuer: Nexus | None, *, tas: bool, exclude: Task | None = None) -> list[Task]:
        """CLEAR TASK SET / LOGICAL UNIT RESET (SAM-5 7.4, 7.10): every task of every nexus."""
        return await self.abort(lambda t: t is not exclude, issuer=issuer, tas=tas)
