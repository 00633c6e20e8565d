"""LOG SENSE (SPC-4 6.8): supported pages (00h) and logical block provisioning (0Ch, SBC-3 6.4.3).

The provisioning page reports the available and used LBA mapping resource counts in logical blocks (scope 01b:
dedicated to this LU), from the backstore's mapping (`Backstore.is_mapped`). Saving (SP=1) is not supported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage

if TYPE_CHECKING:
    from target.scsi.context import CommandContext
    from target.scsi.device import LogicalUnit

SUPPORTED_PAGES = 0x00
LOGICAL_BLOCK_PROVISIONING = 0x0C


def _parameter(code: int, value: bytes, control: int = 0x03) -> bytes:
    """A log parameter: code, control byte (FORMAT AND LINKING 11b: binary), length, value (SPC-4 7.3.2)."""
    return code.to_bytes(2, "big") + bytes((control, len(value))) + value


def _page(code: int, params: bytes, subpage: int = 0) -> bytes:
    return bytes((code, subpage)) + len(params).to_bytes(2, "big") + params


async def _used_blocks(lu: LogicalUnit) -> int:
    bs = lu.block_size
    extents = await lu.backstore.is_mapped(0, lu.num_blocks * bs)
    return sum(length for _, length, mapped in extents if mapped) // bs


async def log_sense(ctx: CommandContext) -> ScsiResult:
    cdb = ctx.cdb
    page = cdb[2] & 0x3F
    subpage = cdb[3]
    pointer = int.from_bytes(cdb[5:7], "big")
    if page == SUPPORTED_PAGES and subpage == 0x00:
        data = _page(SUPPORTED_PAGES, bytes((SUPPORTED_PAGES, LOGICAL_BLOCK_PROVISIONING)))
        if pointer:
            ctx.invalid_cdb(5)
        return ctx.respond(data)
    if page == SUPPORTED_PAGES and subpage == 0xFF:
        # supported pages and subpages (SPC-4 7.3.18)
        if pointer:
            ctx.invalid_cdb(5)
        return ctx.respond(_page(0x40 | SUPPORTED_PAGES, bytes((0x00, 0x00, 0x00, 0xFF, 0x0C, 0x00)), 0xFF))
    if page == LOGICAL_BLOCK_PROVISIONING and subpage == 0x00:
        lu = ctx.lu
        used = min(await _used_blocks(lu), 0xFFFFFFFF)
        available = min(max(lu.num_blocks - used, 0), 0xFFFFFFFF)
        params = {
            0x0001: available.to_bytes(4, "big") + bytes((0x01, 0, 0, 0)),
            0x0002: used.to_bytes(4, "big") + bytes((0x01, 0, 0, 0)),
        }
        if pointer > max(params):
            ctx.invalid_cdb(5)
        body = b"".join(_parameter(code, value) for code, value in sorted(params.items()) if code >= pointer)
        return ctx.respond(_page(LOGICAL_BLOCK_PROVISIONING, body))
    if page in (SUPPORTED_PAGES, LOGICAL_BLOCK_PROVISIONING):
        ctx.invalid_cdb(3)  # the page exists, that subpage does not (SPC-4 6.8)
    ctx.invalid_cdb(2, 5)


COMMANDS = [
    CommandSpec(
        opcode=0x4D,
        name="LOG SENSE",
        cdb_length=10,
        usage=usage(0x4D, 0x00, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00),
        handler=log_sense,
        direction=Direction.IN,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.STANDBY_OK,
        alloc_len=(7, 2),
    )
]
