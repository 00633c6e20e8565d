"""Shared pieces of the SBC-3 handlers: the LU's block limits, LBA range checks, medium I/O with the right sense.

The logical unit (`target.scsi.device.LogicalUnit`, owned by the scsi-core team) is read through the small
accessors here, so every SBC handler and the Block Limits VPD page (`block_limits(lu)`) agree on one set of
numbers derived from the LIO-style attributes (SBC-3 6.5.3).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from target.backstore.base import Backstore, BackstoreError
from target.scsi.command import ScsiResult
from target.scsi.sbc.range_lock import RangeLock
from target.scsi.sense import Asc, CheckCondition, SenseKey

#: bytes one READ/WRITE may move (LIO fileio's FD_MAX_BYTES); bounds memory per command
MAX_TRANSFER_BYTES = 8 * 1024 * 1024
#: COMPARE AND WRITE: NUMBER OF LOGICAL BLOCKS is one byte (SBC-3 5.2)
DEFAULT_MAX_COMPARE_AND_WRITE = 255
DEFAULT_MAX_WRITE_SAME_LEN = 0xFFFF
DEFAULT_MAX_UNMAP_LBA_COUNT = 0x400000
DEFAULT_MAX_UNMAP_BLOCK_DESC_COUNT = 64
#: chunk size for WRITE SAME / VERIFY / XCOPY loops (keeps memory per command bounded)
CHUNK_BYTES = 1024 * 1024


# --- reading the LogicalUnit ----------------------------------------------------------------------------------


def backstore(lu: Any) -> Backstore:
    bs: Backstore = lu.backstore
    return bs


def block_size(lu: Any) -> int:
    return int(getattr(lu, "block_size", 0) or backstore(lu).block_size)


def num_blocks(lu: Any) -> int:
    """Capacity in logical blocks (follows a resized backstore)."""
    n = getattr(lu, "num_blocks", None)
    if isinstance(n, int):
        return n
    return backstore(lu).size // block_size(lu)


def attr(lu: Any, name: str, default: int) -> int:
    """A LIO-style device attribute (emulate_tpu, max_unmap_lba_count, ...) as an int."""
    attrs = getattr(lu, "attributes", None)
    if isinstance(attrs, dict) and name in attrs:
        try:
            return int(attrs[name])
        except (TypeError, ValueError):
            return default
    value = getattr(lu, name, None)
    if isinstance(value, bool | int):
        return int(value)
    return default


def write_cache_enabled(lu: Any) -> bool:
    """WCE of the caching mode page (SBC-3 6.4.5); defaults to the backstore's write-back setting."""
    for name in ("wce", "write_cache_enabled", "write_cache"):
        value = getattr(lu, name, None)
        if isinstance(value, bool):
            return value
    return backstore(lu).write_back


def thin_provisioned(lu: Any) -> bool:
    """LBPME (SBC-3 4.7.3): UNMAP or WRITE SAME with UNMAP is enabled and the backstore can deallocate."""
    bs = backstore(lu)
    return bs.can_unmap and bool(
        attr(lu, "emulate_tpu", int(bs.can_unmap)) or attr(lu, "emulate_tpws", int(bs.can_unmap))
    )


def lbprz(lu: Any) -> bool:
    """LBPRZ: unmapped blocks read back as zeros (the backstore guarantees it and unmap_zeroes_data allows it)."""
    bs = backstore(lu)
    return (
        thin_provisioned(lu) and bs.unmap_zeroes and bool(attr(lu, "unmap_zeroes_data", int(bs.unmap_zeroes)))
    )


def check_dpofua(lu: Any, cdb: bytes) -> None:
    """DPO / FUA in byte 1 are only accepted when the LU advertises them (MODE SENSE DPOFUA; LIO's
    emulate_dpo / emulate_fua_write attributes), else INVALID FIELD IN CDB. 6-byte CDBs have no such bits."""
    if len(cdb) <= 6:
        return
    if cdb[1] & 0x10 and not attr(lu, "emulate_dpo", 1):
        raise CheckCondition.invalid_cdb(1, 4)
    if cdb[1] & 0x08 and not attr(lu, "emulate_fua_write", 1):
        raise CheckCondition.invalid_cdb(1, 3)


def physical_block_exponent(lu: Any) -> int:
    """LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (READ CAPACITY(16), SBC-3 5.16.2)."""
    pbs = attr(lu, "physical_block_size", 0)
    bs = block_size(lu)
    if pbs <= bs or pbs % bs:
        return 0
    return max(0, (pbs // bs).bit_length() - 1)


@dataclass(frozen=True)
class BlockLimits:
    """Values of the Block Limits VPD page (SBC-3 6.5.3), in logical blocks; 0 = no limit reported."""

    max_compare_and_write: int
    optimal_transfer_granularity: int
    max_transfer_length: int
    optimal_transfer_length: int
    max_unmap_lba_count: int
    max_unmap_block_descriptor_count: int
    optimal_unmap_granularity: int
    unmap_granularity_alignment: int
    ugavalid: bool
    max_write_same_length: int
    wsnz: bool = False

    def encode_vpd_b0(self) -> bytes:
        """The whole Block Limits VPD page (page length 3Ch) for INQUIRY EVPD=1 page B0h."""
        page = bytearray(64)
        page[1] = 0xB0
        page[2:4] = (0x3C).to_bytes(2, "big")
        page[4] = 0x01 if self.wsnz else 0x00
        page[5] = self.max_compare_and_write & 0xFF
        page[6:8] = self.optimal_transfer_granularity.to_bytes(2, "big")
        page[8:12] = self.max_transfer_length.to_bytes(4, "big")
        page[12:16] = self.optimal_transfer_length.to_bytes(4, "big")
        page[20:24] = self.max_unmap_lba_count.to_bytes(4, "big")
        page[24:28] = self.max_unmap_block_descriptor_count.to_bytes(4, "big")
        page[28:32] = self.optimal_unmap_granularity.to_bytes(4, "big")
        if self.ugavalid:
            page[32:36] = (0x80000000 | (self.unmap_granularity_alignment & 0x7FFFFFFF)).to_bytes(4, "big")
        page[36:44] = self.max_write_same_length.to_bytes(8, "big")
        return bytes(page)


def block_limits(lu: Any) -> BlockLimits:
    """The limits every SBC handler enforces, for the Block Limits VPD page to report (one source of truth)."""
    bs = block_size(lu)
    tp = thin_provisioned(lu)
    caw = attr(lu, "emulate_caw", 1)
    max_xfer = attr(lu, "hw_max_sectors", MAX_TRANSFER_BYTES // bs)
    max_xfer = max(1, min(max_xfer, MAX_TRANSFER_BYTES // bs))
    return BlockLimits(
        max_compare_and_write=min(attr(lu, "max_compare_and_write_len", DEFAULT_MAX_COMPARE_AND_WRITE), 255)
        if caw
        else 0,
        optimal_transfer_granularity=max(1, 1 << physical_block_exponent(lu)),
        max_transfer_length=max_xfer,
        optimal_transfer_length=attr(lu, "optimal_sectors", max_xfer),
        max_unmap_lba_count=attr(lu, "max_unmap_lba_count", DEFAULT_MAX_UNMAP_LBA_COUNT) if tp else 0,
        max_unmap_block_descriptor_count=attr(
            lu, "max_unmap_block_desc_count", DEFAULT_MAX_UNMAP_BLOCK_DESC_COUNT
        )
        if tp
        else 0,
        optimal_unmap_granularity=attr(lu, "unmap_granularity", 1) if tp else 0,
        unmap_granularity_alignment=attr(lu, "unmap_granularity_alignment", 0),
        ugavalid=tp and bool(attr(lu, "unmap_granularity_alignment", 0)),
        max_write_same_length=attr(lu, "max_write_same_len", DEFAULT_MAX_WRITE_SAME_LEN),
    )


# --- the LBA range lock ------------------------------------------------------------------------------------

_LOCKS: weakref.WeakKeyDictionary[Backstore, RangeLock] = weakref.WeakKeyDictionary()


def range_lock(lu: Any) -> RangeLock:
    """The LBA range lock of the LU's medium: every write path holds it over the blocks it changes, so COMPARE
    AND WRITE's read-compare-write is atomic against every other write (SBC-3 5.2)."""
    bs = backstore(lu)
    lock = _LOCKS.get(bs)
    if lock is None:
        lock = _LOCKS[bs] = RangeLock()
    return lock


# --- CDB fields -------------------------------------------------------------------------------------------


def check_lba_range(lu: Any, lba: int, nblocks: int) -> None:
    """LOGICAL BLOCK ADDRESS OUT OF RANGE (SBC-3 4.5) when [lba, lba+nblocks) leaves the medium.

    Like LIO (sbc_parse_cdb), a zero-length command at LBA == capacity is accepted; beyond it is not.
    The INFORMATION field carries the offending LBA where it fits.
    """
    if lba + nblocks > num_blocks(lu):
        raise CheckCondition(
            SenseKey.ILLEGAL_REQUEST,
            Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE,
            information=lba if lba < 2**64 else None,
        )


def check_transfer_length(lu: Any, nblocks: int, byte: int) -> None:
    """Refuse a transfer larger than the Block Limits MAXIMUM TRANSFER LENGTH (SBC-3 6.5.3)."""
    if nblocks > block_limits(lu).max_transfer_length:
        raise CheckCondition.invalid_cdb(byte)


def set_residual(result: ScsiResult, expected: int, needed: int) -> ScsiResult:
    """Record the Data-Out residual (SAM-5 5.4.3, RFC 7143 11.4.5.1): underflow when the initiator's EDTL is
    larger than what the command transfers, overflow when it is smaller."""
    if expected > needed:
        result.out_residual = expected - needed
    elif expected < needed:
        result.out_overflow = needed - expected
    return result


def residual_mismatch(expected: int, needed: int, *, descriptor: bool = False) -> ScsiResult:
    """ILLEGAL REQUEST / INVALID FIELD IN COMMAND INFORMATION UNIT, nothing written, the residual reported:
    the answer to Data-Out that does not end on a block boundary."""
    cc = CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT)
    return set_residual(cc.result(descriptor=descriptor), expected, needed)


def write_window(edtl: int, received: int, needed: int, bs: int) -> int | None:
    """How many bytes of a write's Data-Out the command may use when EDTL and the CDB's transfer length
    disagree: all it needs when the initiator sent more (underflow; the excess is ignored), only the whole
    blocks it sent when it sent less (overflow: the rest of the range is left untouched, as libiscsi's
    residual tests and Linux expect). None when what was sent ends inside a block (no sensible write)."""
    usable = min(edtl, received)
    if usable >= needed:
        return needed
    return usable if usable % bs == 0 else None


# --- medium I/O with the standard's sense on failure ---------------------------------------------------------


async def medium_read(lu: Any, lba: int, nblocks: int) -> bytes | bytearray | memoryview:
    bs = block_size(lu)
    try:
        return await backstore(lu).read(lba * bs, nblocks * bs)
    except BackstoreError as exc:
        raise CheckCondition(
            SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, information=lba, message=str(exc)
        ) from exc


async def medium_write(lu: Any, lba: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
    """Write whole blocks; FUA (or a disabled write cache) makes the data durable before completion."""
    bs = block_size(lu)
    try:
        await backstore(lu).write(lba * bs, data, fua=fua or not write_cache_enabled(lu))
    except BackstoreError as exc:
        raise CheckCondition(
            SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, information=lba, message=str(exc)
        ) from exc


async def medium_unmap(lu: Any, lba: int, nblocks: int) -> None:
    bs = block_size(lu)
    try:
        await backstore(lu).unmap(lba * bs, nblocks * bs)
    except BackstoreError as exc:
        raise CheckCondition(
            SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, information=lba, message=str(exc)
        ) from exc


async def medium_flush(lu: Any) -> None:
    try:
        await backstore(lu).flush()
    except BackstoreError as exc:
        raise CheckCondition(SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, message=str(exc)) from exc


def first_difference(a: bytes | bytearray | memoryview, b: bytes | bytearray | memoryview) -> int:
    """Offset of the first differing byte of two equal-length buffers, or -1 when they are equal."""
    if a == b:
        return -1
    ma, mb = memoryview(a).cast("B"), memoryview(b).cast("B")
    # binary search over slice equality keeps this fast for large buffers
    lo, hi = 0, min(len(ma), len(mb))
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if ma[lo:mid] != mb[lo:mid]:
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if ma[i] != mb[i]:
            return i
    return min(len(ma), len(mb))


def miscompare(offset: int) -> CheckCondition:
    """MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION, INFORMATION = byte offset of the first miscompare
    (SBC-3 5.2 COMPARE AND WRITE, 5.33 VERIFY)."""
    return CheckCondition(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY_OPERATION, information=offset)
