"""MODE SENSE(6)/(10) and MODE SELECT(6)/(10) (SPC-4 6.11 - 6.14, 7.5; SBC-3 6.4).

Pages are data (`MODE_PAGES`): each knows how to render its current and default values from the logical unit,
its changeable mask, and how to apply accepted values back to the LU:
  01h read-write error recovery   nothing changeable
  08h caching                     WCE changeable; the LU's write_cache_enabled (SBC uses it for FUA/flush)
  0Ah control                     D_SENSE, QErr (00b/01b/11b), TAS changeable and honoured by the device
  0Ah/01h control extension       nothing changeable (TCMOS, SCSIP, IALUAE 0; SPC-4 7.5.9)
  1Ch informational exceptions    nothing changeable
Subpages (SPC-4 6.11, 7.5.7): page 3Fh with subpage 00h returns every page_0 page, with subpage FFh every page and
subpage; page N with subpage FFh returns page N and all its subpages; a subpage we do not have is INVALID FIELD
IN CDB. Subpages use the sub_page format (SPF=1, 2-byte page length); MODE SELECT accepts them the same way.
Saved values are not implemented: PC=11b -> SAVING PARAMETERS NOT SUPPORTED; MODE SELECT with SP=1 -> INVALID
FIELD IN CDB. MODE SELECT validates the whole parameter list before applying anything; every error carries a
field pointer into the parameter list. A change establishes MODE PARAMETERS CHANGED for the other I_T nexuses
(SPC-4 7.5.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage
from target.scsi.sense import Asc, CheckCondition, SenseKey

if TYPE_CHECKING:
    from target.scsi.context import CommandContext
    from target.scsi.device import LogicalUnit

ALL_PAGES = 0x3F
ALL_SUBPAGES = 0xFF


class PageControl:
    CURRENT = 0
    CHANGEABLE = 1
    DEFAULT = 2
    SAVED = 3


@dataclass(frozen=True)
class ModePage:
    code: int
    length: int  # PAGE LENGTH (bytes after the page header: 2 for page_0 format, 4 for sub_page format)
    render: Callable[[LogicalUnit, bool], bytes]  # (lu, default) -> page bytes
    changeable: bytes
    apply: Callable[[LogicalUnit, bytes], None] | None = None
    subpage: int = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.code, self.subpage)

    @property
    def header_length(self) -> int:
        """2 for the page_0 format, 4 for the sub_page format (SPC-4 7.5.7)."""
        return 4 if self.subpage else 2

    def header(self) -> bytes:
        if self.subpage:
            return bytes((0x40 | self.code, self.subpage)) + self.length.to_bytes(2, "big")
        return bytes((self.code, self.length))

    def current(self, lu: LogicalUnit) -> bytes:
        return self.render(lu, False)

    def default(self, lu: LogicalUnit) -> bytes:
        return self.render(lu, True)


def _page(code: int, length: int) -> bytearray:
    buf = bytearray(2 + length)
    buf[0] = code
    buf[1] = length
    return buf


def _render_error_recovery(lu: LogicalUnit, default: bool) -> bytes:
    return bytes(_page(0x01, 0x0A))


def _render_caching(lu: LogicalUnit, default: bool) -> bytes:
    p = _page(0x08, 0x12)
    wce = bool(lu.attrs.emulate_write_cache) if default else lu.write_cache_enabled
    p[2] = 0x04 if wce else 0x00  # WCE (SBC-3 6.4.5)
    p[12] = 0x20  # DRA: no read-ahead
    return bytes(p)


def _apply_caching(lu: LogicalUnit, page: bytes) -> None:
    lu.write_cache_enabled = bool(page[2] & 0x04)


def _render_control(lu: LogicalUnit, default: bool) -> bytes:
    p = _page(0x0A, 0x0A)
    d_sense = False if default else lu.d_sense
    qerr = 0 if default else lu.qerr
    tas = bool(lu.attrs.emulate_tas) if default else lu.tas
    p[2] = 0x04 if d_sense else 0x00  # D_SENSE (SPC-4 7.5.8)
    # QUEUE ALGORITHM MODIFIER 1h (unrestricted reordering) unless emulate_rest_reord; QErr in bits 2-1
    p[3] = (0x00 if lu.attrs.emulate_rest_reord else 0x10) | ((qerr & 0x3) << 1)
    p[4] = 0x00  # UA_INTLCK_CTRL 00b, SWP 0
    p[5] = 0x40 if tas else 0x00  # TAS
    p[8:10] = b"\xff\xff"  # BUSY TIMEOUT PERIOD: unlimited
    return bytes(p)


def _apply_control(lu: LogicalUnit, page: bytes) -> None:
    lu.d_sense = bool(page[2] & 0x04)
    lu.qerr = (page[3] >> 1) & 0x3
    lu.tas = bool(page[5] & 0x40)


def _render_control_extension(lu: LogicalUnit, default: bool) -> bytes:
    # SPC-4 7.5.9: TCMOS, SCSIP, IALUAE 0; INITIAL COMMAND PRIORITY 0 (no priorities); MAXIMUM SENSE DATA
    # LENGTH 0 (no limit)
    return bytes((0x40 | 0x0A, 0x01, 0x00, 0x1C)) + bytes(0x1C)


def _render_informational_exceptions(lu: LogicalUnit, default: bool) -> bytes:
    return bytes(_page(0x1C, 0x0A))


def _mask(length: int, header: int = 2, **bits: int) -> bytes:
    m = bytearray(header + length)
    for key, value in bits.items():
        m[int(key[1:])] = value
    return bytes(m)


MODE_PAGES: dict[tuple[int, int], ModePage] = {
    p.key: p
    for p in (
        ModePage(0x01, 0x0A, _render_error_recovery, _mask(0x0A)),
        ModePage(0x08, 0x12, _render_caching, _mask(0x12, b2=0x04), _apply_caching),
        ModePage(0x0A, 0x0A, _render_control, _mask(0x0A, b2=0x04, b3=0x06, b5=0x40), _apply_control),
        ModePage(0x0A, 0x1C, _render_control_extension, _mask(0x1C, 4), subpage=0x01),
        ModePage(0x1C, 0x0A, _render_informational_exceptions, _mask(0x0A)),
    )
}


def _select_pages(code: int, subpage: int) -> list[ModePage] | None:
    """The pages a MODE SENSE PAGE CODE / SUBPAGE CODE pair asks for (SPC-4 6.11, table 101), in ascending
    (page, subpage) order; None when that combination is not supported."""
    pages = sorted(MODE_PAGES.values(), key=lambda p: p.key)
    if code == ALL_PAGES:
        if subpage == 0x00:
            return [p for p in pages if p.subpage == 0]
        if subpage == ALL_SUBPAGES:
            return pages
        return None
    if subpage == ALL_SUBPAGES:
        found = [p for p in pages if p.code == code]
        return found or None
    page = MODE_PAGES.get((code, subpage))
    return [page] if page is not None else None


def _page_bytes(lu: LogicalUnit, page: ModePage, pc: int) -> bytes:
    if pc == PageControl.CHANGEABLE:
        mask = bytearray(page.changeable)
        head = page.header()
        mask[: len(head)] = head
        return bytes(mask)
    if pc == PageControl.DEFAULT:
        return page.default(lu)
    return page.current(lu)


def _block_descriptor(lu: LogicalUnit, long_lba: bool) -> bytes:
    if long_lba:
        return lu.num_blocks.to_bytes(8, "big") + bytes(4) + lu.block_size.to_bytes(4, "big")
    blocks = min(lu.num_blocks, 0xFFFFFFFF)
    return blocks.to_bytes(4, "big") + b"\x00" + lu.block_size.to_bytes(3, "big")


async def _mode_sense(ctx: CommandContext, ten: bool) -> ScsiResult:
    cdb = ctx.cdb
    lu = ctx.lu
    dbd = bool(cdb[1] & 0x08)
    llbaa = ten and bool(cdb[1] & 0x10)
    pc = cdb[2] >> 6
    code = cdb[2] & 0x3F
    subpage = cdb[3]
    if pc == PageControl.SAVED:
        raise CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
    selected = _select_pages(code, subpage)
    if selected is None:
        if code != ALL_PAGES and not any(p.code == code for p in MODE_PAGES.values()):
            ctx.invalid_cdb(2, 5)  # no such page at all
        ctx.invalid_cdb(3)  # the page exists, the subpage does not
    pages = b"".join(_page_bytes(lu, p, pc) for p in selected)
    dsp = 0x80 if ctx.read_only else 0x00  # WP (SBC-3 6.4.1)
    if lu.attrs.emulate_fua_write:
        dsp |= 0x10  # DPOFUA
    bd = b"" if dbd else _block_descriptor(lu, llbaa)
    if ten:
        header = bytearray(8)
        total = len(header) + len(bd) + len(pages)
        header[0:2] = (total - 2).to_bytes(2, "big")
        header[3] = dsp
        header[4] = 0x01 if (bd and llbaa) else 0x00  # LONGLBA
        header[6:8] = len(bd).to_bytes(2, "big")
    else:
        header = bytearray(4)
        total = len(header) + len(bd) + len(pages)
        header[0] = min(total - 1, 0xFF)
        header[2] = dsp
        header[3] = len(bd)
    return ctx.respond(bytes(header) + bd + pages)


async def mode_sense_6(ctx: CommandContext) -> ScsiResult:
    return await _mode_sense(ctx, ten=False)


async def mode_sense_10(ctx: CommandContext) -> ScsiResult:
    return await _mode_sense(ctx, ten=True)


def parse_mode_select(lu: LogicalUnit, params: bytes, ten: bool) -> list[tuple[ModePage, bytes]]:
    """Validate a MODE SELECT parameter list; returns the pages to apply. Raises CheckCondition with a
    parameter-list field pointer at the first bad byte."""
    hlen = 8 if ten else 4
    if len(params) < hlen:
        raise CheckCondition.param_list_length_error()
    # the MODE DATA LENGTH field is reserved in MODE SELECT and ignored here (SPC-4 7.5.5)
    if params[2 if ten else 1] != 0:
        raise CheckCondition.invalid_param(2 if ten else 1)  # MEDIUM TYPE: 00h for direct access
    if ten:
        long_lba = bool(params[4] & 0x01)
        bdl = int.from_bytes(params[6:8], "big")
        bdl_at = 6
    else:
        long_lba = False
        bdl = params[3]
        bdl_at = 3
    want = 16 if long_lba else 8
    if bdl not in (0, want):
        raise CheckCondition.invalid_param(bdl_at)
    off = hlen
    if bdl:
        if len(params) < off + bdl:
            raise CheckCondition.param_list_length_error()
        if long_lba:
            blen_at = off + 12
            block_len = int.from_bytes(params[blen_at : blen_at + 4], "big")
        else:
            blen_at = off + 5
            block_len = int.from_bytes(params[blen_at : blen_at + 3], "big")
        if block_len not in (0, lu.block_size):
            raise CheckCondition.invalid_param(blen_at)  # changing the block size is not supported
        off += bdl
    accepted: list[tuple[ModePage, bytes]] = []
    while off < len(params):
        if len(params) - off < 2:
            raise CheckCondition.param_list_length_error()
        b0 = params[off]
        spf = bool(b0 & 0x40)
        if spf and len(params) - off < 4:
            raise CheckCondition.param_list_length_error()
        sub = params[off + 1] if spf else 0
        if spf and sub == 0:
            raise CheckCondition.invalid_param(off, 6)  # subpage 00h is sent in the page_0 format
        page = MODE_PAGES.get((b0 & 0x3F, sub))
        if page is None:
            if spf and any(p.code == b0 & 0x3F for p in MODE_PAGES.values()):
                raise CheckCondition.invalid_param(off + 1)  # the page exists, that subpage does not
            raise CheckCondition.invalid_param(off, 5)
        if spf:
            if int.from_bytes(params[off + 2 : off + 4], "big") != page.length:
                raise CheckCondition.invalid_param(off + 2)
        elif params[off + 1] != page.length:
            raise CheckCondition.invalid_param(off + 1)
        end = off + page.header_length + page.length
        if end > len(params):
            raise CheckCondition.param_list_length_error()
        new = params[off:end]
        cur = page.current(lu)
        for i in range(page.header_length, len(new)):
            bad = (new[i] ^ cur[i]) & ~page.changeable[i] & 0xFF
            if bad:
                raise CheckCondition.invalid_param(off + i, bad.bit_length() - 1)
        if page.key == (0x0A, 0) and (new[3] >> 1) & 0x3 == 0x2:
            raise CheckCondition.invalid_param(off + 3, 2)  # QErr 10b is reserved
        accepted.append((page, bytes(new)))
        off = end
    return accepted


async def _mode_select(ctx: CommandContext, ten: bool) -> ScsiResult:
    cdb = ctx.cdb
    if not cdb[1] & 0x10:
        ctx.invalid_cdb(1, 4)  # PF=0: vendor-specific page format is not supported
    if cdb[1] & 0x01:
        ctx.invalid_cdb(1, 0)  # SP=1: saved pages not implemented (SPC-4 6.9)
    if ctx.parameter_list_length == 0:
        return ctx.good()
    lu = ctx.lu
    accepted = parse_mode_select(lu, ctx.parameters(), ten)
    changed = False
    for page, data in accepted:
        if page.apply is not None and data != page.current(lu):
            page.apply(lu, data)
            changed = True
    if changed:
        lu.ua.establish(Asc.MODE_PARAMETERS_CHANGED, exclude=ctx.nexus)
    return ctx.good()


async def mode_select_6(ctx: CommandContext) -> ScsiResult:
    return await _mode_select(ctx, ten=False)


async def mode_select_10(ctx: CommandContext) -> ScsiResult:
    return await _mode_select(ctx, ten=True)


COMMANDS = [
    CommandSpec(
        opcode=0x1A,
        name="MODE SENSE(6)",
        cdb_length=6,
        usage=usage(0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x00),
        handler=mode_sense_6,
        direction=Direction.IN,
        alloc_len=(4, 1),
        pr_class=PrClass.WRITE,
        alua_class=AluaClass.STANDBY_OK,
    ),
    CommandSpec(
        opcode=0x5A,
        name="MODE SENSE(10)",
        cdb_length=10,
        usage=usage(0x5A, 0x18, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00),
        handler=mode_sense_10,
        direction=Direction.IN,
        alloc_len=(7, 2),
        pr_class=PrClass.WRITE,
        alua_class=AluaClass.STANDBY_OK,
    ),
    CommandSpec(
        opcode=0x15,
        name="MODE SELECT(6)",
        cdb_length=6,
        usage=usage(0x15, 0x11, 0x00, 0x00, 0xFF, 0x00),
        handler=mode_select_6,
        direction=Direction.OUT,
        param_len=(4, 1),
        pr_class=PrClass.WRITE,
        alua_class=AluaClass.STANDBY_OK,
    ),
    CommandSpec(
        opcode=0x55,
        name="MODE SELECT(10)",
        cdb_length=10,
        usage=usage(0x55, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00),
        handler=mode_select_10,
        direction=Direction.OUT,
        param_len=(7, 2),
        pr_class=PrClass.WRITE,
        alua_class=AluaClass.STANDBY_OK,
    ),
]
