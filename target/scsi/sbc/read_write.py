"""READ / WRITE (6, 10, 12, 16), WRITE AND VERIFY (10, 12, 16) and VERIFY (10, 12, 16): SBC-3 5.8-5.12,
5.25-5.34.

Transfer length vs EDTL (SAM-5 5.4.3, RFC 7143 11.4.5.1): a read returns the blocks the CDB asks for and the
transport truncates to the EDTL and reports the residual. A write (or a VERIFY with data) whose EDTL differs from
its transfer length is refused as LIO does (ILLEGAL REQUEST / INVALID FIELD IN COMMAND INFORMATION UNIT, nothing
written) with the residual in the result. Transfer length 0 moves nothing and is GOOD, except READ(6)/WRITE(6)
where 0 means 256 blocks (SBC-3 5.10, 5.27).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult, ScsiStatus
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec, Direction, Handler
from target.scsi.sbc import common
from target.scsi.sense import CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext


class RwOpcode(enum.IntEnum):
    READ_6 = 0x08
    WRITE_6 = 0x0A
    READ_10 = 0x28
    WRITE_10 = 0x2A
    WRITE_AND_VERIFY_10 = 0x2E
    VERIFY_10 = 0x2F
    READ_16 = 0x88
    WRITE_16 = 0x8A
    WRITE_AND_VERIFY_16 = 0x8E
    VERIFY_16 = 0x8F
    READ_12 = 0xA8
    WRITE_12 = 0xAA
    WRITE_AND_VERIFY_12 = 0xAE
    VERIFY_12 = 0xAF


class Bytchk(enum.IntEnum):
    """BYTCHK field of VERIFY / WRITE AND VERIFY (SBC-3r36 5.33 table 100)."""

    NO_COMPARE = 0b00  # verify the medium only
    COMPARE = 0b01  # compare TRANSFER LENGTH blocks of Data-Out with the medium
    RESERVED = 0b10
    COMPARE_ONE = 0b11  # compare one block of Data-Out with every block in the range


@dataclass(frozen=True, slots=True)
class RwCdb:
    """The fields every READ/WRITE/VERIFY CDB has, wherever they sit."""

    lba: int
    nblocks: int
    dpo: bool
    fua: bool
    bytchk: int
    tl_byte: int  # CDB byte of the TRANSFER LENGTH (the field pointer for "too long")


def decode_rw(cdb: bytes | bytearray | memoryview) -> RwCdb:
    """Decode the LBA / TRANSFER LENGTH / flags of a 6-, 10-, 12- or 16-byte READ/WRITE/VERIFY CDB."""
    op = cdb[0]
    if op in (RwOpcode.READ_6, RwOpcode.WRITE_6):
        lba = int.from_bytes(cdb[1:4], "big") & 0x1FFFFF
        return RwCdb(lba, cdb[4] or 256, False, False, 0, 4)
    group = op >> 5
    byte1 = cdb[1]
    dpo, fua, bytchk = bool(byte1 & 0x10), bool(byte1 & 0x08), (byte1 >> 1) & 0x03
    if group == 1:  # 10-byte
        lba, nblocks, tl_byte = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big"), 7
    elif group == 5:  # 12-byte
        lba, nblocks, tl_byte = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[6:10], "big"), 6
    else:  # 16-byte
        lba, nblocks, tl_byte = int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big"), 10
    return RwCdb(lba, nblocks, dpo, fua, bytchk, tl_byte)


def data_out_length(ctx: CommandContext) -> int:
    """The EDTL of the write (what the initiator announced, falling back to what arrived)."""
    return ctx.request.expected_out_length or len(ctx.request.data_out)


def max_transfer_blocks(block_size: int, hw_max_sectors: int) -> int:
    """MAXIMUM TRANSFER LENGTH in blocks (SBC-3 6.5.3, `common.block_limits(lu).max_transfer_length`) from the
    block size and the LU's hw_max_sectors, without building the whole BlockLimits per command (the hot path)."""
    return max(1, min(hw_max_sectors, common.MAX_TRANSFER_BYTES // block_size))


def _check_transfer_length(lu: object, nblocks: int, byte: int) -> None:
    """`common.check_transfer_length` on the hot path (see `max_transfer_blocks`)."""
    if nblocks > 1:  # the limit is at least one block
        bs = common.block_size(lu)
        if nblocks > max_transfer_blocks(
            bs, common.attr(lu, "hw_max_sectors", common.MAX_TRANSFER_BYTES // bs)
        ):
            raise CheckCondition.invalid_cdb(byte)


# --- handlers ------------------------------------------------------------------------------------------------


async def read(ctx: CommandContext) -> ScsiResult:
    lu = ctx.lu
    f = decode_rw(ctx.cdb)
    common.check_dpofua(lu, ctx.cdb)
    _check_transfer_length(lu, f.nblocks, f.tl_byte)
    common.check_lba_range(lu, f.lba, f.nblocks)
    if f.nblocks == 0:
        return ScsiResult(status=ScsiStatus.GOOD)
    data = await common.medium_read(lu, f.lba, f.nblocks)
    return ScsiResult(status=ScsiStatus.GOOD, data_in=data)


async def _write_data_out(ctx: CommandContext, f: RwCdb, *, fua: bool, verify: bool) -> ScsiResult:
    """The write part shared by WRITE and WRITE AND VERIFY: the Data-Out window per EDTL (SAM-5 5.4.3), the
    range lock, the write (and, with BYTCHK=1, the compare under the same lock), the residual."""
    lu = ctx.lu
    _check_transfer_length(lu, f.nblocks, f.tl_byte)
    common.check_lba_range(lu, f.lba, f.nblocks)
    bs = common.block_size(lu)
    needed = f.nblocks * bs
    edtl = data_out_length(ctx)
    usable = common.write_window(edtl, len(ctx.data_out), needed, bs)
    if usable is None:
        return common.residual_mismatch(edtl, needed, descriptor=ctx.descriptor_sense)
    nblocks = usable // bs
    if nblocks:
        data = memoryview(ctx.data_out).cast("B")[:usable]
        async with common.range_lock(lu).hold(f.lba, nblocks):
            await common.medium_write(lu, f.lba, data, fua=fua)
            if verify:
                await _compare(ctx, f.lba, nblocks, data, False)
    return common.set_residual(ScsiResult(status=ScsiStatus.GOOD), edtl, needed)


async def write(ctx: CommandContext) -> ScsiResult:
    f = decode_rw(ctx.cdb)
    common.check_dpofua(ctx.lu, ctx.cdb)
    return await _write_data_out(ctx, f, fua=f.fua, verify=False)


async def _compare(
    ctx: CommandContext, lba: int, nblocks: int, expected: memoryview, one_block: bool
) -> None:
    """Compare the medium with Data-Out chunk by chunk; MISCOMPARE with the byte offset of the first difference."""
    lu = ctx.lu
    bs = common.block_size(lu)
    per_chunk = max(1, common.CHUNK_BYTES // bs)
    done = 0
    while done < nblocks:
        n = min(per_chunk, nblocks - done)
        medium = await common.medium_read(lu, lba + done, n)
        want = bytes(expected[:bs]) * n if one_block else expected[done * bs : (done + n) * bs]
        diff = common.first_difference(medium, want)
        if diff >= 0:
            raise common.miscompare(done * bs + diff)
        done += n


async def verify(ctx: CommandContext) -> ScsiResult:
    lu = ctx.lu
    f = decode_rw(ctx.cdb)
    common.check_dpofua(lu, ctx.cdb)
    if f.bytchk == Bytchk.RESERVED:
        raise CheckCondition.invalid_cdb(1, 2)
    if f.bytchk != Bytchk.NO_COMPARE:
        _check_transfer_length(lu, f.nblocks, f.tl_byte)
    common.check_lba_range(lu, f.lba, f.nblocks)
    bs = common.block_size(lu)
    if f.bytchk == Bytchk.NO_COMPARE:
        # medium verification: our media have no latent errors to find (LIO answers this as a no-op too)
        return ScsiResult(status=ScsiStatus.GOOD)
    needed = 0 if f.nblocks == 0 else (bs if f.bytchk == Bytchk.COMPARE_ONE else f.nblocks * bs)
    edtl = data_out_length(ctx)
    if edtl != needed or len(ctx.data_out) < needed:
        return common.residual_mismatch(edtl, needed, descriptor=ctx.descriptor_sense)
    if f.nblocks:
        data = memoryview(ctx.data_out).cast("B")[:needed]
        await _compare(ctx, f.lba, f.nblocks, data, f.bytchk == Bytchk.COMPARE_ONE)
    return ScsiResult(status=ScsiStatus.GOOD)


async def write_and_verify(ctx: CommandContext) -> ScsiResult:
    """Write, durably, then check the medium holds what was sent (BYTCHK=1) (SBC-3 5.30)."""
    f = decode_rw(ctx.cdb)
    common.check_dpofua(ctx.lu, ctx.cdb)
    if f.bytchk not in (Bytchk.NO_COMPARE, Bytchk.COMPARE):
        raise CheckCondition.invalid_cdb(1, 2)
    return await _write_data_out(ctx, f, fua=True, verify=f.bytchk == Bytchk.COMPARE)


# --- the table -------------------------------------------------------------------------------------------------

#: CONTROL byte: no NACA / LINK (ACA is not supported)
CTRL = 0x00


def _spec(op: RwOpcode, usage: bytes, handler: Handler, direction: Direction, writes: bool) -> CommandSpec:
    return CommandSpec(
        opcode=int(op),
        name="{}({})".format(*op.name.replace("_", " ").rsplit(" ", 1)),
        cdb_length=len(usage),
        usage=usage,
        handler=handler,
        direction=direction,
        medium_write=writes,
        pr_class=PrClass.WRITE if writes else PrClass.READ,
    )


# byte 1: READ: DPO FUA RARC FUA_NV; WRITE: DPO FUA FUA_NV (no RDPROTECT/WRPROTECT: no protection information)
_R1 = 0x1E
_W1 = 0x1A
_V1 = 0x16  # DPO, BYTCHK (2 bits)
_WV1 = 0x16  # DPO, BYTCHK
_GRP = 0x3F

COMMANDS: list[CommandSpec] = [
    _spec(RwOpcode.READ_6, bytes((0x08, 0x1F, 0xFF, 0xFF, 0xFF, CTRL)), read, Direction.IN, False),
    _spec(RwOpcode.WRITE_6, bytes((0x0A, 0x1F, 0xFF, 0xFF, 0xFF, CTRL)), write, Direction.OUT, True),
    _spec(
        RwOpcode.READ_10,
        bytes((0x28, _R1, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, 0xFF, 0xFF, CTRL)),
        read,
        Direction.IN,
        False,
    ),
    _spec(
        RwOpcode.WRITE_10,
        bytes((0x2A, _W1, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, 0xFF, 0xFF, CTRL)),
        write,
        Direction.OUT,
        True,
    ),
    _spec(
        RwOpcode.WRITE_AND_VERIFY_10,
        bytes((0x2E, _WV1, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, 0xFF, 0xFF, CTRL)),
        write_and_verify,
        Direction.OUT,
        True,
    ),
    _spec(
        RwOpcode.VERIFY_10,
        bytes((0x2F, _V1, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, 0xFF, 0xFF, CTRL)),
        verify,
        Direction.OUT,
        False,
    ),
    _spec(
        RwOpcode.READ_12,
        bytes((0xA8, _R1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, CTRL)),
        read,
        Direction.IN,
        False,
    ),
    _spec(
        RwOpcode.WRITE_12,
        bytes((0xAA, _W1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, CTRL)),
        write,
        Direction.OUT,
        True,
    ),
    _spec(
        RwOpcode.WRITE_AND_VERIFY_12,
        bytes((0xAE, _WV1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, CTRL)),
        write_and_verify,
        Direction.OUT,
        True,
    ),
    _spec(
        RwOpcode.VERIFY_12,
        bytes((0xAF, _V1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, _GRP, CTRL)),
        verify,
        Direction.OUT,
        False,
    ),
    _spec(RwOpcode.READ_16, bytes((0x88, _R1, *[0xFF] * 12, _GRP, CTRL)), read, Direction.IN, False),
    _spec(RwOpcode.WRITE_16, bytes((0x8A, _W1, *[0xFF] * 12, _GRP, CTRL)), write, Direction.OUT, True),
    _spec(
        RwOpcode.WRITE_AND_VERIFY_16,
        bytes((0x8E, _WV1, *[0xFF] * 12, _GRP, CTRL)),
        write_and_verify,
        Direction.OUT,
        True,
    ),
    _spec(RwOpcode.VERIFY_16, bytes((0x8F, _V1, *[0xFF] * 12, _GRP, CTRL)), verify, Direction.OUT, False),
]
