"""CmdSN window: RFC 1982 serial arithmetic, ordering, holding, dropping, MaxCmdSN advance."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from target.iscsi.sequence import Admission, CmdSnWindow, sn_add, sn_diff, sn_gt, sn_le, sn_lt


def test_serial_arithmetic_wraps() -> None:
    assert sn_lt(0xFFFFFFFF, 0)
    assert sn_gt(0, 0xFFFFFFFF)
    assert sn_add(0xFFFFFFFF, 2) == 1
    assert sn_diff(1, 0xFFFFFFFF) == 2
    assert sn_diff(0xFFFFFFFF, 1) == -2
    assert not sn_lt(5, 5) and sn_le(5, 5)
    assert not sn_lt(0, 0x80000000) and not sn_gt(0, 0x80000000)  # undefined pair: neither


@given(st.integers(0, 2**32 - 1), st.integers(1, 2**31 - 1))
def test_serial_order_property(a: int, n: int) -> None:
    b = sn_add(a, n)
    assert sn_lt(a, b) and sn_gt(b, a) and sn_diff(b, a) == n


def test_initial_window_and_depth() -> None:
    w: CmdSnWindow[str] = CmdSnWindow(10, depth=64)
    assert (w.exp_cmdsn, w.max_cmdsn) == (10, 73)


def test_in_order_delivery_and_max_advances_on_complete() -> None:
    w: CmdSnWindow[str] = CmdSnWindow(1, depth=2)
    assert w.submit(1, False, "a").deliver == ["a"]
    assert w.submit(2, False, "b").deliver == ["b"]
    assert w.submit(3, False, "c").admission is Admission.DROPPED  # window full: MaxCmdSN = 2
    w.complete()
    assert w.max_cmdsn == 3
    assert w.submit(3, False, "c").deliver == ["c"]


def test_out_of_order_held_until_gap_fills() -> None:
    w: CmdSnWindow[str] = CmdSnWindow(0xFFFFFFFE)
    assert w.submit(0, False, "c").admission is Admission.HELD
    assert w.submit(0xFFFFFFFF, False, "b").admission is Admission.HELD
    assert w.held_count == 2
    got = w.submit(0xFFFFFFFE, False, "a")
    assert got.admission is Admission.DELIVERED and got.deliver == ["a", "b", "c"]
    assert w.exp_cmdsn == 1


def test_duplicates_and_old_commands_dropped() -> None:
    w: CmdSnWindow[str] = CmdSnWindow(5)
    w.submit(5, False, "a")
    assert w.submit(5, False, "again").admission is Admission.DROPPED
    w.submit(7, False, "c")
    assert w.submit(7, False, "dup").admission is Admission.DROPPED
    assert w.submit(4, False, "old").admission is Admission.DROPPED


def test_immediate_delivered_without_advancing() -> None:
    w: CmdSnWindow[str] = CmdSnWindow(5)
    got = w.submit(5, True, "imm")
    assert got.deliver == ["imm"] and w.exp_cmdsn == 5 and w.in_flight == 0


def test_plug_fills_gap() -> None:
    w: CmdSnWindow[str] = CmdSnWindow(1)
    w.submit(2, False, "b")
    assert w.plug(1) == ["b"]
    assert w.exp_cmdsn == 3
    assert w.plug(1000) is None


@given(st.permutations(list(range(20))), st.integers(0, 2**32 - 1))
def test_any_arrival_order_delivers_in_cmdsn_order(order: list[int], base: int) -> None:
    w: CmdSnWindow[int] = CmdSnWindow(base, depth=64)
    out: list[int] = []
    for i in order:
        out += w.submit(sn_add(base, i), False, i).deliver
    assert out == list(range(20))
    assert w.held_count == 0 and w.in_flight == 20
