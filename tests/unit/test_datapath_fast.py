"""The fast data path (docs/performance.md): frozen-PDU init, page-cache I/O on the loop with its fallbacks,
and the hand-stepped (eager) command coroutines of the server."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any

import pytest

from target.backstore import fdio
from target.backstore.fileio import FileioBackstore
from target.pdu import pdus
from target.pdu.fastinit import fast_frozen_init
from target.server import _Resume

MiB = 1 << 20

PDU_CLASSES = [
    c
    for c in vars(pdus).values()
    if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == pdus.__name__
]


def _plain_twin(cls: type) -> type:
    """The same fields as a dataclass with the generated __init__ (what fast_frozen_init replaces)."""
    ns: dict[str, Any] = {"__annotations__": {f.name: object for f in dataclasses.fields(cls)}}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            ns[f.name] = dataclasses.field(default=f.default, init=f.init)
    return dataclasses.dataclass(frozen=True, slots=True)(type(cls.__name__, (), ns))


@pytest.mark.parametrize("cls", PDU_CLASSES, ids=lambda c: c.__name__)
def test_fast_init_matches_the_dataclass_init(cls: type) -> None:
    twin = _plain_twin(cls)
    fast = inspect.signature(cls)
    generated = inspect.signature(twin)
    assert [(p.name, p.default, p.kind) for p in fast.parameters.values()] == [
        (p.name, p.default, p.kind) for p in generated.parameters.values()
    ]
    required = {p.name: i + 1 for i, p in enumerate(fast.parameters.values()) if p.default is p.empty}
    a, b = cls(**required), twin(**required)
    assert [getattr(a, f.name) for f in dataclasses.fields(cls)] == [
        getattr(b, f.name) for f in dataclasses.fields(cls)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(a, dataclasses.fields(cls)[0].name, 5)
    assert a == cls(**required) and hash(a) == hash(cls(**required))


def test_fast_init_leaves_unsupported_classes_alone() -> None:
    @dataclasses.dataclass(frozen=True)  # no slots
    class NoSlots:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    for cls in (NoSlots, Factory):
        before = cls.__init__
        assert fast_frozen_init(cls).__init__ is before


# --------------------------------------------------------------------------- backstore fast paths


def _pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def test_read_falls_back_to_the_pool_for_what_the_page_cache_cannot_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(_pattern(MiB))
    bs = FileioBackstore(str(path), size=MiB)
    pooled: list[str] = []
    real_run = bs._run

    async def spy(fn: Any, *args: object) -> Any:
        pooled.append(fn.__name__)
        return await real_run(fn, *args)

    monkeypatch.setattr(bs, "_run", spy)
    try:
        # a partial answer from RWF_NOWAIT (e.g. a page not cached): the rest comes from the pool
        def partial(fd: int, buf: bytearray, offset: int) -> int:
            buf[:1000] = os.pread(fd, 1000, offset)
            return 1000

        monkeypatch.setattr(fdio, "pread_nowait", partial)
        assert asyncio.run(bs.read(4096, 64 * 1024)) == _pattern(MiB)[4096 : 4096 + 64 * 1024]
        assert pooled == ["pread_into"]
        # the flag is not supported: the pool for everything from then on
        monkeypatch.setattr(fdio, "pread_nowait", lambda fd, buf, offset: -1)
        assert asyncio.run(bs.read(0, 512)) == _pattern(512)
        assert pooled[-1] == "pread_full" and not bs._nowait_reads
    finally:
        bs.close()


def test_page_cache_read_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(_pattern(MiB))
    bs = FileioBackstore(str(path), size=MiB)
    try:
        buf = bytearray(8192)
        got = fdio.pread_nowait(bs.fd, buf, 512)
        if got < 0:
            pytest.skip("RWF_NOWAIT not supported here")
        assert bytes(buf[:got]) == _pattern(MiB)[512 : 512 + got]
    finally:
        bs.close()


def test_slow_write_on_the_loop_sends_the_next_writes_to_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "disk.img"
    bs = FileioBackstore(str(path), size=MiB)
    pooled: list[str] = []
    real_run = bs._run

    async def spy(fn: Any, *args: object) -> Any:
        pooled.append(fn.__name__)
        return await real_run(fn, *args)

    monkeypatch.setattr(bs, "_run", spy)
    try:
        asyncio.run(bs.write(0, b"a" * 4096))
        assert pooled == []  # buffered, small: on the loop
        monkeypatch.setattr(fdio, "SLOW_WRITE_S", -1.0)  # every write counts as slow
        asyncio.run(bs.write(4096, b"b" * 4096))
        assert pooled == []  # this one still ran on the loop ...
        asyncio.run(bs.write(8192, b"c" * 4096))
        assert pooled == ["pwrite_full"]  # ... the next went to the pool (back-off)
        asyncio.run(bs.write(0, b"d" * 512, fua=True))  # FUA: always the pool
        assert pooled == ["pwrite_full", "pwrite_full"]
        assert asyncio.run(bs.read(0, 12288)) == b"d" * 512 + b"a" * 3584 + b"b" * 4096 + b"c" * 4096
    finally:
        bs.close()


def test_nowait_verbs_do_only_what_cannot_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_nowait / write_nowait (the direct READ/WRITE path): page-cache reads and buffered writes at once,
    None / False for anything the general verbs must do (FUA, write-through, back-off, out of range)."""
    path = tmp_path / "disk.img"
    path.write_bytes(_pattern(MiB))
    bs = FileioBackstore(str(path), size=MiB)
    through = FileioBackstore(str(path), size=MiB, write_back=False)
    ro = FileioBackstore(str(path), size=MiB, read_only=True)
    try:
        got = bs.read_nowait(4096, 8192)
        if got is None:
            pytest.skip("RWF_NOWAIT not supported here")
        assert bytes(got) == _pattern(MiB)[4096 : 4096 + 8192]
        assert bs.read_nowait(MiB - 512, 1024) is None  # beyond the end: `read` raises the error
        assert bs.write_nowait(0, b"x" * 4096) is True
        assert bytes(bs.read_nowait(0, 4096) or b"") == b"x" * 4096
        assert bs.write_nowait(0, b"y" * 512, fua=True) is False  # durable: the pool
        assert through.write_nowait(0, b"y" * 512) is False  # write-through: the pool
        assert ro.write_nowait(0, b"y" * 512) is False  # `write` raises the error
        assert bs.write_nowait(0, b"y" * (fdio.SYNC_WRITE_MAX + 512)) is False
        assert bs.write_nowait(MiB - 512, b"y" * 1024) is False
        monkeypatch.setattr(fdio, "SLOW_WRITE_S", -1.0)  # every write counts as slow
        assert bs.write_nowait(512, b"z" * 512) is True  # done, but the next ones back off
        assert bs.write_nowait(1024, b"z" * 512) is False
        assert path.read_bytes()[:1536] == b"x" * 512 + b"z" * 512 + b"x" * 512
        # a file system without RWF_NOWAIT: None from then on
        monkeypatch.setattr(fdio, "pread_nowait", lambda fd, buf, offset: -1)
        assert bs.read_nowait(0, 512) is None and not bs._nowait_reads
    finally:
        for b in (bs, through, ro):
            b.close()


# --------------------------------------------------------------------------- eager coroutines


def test_resume_carries_on_a_hand_stepped_coroutine_and_forwards_cancellation() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def command() -> None:
            log.append("start")
            log.append(await gate)
            await asyncio.sleep(0)  # a bare yield
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                log.append("cancelled")
                raise

        coro = command()
        first = coro.send(None)  # what TargetServer._run_eager does
        assert log == ["start"]
        task = asyncio.ensure_future(_Resume(coro, first))
        await asyncio.sleep(0)
        gate.set_result("resumed")
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return log

    assert asyncio.run(main()) == ["start", "resumed", "cancelled"]
