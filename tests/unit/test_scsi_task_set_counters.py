"""The task set's counter-based scheduling (admission decides only the new task; completion rescans only while a
task is dormant) enables exactly the tasks the full-scan rules of SAM-5 8.6 enable, for any sequence of
admissions, completions and ACA blocking; plus the cached hash of `Nexus` and the range lock's fast path."""

import asyncio
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from target.scsi.command import Nexus, TaskAttr
from target.scsi.sbc.range_lock import RangeLock
from target.scsi.task_set import TaskSet, TaskState

N1 = Nexus("iqn.1994-05.com.example:a", 1, "iqn.2026-11.org.example:t", 1)


def reference_enabled(tasks: list[tuple[int, TaskAttr]], enabled: set[int], blocked: bool) -> set[int]:
    """The original full scan: every dormant task the ordering rules allow becomes enabled (monotonic)."""
    out = set(enabled)
    hoq_pending = any(a is TaskAttr.HEAD_OF_QUEUE for _, a in tasks)
    older_incomplete = older_ordered = False
    for tag, attr in tasks:
        if tag not in out:
            if attr in (TaskAttr.HEAD_OF_QUEUE, TaskAttr.ACA):
                ok = True
            elif blocked:
                ok = False
            elif attr is TaskAttr.ORDERED:
                ok = not older_incomplete and not hoq_pending
            else:
                ok = not older_ordered and not hoq_pending
            if ok:
                out.add(tag)
        if attr is TaskAttr.ORDERED:
            older_ordered = True
        older_incomplete = True
    return out


ATTRS = st.sampled_from(
    [TaskAttr.SIMPLE, TaskAttr.SIMPLE, TaskAttr.ORDERED, TaskAttr.HEAD_OF_QUEUE, TaskAttr.ACA]
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), ATTRS),
        st.tuples(st.just("complete"), st.integers(0, 40)),
        st.tuples(st.just("block"), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_counters_enable_what_the_full_scan_enables(ops: list[tuple[str, object]]) -> None:
    ts = TaskSet()
    model: list[tuple[int, TaskAttr]] = []
    enabled: set[int] = set()
    blocked = False
    tag = 0
    for op, arg in ops:
        if op == "admit":
            assert isinstance(arg, TaskAttr)
            ts.admit(N1, tag, arg)
            model.append((tag, arg))
            tag += 1
        elif op == "complete" and model:
            assert isinstance(arg, int)
            victim, _ = model.pop(arg % len(model))
            task = ts.find(N1, victim)
            assert task is not None
            ts._complete(task)
            enabled.discard(victim)
            assert ts.find(N1, victim) is None
        elif op == "block":
            blocked = bool(arg)
            ts.blocked = blocked
        enabled = reference_enabled(model, enabled, blocked)
        got = {t.tag for t in ts.tasks() if t.state is TaskState.ENABLED}
        assert got == enabled
        assert [t.tag for t in ts.tasks()] == [t for t, _ in model]
        assert ts._dormant == len(model) - len(enabled)


def test_events_are_created_on_demand_and_reflect_the_state() -> None:
    async def scenario() -> None:
        ts = TaskSet()
        first = ts.admit(N1, 1, TaskAttr.ORDERED)
        second = ts.admit(N1, 2, TaskAttr.SIMPLE)
        assert first._enabled is None and first.enabled.is_set()  # enabled at admission, event made late
        assert second.state is TaskState.DORMANT and not second.enabled.is_set()
        waiter = asyncio.ensure_future(second.enabled.wait())
        ts._complete(first)
        await asyncio.wait_for(waiter, 1)
        assert first.finished.is_set() and second.state is TaskState.ENABLED
        done = ts.admit(N1, 3, TaskAttr.SIMPLE)
        ts._complete(done)
        assert done._finished is None and done.finished.is_set()

    asyncio.run(scenario())


def test_nexus_hash_is_cached_and_equality_is_by_value() -> None:
    same = Nexus("iqn.1994-05.com.example:a", 1, "iqn.2026-11.org.example:t", 1)
    other = dataclasses.replace(N1, isid=2)
    assert same is not N1 and same == N1 and hash(same) == hash(N1)
    assert other != N1 and hash(other) == hash(Nexus(N1.initiator_name, 2, N1.target_name, 1))
    assert {N1: "x"}[same] == "x"
    assert N1 != ("iqn.1994-05.com.example:a", 1, "iqn.2026-11.org.example:t", 1, 1)
    assert "_hash" not in repr(N1)


def test_range_lock_serialises_overlaps_only_and_releases_on_cancel() -> None:
    async def scenario() -> list[str]:
        lock = RangeLock()
        order: list[str] = []
        first_in = asyncio.Event()
        release = asyncio.Event()

        async def holder(name: str, start: int, count: int, signal: asyncio.Event | None = None) -> None:
            async with lock.hold(start, count):
                order.append(name)
                if signal is not None:
                    signal.set()
                    await release.wait()

        a = asyncio.ensure_future(holder("a", 0, 8, first_in))
        await first_in.wait()
        b = asyncio.ensure_future(holder("b", 4, 8))  # overlaps a: waits
        c = asyncio.ensure_future(holder("c", 8, 8))  # overlaps b (queued), waits for b
        d = asyncio.ensure_future(holder("d", 100, 1))  # disjoint: runs at once
        await asyncio.wait_for(d, 1)
        assert order == ["a", "d"] and lock.held == 3
        b.cancel()  # a cancelled waiter leaves and releases its successors
        await asyncio.gather(b, return_exceptions=True)
        await asyncio.wait_for(c, 1)
        assert order == ["a", "d", "c"]
        release.set()
        await asyncio.wait_for(a, 1)
        async with lock.hold(0, 0):  # zero count: nothing held
            assert lock.held == 0
        return order

    assert asyncio.run(scenario()) == ["a", "d", "c"]
