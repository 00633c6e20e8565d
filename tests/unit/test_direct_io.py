"""The direct READ/WRITE path (target.scsi.sbc.direct, Connection._direct_command): whatever it answers, the
general path answers the same, and whenever it steps aside it has changed nothing.

- SCSI level (hypothesis): random READ/WRITE-like CDBs, lengths and LU states; a direct answer must equal the
  general path's on a twin LU (GOOD, same data, same medium afterwards); None must leave the LU untouched.
- States under which the general path would wait (an ORDERED task, a held LBA range) or the ALUA state is not
  active: the direct path steps aside.
- Wire level: the same command sequence against an in-process target with the direct path on and off gives
  the same replies (status, sense, data, residuals, StatSN/ExpCmdSN/MaxCmdSN steps), and the direct path did
  take most of the plain commands.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig
from target.iscsi.sequence import CmdSnWindow
from target.scsi.command import LunAccess, ScsiRequest, ScsiStatus, TaskAttr
from target.scsi.device import LogicalUnit, LuRegistry
from target.scsi.dispatch import Dispatcher
from target.scsi.sbc import common, direct
from target.scsi.sense import Asc
from target.server import TargetServer
from tests.support.loopback_target import free_port, login, running, simple_config
from tests.support.scsi_harness import N1, N2

BS = 512
BLOCKS = 256
PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(BLOCKS * BS))


@dataclass(frozen=True)
class LuState:
    registered: bool = True
    ua_pending: bool = False
    spc2_holder: int = 0  # 0 none, 1 N1 (the issuer), 2 N2
    tag_in_use: bool = False
    lu_read_only: bool = False
    lun_read_only: bool = False
    write_cache: bool = True


def build(state: LuState) -> tuple[Dispatcher, dict[int, LunAccess], LogicalUnit]:
    cfg = StorageObjectConfig(plugin="ramdisk", name="d0", size=BLOCKS * BS, readonly=state.lu_read_only)
    bs = RamdiskBackstore(BLOCKS * BS, page_size=4096)
    assert bs.write_nowait(0, PATTERN)
    lu = LogicalUnit(bs, cfg)
    lu.write_cache_enabled = state.write_cache
    if state.registered:
        lu.nexus_created(N1)
    lu.nexus_created(N2)
    if state.ua_pending:
        lu.ua.establish(Asc.CAPACITY_DATA_HAS_CHANGED, only=[N1])
    if state.spc2_holder:
        lu.reservations.spc2_holder = N1 if state.spc2_holder == 1 else N2
    if state.tag_in_use:
        lu.task_set.admit(N1, 7, TaskAttr.SIMPLE)
    reg = LuRegistry()
    reg.add(lu)
    return Dispatcher(reg), {0: LunAccess(lu, read_only=state.lun_read_only)}, lu


def medium(lu: LogicalUnit) -> bytes:
    data = lu.backstore.read_nowait(0, BLOCKS * BS)
    assert data is not None
    return bytes(data)


def snapshot(lu: LogicalUnit) -> tuple[Any, ...]:
    return (medium(lu), lu.ua.pending(N1), lu.ua.pending(N2), len(lu.task_set), lu.aca.faulted)


def make_cdb(op: int, lba: int, blocks: int, byte1: int, control: int) -> bytes:
    if op in (0x28, 0x2A, 0x2F):
        raw = (
            bytes([op, byte1]) + lba.to_bytes(4, "big") + b"\0" + blocks.to_bytes(2, "big") + bytes([control])
        )
    elif op in (0x88, 0x8A):
        raw = bytes([op, byte1]) + lba.to_bytes(8, "big") + blocks.to_bytes(4, "big") + bytes([0, control])
    else:  # READ(6) / WRITE(6) / TEST UNIT READY: never direct
        raw = bytes([op, (lba >> 16) & 0x1F, (lba >> 8) & 0xFF, lba & 0xFF, blocks & 0xFF, control])
    return raw.ljust(16, b"\0")


states = st.builds(
    LuState,
    registered=st.booleans(),
    ua_pending=st.booleans(),
    spc2_holder=st.sampled_from([0, 0, 1, 2]),
    tag_in_use=st.booleans(),
    lu_read_only=st.booleans(),
    lun_read_only=st.booleans(),
    write_cache=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    state=states,
    op=st.sampled_from([0x28, 0x2A, 0x88, 0x8A, 0x28, 0x2A, 0x08, 0x0A, 0x2F, 0x00]),
    lba=st.integers(0, BLOCKS + 4),
    blocks=st.integers(0, 40),
    byte1=st.sampled_from([0, 0, 0, 0x08, 0x10, 0x02, 0x20]),
    control=st.sampled_from([0, 0, 0, 0x04]),
    edtl_delta=st.sampled_from([0, 0, 0, -BS, BS, -1]),
    as_write=st.booleans(),
    tag=st.sampled_from([7, 8]),
)
def test_a_direct_answer_is_the_general_answer_and_stepping_aside_changes_nothing(
    state: LuState,
    op: int,
    lba: int,
    blocks: int,
    byte1: int,
    control: int,
    edtl_delta: int,
    as_write: bool,
    tag: int,
) -> None:
    cdb = make_cdb(op, lba, blocks, byte1, control)
    edtl = max(0, blocks * BS + edtl_delta)
    data = bytes((i * 13 + lba) & 0xFF for i in range(edtl)) if as_write else None
    disp, lun_map, lu = build(state)
    before = snapshot(lu)
    out = disp.execute_direct(N1, lun_map[0], cdb, tag, edtl, data)
    if out is None:
        assert snapshot(lu) == before
        return
    # only plain READ/WRITE(10/16) of exactly EDTL, with the data for a write, are ever answered directly
    assert op in (0x28, 0x2A, 0x88, 0x8A) and byte1 == 0 and control == 0 and edtl == blocks * BS > 0
    assert (op in (0x2A, 0x8A)) == as_write == (out is True)
    disp2, lun_map2, lu2 = build(state)
    request = ScsiRequest(
        nexus=N1,
        lun=0,
        cdb=cdb,
        tag=tag,
        data_out=data or b"",
        expected_in_length=0 if as_write else edtl,
        expected_out_length=edtl if as_write else 0,
        lun_map=lun_map2,
    )
    general = asyncio.run(disp2.execute(request))
    assert general.status is ScsiStatus.GOOD and not general.sense
    if not as_write:
        assert isinstance(out, (bytes, bytearray)) and bytes(general.data_in) == bytes(out)
    assert snapshot(lu) == snapshot(lu2)


def test_plain_commands_on_a_quiet_lu_are_direct() -> None:
    disp, lun_map, lu = build(LuState())
    read = make_cdb(0x28, 8, 8, 0, 0)
    assert disp.execute_direct(N1, lun_map[0], read, 1, 8 * BS, None) == PATTERN[8 * BS : 16 * BS]
    write = make_cdb(0x8A, 16, 2, 0, 0)
    assert disp.execute_direct(N1, lun_map[0], write, 2, 2 * BS, b"\xab" * 2 * BS) is True
    assert medium(lu)[16 * BS : 18 * BS] == b"\xab" * 2 * BS


def test_steps_aside_where_the_general_path_would_wait_or_refuse() -> None:
    read = make_cdb(0x28, 0, 8, 0, 0)
    write = make_cdb(0x2A, 0, 8, 0, 0)

    def direct_now(lu_setup: Any, cdb: bytes = read, data: bytes | None = None) -> object:
        disp, lun_map, lu = build(LuState())
        lu_setup(lu)
        before = snapshot(lu)
        out = disp.execute_direct(N1, lun_map[0], cdb, 1, 8 * BS, data)
        assert snapshot(lu) == before
        return out

    # an ORDERED or HEAD OF QUEUE task in the set, or a blocked (ACA) task set: ordering rules apply
    assert direct_now(lambda lu: lu.task_set.admit(N2, 5, TaskAttr.ORDERED)) is None
    assert direct_now(lambda lu: lu.task_set.admit(N2, 5, TaskAttr.HEAD_OF_QUEUE)) is None
    assert direct_now(lambda lu: setattr(lu.task_set, "blocked", True)) is None
    # a SIMPLE task of another nexus does not matter
    assert direct_now(lambda lu: lu.task_set.admit(N2, 5, TaskAttr.SIMPLE)) is not None
    # a persistent reservation: only its holder goes direct

    class Pr:
        lost = False

        def __init__(self, holder: bool) -> None:
            self.holder = holder

        def reservation_type(self) -> int:
            return 1

        def is_holder(self, nexus: object) -> bool:
            return self.holder

    assert direct_now(lambda lu: setattr(lu.reservations, "pr", Pr(False))) is None
    assert direct_now(lambda lu: setattr(lu.reservations, "pr", Pr(True))) is not None
    # a held LBA range (a write in the pool, COMPARE AND WRITE): writes wait for it in the general path
    held = common.range_lock

    def hold(lu: LogicalUnit) -> None:
        lock = held(lu)
        lock._entries.append(object())  # type: ignore[arg-type]

    assert direct_now(hold, write, b"\0" * 8 * BS) is None
    assert direct_now(hold) is not None  # reads do not take the range lock (as in the general path)

    # ALUA: only active/optimized (or non-optimized without the delay) goes direct
    class Group:
        media_commands = 0

    class Alua:
        def __init__(self, group: Group | None) -> None:
            self.group = group

        def direct_group(self, nexus: object) -> Group | None:
            return self.group

    g = Group()
    assert direct_now(lambda lu: setattr(lu, "alua", Alua(None))) is None
    assert direct_now(lambda lu: setattr(lu, "alua", Alua(g))) is not None
    assert g.media_commands == 1  # counted as the general path's gate counts media access


def test_alua_direct_group_follows_the_access_state() -> None:
    from target.scsi.alua.groups import TargetPortGroup
    from target.scsi.gates import AluaState

    class Stub:
        counts_media_only = False

        def __init__(self, g: TargetPortGroup) -> None:
            self.g = g

        def group_of(self, nexus: object) -> TargetPortGroup:
            return self.g

    from target.scsi.alua.groups import LuAlua

    for state, delay, expected in [
        (AluaState.ACTIVE_OPTIMIZED, 100, True),
        (AluaState.ACTIVE_NON_OPTIMIZED, 0, True),
        (AluaState.ACTIVE_NON_OPTIMIZED, 100, False),
        (AluaState.STANDBY, 0, False),
        (AluaState.UNAVAILABLE, 0, False),
        (AluaState.TRANSITIONING, 0, False),
        (AluaState.LBA_DEPENDENT, 0, False),
    ]:
        g = TargetPortGroup(name="g", id=1, state=state, nonop_delay_ms=delay)
        stub = Stub(g)
        got = LuAlua.direct_group(stub, N1)  # type: ignore[arg-type]
        assert (got is g) == expected, state


def test_cmdsn_pass_through_advances_both_ends() -> None:
    w: CmdSnWindow[object] = CmdSnWindow(10, depth=4)
    w.pass_through(10)
    assert (w.exp_cmdsn, w.max_cmdsn, w.in_flight) == (11, 14, 0)
    w.submit(12, False, "held")
    with pytest.raises(ValueError):
        w.pass_through(11)  # something is held: the general path must deliver it
    w2: CmdSnWindow[object] = CmdSnWindow(0xFFFFFFFF, depth=2)
    w2.pass_through(0xFFFFFFFF)
    assert (w2.exp_cmdsn, w2.max_cmdsn) == (0, 1)


# --------------------------------------------------------------------------- wire level


def _commands(rng: random.Random) -> list[tuple[str, Any]]:
    """A mixed sequence: mostly plain reads and writes, some with flags, residuals, out-of-range LBAs, large
    reads (several Data-In), other commands, and LUN resets (unit attentions) in between."""
    blocks_total = (8 * 1024 * 1024) // BS
    out: list[tuple[str, Any]] = []
    for _ in range(160):
        kind = rng.random()
        op = rng.choice([0x28, 0x2A, 0x88, 0x8A])
        n = rng.choice([1, 8, 8, 8, 64, 600])
        lba = rng.choice([rng.randrange(0, 4096), blocks_total - 4, blocks_total + 2])
        byte1 = 0 if rng.random() < 0.85 else rng.choice([0x08, 0x10, 0x04])
        cdb = make_cdb(op, lba, n, byte1, 0)
        edtl = n * BS if rng.random() < 0.9 else n * BS - BS
        if kind < 0.03:
            out.append(("reset", None))
        elif kind < 0.06:
            out.append(("cdb", (b"\x00".ljust(16, b"\0"), 0, b"")))  # TEST UNIT READY
        elif op in (0x2A, 0x8A):
            out.append(("cdb", (cdb, 0, bytes(rng.getrandbits(8) for _ in range(edtl)))))
        else:
            out.append(("cdb", (cdb, edtl, b"")))
    return out


def _run_sequence(
    monkeypatch: pytest.MonkeyPatch, enabled: bool, digests: bool
) -> tuple[list[tuple[Any, ...]], int]:
    taken = 0
    real = direct.execute

    def spy(*args: Any, **kw: Any) -> Any:
        nonlocal taken
        result = real(*args, **kw)
        taken += result is not None
        return result

    monkeypatch.setattr(direct, "execute", spy)
    if not enabled:
        monkeypatch.setattr(TargetServer, "_direct_io", lambda self, link: None)
    replies: list[tuple[Any, ...]] = []

    async def main() -> None:
        port = free_port()
        async with running(simple_config(port)):
            keys = {"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"} if digests else None
            ini = await login("127.0.0.1", port, keys=keys)
            assert ini.header_digest == ini.data_digest == digests
            base_statsn = None
            base_cmdsn = ini.cmdsn
            for kind, arg in _commands(random.Random(20261124)):
                if kind == "reset":
                    replies.append(("tmf", await ini.tmf(5)))  # LOGICAL UNIT RESET
                    continue
                cdb, read_len, data = arg
                r = await ini.scsi(cdb, read_length=read_len, write_data=data)
                heads = [
                    (d.datasn, d.buffer_offset, len(d.data), d.final, d.status_present, d.residual)
                    for d in r.datains
                ]
                last = r.datains[-1] if r.datains and r.datains[-1].status_present else None
                statsn = ini.exp_statsn
                if base_statsn is None:
                    base_statsn = statsn
                replies.append(
                    (
                        r.status,
                        r.sense,
                        r.data,
                        r.residual,
                        r.overflow,
                        r.underflow,
                        len(r.r2ts),
                        heads,
                        statsn - base_statsn,
                        (last.exp_cmdsn - base_cmdsn, last.max_cmdsn - base_cmdsn) if last else None,
                    )
                )
            await ini.logout()
            await ini.close()

    asyncio.run(main())
    monkeypatch.undo()
    return replies, taken


@pytest.mark.parametrize("digests", [False, True], ids=["no-digests", "crc32c-digests"])
def test_the_wire_is_the_same_with_and_without_the_direct_path(
    monkeypatch: pytest.MonkeyPatch, digests: bool
) -> None:
    # (the test initiator checks every header and data digest it receives)
    with_direct, taken = _run_sequence(monkeypatch, True, digests)
    without, taken_off = _run_sequence(monkeypatch, False, digests)
    assert taken_off == 0
    assert len(with_direct) == len(without) == 160
    for i, (a, b) in enumerate(zip(with_direct, without, strict=True)):
        assert a == b, f"command {i}: direct {a[:2]} vs general {b[:2]}"
    # most plain commands went direct, and the rest (flags, residuals, beyond the end, large reads, the
    # commands after a reset) did not
    statuses = [r[0] for r in with_direct if r[0] != "tmf"]
    assert 30 <= taken < len(statuses)
    assert any(s == ScsiStatus.CHECK_CONDITION for s in statuses)


def test_a_refused_command_is_offered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused on arrival (here: a unit attention is pending), the command goes the general way without a second
    offer when it is due; the next one is direct again."""
    offers: list[bool] = []
    real = direct.execute

    def spy(*args: Any, **kw: Any) -> Any:
        result = real(*args, **kw)
        offers.append(result is not None)
        return result

    monkeypatch.setattr(direct, "execute", spy)

    async def main() -> None:
        port = free_port()
        async with running(simple_config(port)):
            ini = await login("127.0.0.1", port)
            assert await ini.tmf(5) == 0  # LOGICAL UNIT RESET: 29h pending for this nexus
            offers.clear()
            first = await ini.read(0, 8)
            assert first.status == ScsiStatus.CHECK_CONDITION and first.sense[12] == 0x29
            assert offers == [False]
            second = await ini.read(0, 8)
            assert second.status == ScsiStatus.GOOD and offers == [False, True]
            await ini.logout()
            await ini.close()

    asyncio.run(main())
