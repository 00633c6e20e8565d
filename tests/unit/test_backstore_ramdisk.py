"""RAMDISK backstore: sparse pages, zero reads, UNMAP drops pages, GET LBA STATUS extents."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target.backstore.base import BackstoreError
from target.backstore.ramdisk import RamdiskBackstore


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_unwritten_reads_zero_and_allocates_nothing() -> None:
    rd = RamdiskBackstore(1 << 20, page_size=4096)
    assert run(rd.read(0, 1 << 20)) == bytes(1 << 20)
    assert rd.allocated_bytes == 0
    assert rd.can_unmap and rd.unmap_zeroes


def test_write_across_pages() -> None:
    rd = RamdiskBackstore(64 * 1024, page_size=4096)
    data = bytes(range(256)) * 40  # 10240 bytes spanning 4 pages
    run(rd.write(3584, data))
    assert run(rd.read(3584, len(data))) == data
    assert rd.allocated_bytes == 4 * 4096
    assert run(rd.read(0, 3584)) == bytes(3584)


def test_unmap_drops_whole_pages_and_zeroes_partial() -> None:
    rd = RamdiskBackstore(64 * 1024, page_size=4096)

    async def go() -> None:
        await rd.write(0, b"\xff" * 16384)
        await rd.unmap(2048, 8192)  # half of page 0, all of page 1, half of page 2
        assert await rd.read(0, 16384) == b"\xff" * 2048 + bytes(8192) + b"\xff" * 6144
        assert await rd.is_mapped(0, 16384) == [(0, 4096, True), (4096, 4096, False), (8192, 8192, True)]
        await rd.unmap(0, 4096)
        await rd.unmap(8192, 2048)
        await rd.unmap(10240, 2048)  # page 2 all zero now: dropped
        assert await rd.is_mapped(0, 16384) == [(0, 12288, False), (12288, 4096, True)]

    run(go())
    assert rd.allocated_bytes == 4096


def test_bounds_and_read_only() -> None:
    rd = RamdiskBackstore(8192)
    with pytest.raises(BackstoreError):
        run(rd.read(4096, 8192))
    with pytest.raises(BackstoreError):
        run(rd.write(-512, b"x" * 512))
    ro = RamdiskBackstore(8192, read_only=True)
    with pytest.raises(BackstoreError):
        run(ro.write(0, b"x" * 512))
    with pytest.raises(BackstoreError):
        RamdiskBackstore(1000)
    with pytest.raises(BackstoreError):
        RamdiskBackstore(8192, block_size=3)


def test_resize_shrink_then_grow_reads_zeros() -> None:
    rd = RamdiskBackstore(16384, page_size=4096)

    async def go() -> None:
        await rd.write(0, b"\x01" * 16384)
        await rd.resize(6144)
        assert rd.size == 6144
        await rd.resize(16384)
        assert await rd.read(0, 16384) == b"\x01" * 6144 + bytes(16384 - 6144)

    run(go())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["w", "u"]), st.integers(0, 63), st.integers(1, 16), st.integers(0, 255)),
        max_size=20,
    )
)
def test_matches_a_flat_model(ops: list[tuple[str, int, int, int]]) -> None:
    """Any sequence of writes and unmaps reads back like a flat bytearray (unmapped = zeros)."""
    bs = 512
    rd = RamdiskBackstore(64 * bs, page_size=2048)
    model = bytearray(64 * bs)

    async def go() -> None:
        for op, lba, n, val in ops:
            n = min(n, 64 - lba)
            if op == "w":
                await rd.write(lba * bs, bytes([val]) * (n * bs))
                model[lba * bs : (lba + n) * bs] = bytes([val]) * (n * bs)
            else:
                await rd.unmap(lba * bs, n * bs)
                model[lba * bs : (lba + n) * bs] = bytes(n * bs)
        assert await rd.read(0, len(model)) == model
        extents = await rd.is_mapped(0, len(model))
        assert sum(e[1] for e in extents) == len(model)
        for off, length, mapped in extents:
            if not mapped:
                assert model[off : off + length] == bytes(length)

    run(go())
