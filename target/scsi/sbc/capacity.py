"""READ CAPACITY (10) and READ CAPACITY (16): SBC-3 5.15, 5.16."""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction
from target.scsi.sbc import common
from target.scsi.sense import CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

READ_CAPACITY_10 = 0x25
SERVICE_ACTION_IN_16 = 0x9E
SA_READ_CAPACITY_16 = 0x10


def _check_pmi(cdb: bytes, lba_slice: slice, pmi_byte: int) -> None:
    """SBC-3 5.15.1: with PMI=0 the LOGICAL BLOCK ADDRESS field shall be zero."""
    if not cdb[pmi_byte] & 0x01 and any(cdb[lba_slice]):
        raise CheckCondition.invalid_cdb(lba_slice.start or 0)


def capacity_10_data(lu: object) -> bytes:
    last = common.num_blocks(lu) - 1
    # SBC-3 5.15.2: a capacity beyond 32 bits reports FFFFFFFFh ("use READ CAPACITY (16)")
    return min(last, 0xFFFFFFFF).to_bytes(4, "big") + common.block_size(lu).to_bytes(4, "big")


def capacity_16_data(lu: object) -> bytes:
    """The 32-byte READ CAPACITY (16) parameter data (SBC-3 5.16.2, table 66)."""
    data = bytearray(32)
    data[0:8] = (common.num_blocks(lu) - 1).to_bytes(8, "big")
    data[8:12] = common.block_size(lu).to_bytes(4, "big")
    # byte 12: P_TYPE / PROT_EN = 0 (no protection information)
    data[13] = common.physical_block_exponent(lu) & 0x0F
    if common.thin_provisioned(lu):
        data[14] |= 0x80  # LBPME
        if common.lbprz(lu):
            data[14] |= 0x40  # LBPRZ
    # LOWEST ALIGNED LOGICAL BLOCK ADDRESS = 0
    return bytes(data)


async def read_capacity_10(ctx: CommandContext) -> ScsiResult:
    _check_pmi(ctx.cdb, slice(2, 6), 8)
    return ctx.respond(capacity_10_data(ctx.lu))


async def read_capacity_16(ctx: CommandContext) -> ScsiResult:
    _check_pmi(ctx.cdb, slice(2, 10), 14)
    return ctx.respond(capacity_16_data(ctx.lu))


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=READ_CAPACITY_10,
        name="READ CAPACITY(10)",
        cdb_length=10,
        usage=bytes((0x25, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x00)),
        handler=read_capacity_10,
        direction=Direction.IN,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.STANDBY_OK,
    ),
    CommandSpec(
        opcode=SERVICE_ACTION_IN_16,
        service_action=SA_READ_CAPACITY_16,
        name="READ CAPACITY(16)",
        cdb_length=16,
        usage=bytes((0x9E, 0x10, *[0xFF] * 8, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00)),
        handler=read_capacity_16,
        direction=Direction.IN,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.STANDBY_OK,
        alloc_len=(10, 4),
    ),
]
