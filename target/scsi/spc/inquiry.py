"""INQUIRY (SPC-4 6.6): standard data and the vital product data pages (SPC-4 7.8, SBC-3 6.5).

VPD pages: 00h supported pages, 80h unit serial number, 83h device identification (NAA IEEE Registered
Extended, T10 vendor id, relative target port, target port group, logical unit group, SCSI name strings of the
target port and target device), 86h extended INQUIRY data, B0h block limits, B1h block device
characteristics, B2h logical block provisioning, 8Fh third-party copy (only while EXTENDED COPY is offered,
emulate_3pc=1, together with the 3PC bit of the standard data). B0h/B2h come from the same helpers the SBC handlers enforce
(`target.scsi.sbc.common`), so advertised and enforced limits agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from target.scsi.command import Nexus, ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage

if TYPE_CHECKING:
    from target.scsi.context import CommandContext
    from target.scsi.device import LogicalUnit

PERIPHERAL_DEVICE_TYPE_DISK = 0x00
#: version descriptors (SPC-4 6.6.2 table 148): SAM-5, iSCSI (no version claimed), SPC-4, SBC-3
VERSION_DESCRIPTORS = (0x00A0, 0x0960, 0x0460, 0x04C0)
STANDARD_INQUIRY_LENGTH = 96
PROTOCOL_ID_ISCSI = 0x5


def _ascii(text: str, width: int) -> bytes:
    raw = text.encode("ascii", "replace")[:width]
    return raw.ljust(width, b" ")


def standard_inquiry(lu: LogicalUnit, nexus: Nexus | None = None) -> bytes:
    buf = bytearray(STANDARD_INQUIRY_LENGTH)
    buf[0] = PERIPHERAL_DEVICE_TYPE_DISK
    buf[2] = 0x06  # VERSION: SPC-4
    buf[3] = 0x20 | 0x10 | 0x02  # NORMACA (ACA is supported, target.scsi.aca), HISUP, RESPONSE DATA FORMAT 2
    buf[4] = STANDARD_INQUIRY_LENGTH - 5
    buf[5] = ((lu.tpgs & 0x3) << 4) | (0x08 if third_party_copy_offered(lu) else 0)  # TPGS, 3PC
    if nexus is not None and lu.alua is not None and hasattr(lu.alua, "tpgs"):
        # TPGS of the group of the port the command came through (LIO: the port's group access type)
        buf[5] = (buf[5] & ~0x30) | ((int(lu.alua.tpgs(nexus)) & 0x3) << 4)
    buf[7] = 0x02  # CMDQUE
    buf[8:16] = _ascii(lu.vendor, 8)
    buf[16:32] = _ascii(lu.product, 16)
    buf[32:36] = _ascii(lu.revision, 4)
    for i, vd in enumerate(VERSION_DESCRIPTORS):
        buf[58 + 2 * i : 60 + 2 * i] = vd.to_bytes(2, "big")
    return bytes(buf)


def unmapped_standard_inquiry() -> bytes:
    """Standard data for a LUN that is not mapped: qualifier 011b, device type 1Fh (SPC-4 6.6.2)."""
    buf = bytearray(36)
    buf[0] = 0x7F
    buf[2] = 0x06
    buf[3] = 0x12
    buf[4] = 31
    buf[7] = 0x02
    buf[8:16] = _ascii("SANLAB", 8)
    buf[16:32] = _ascii("", 16)
    buf[32:36] = _ascii("0001", 4)
    return bytes(buf)


def _vpd(page: int, body: bytes | bytearray) -> bytes:
    return bytes((PERIPHERAL_DEVICE_TYPE_DISK, page)) + len(body).to_bytes(2, "big") + bytes(body)


def vpd_unit_serial(ctx: CommandContext) -> bytes:
    return _vpd(0x80, ctx.lu.serial.encode("ascii", "replace"))


def _designator(code_set: int, piv_assoc_type: int, value: bytes, proto: int = 0) -> bytes:
    return bytes(((proto << 4) | code_set, piv_assoc_type, 0, len(value))) + value


def _name_string(name: str) -> bytes:
    """SCSI name string designator: UTF-8, null-terminated, padded to a multiple of 4 (SPC-4 7.8.6.11)."""
    raw = name.encode("utf-8")[:251] + b"\x00"
    return raw + bytes(-len(raw) % 4)


def vpd_device_identification(ctx: CommandContext) -> bytes:
    lu = ctx.lu
    nexus = ctx.nexus
    body = bytearray()
    # NAA IEEE Registered Extended, binary, associated with the logical unit (SPC-4 7.8.6.6.5)
    body += _designator(0x1, 0x03, lu.naa)
    # T10 vendor identification, ASCII (SPC-4 7.8.6.4)
    body += _designator(0x2, 0x01, _ascii(lu.vendor, 8) + lu.serial.encode("ascii", "replace"))
    # relative target port identifier: PIV=1, association 01b (target port), type 4 (SPC-4 7.8.6.7)
    body += _designator(0x1, 0x94, nexus.relative_port_id.to_bytes(4, "big"), PROTOCOL_ID_ISCSI)
    # target port group: PIV=1, association 01b, type 5 (SPC-4 7.8.6.8)
    group = 0
    alua: Any = lu.alua
    if alua is not None and hasattr(alua, "group_id"):
        group = int(alua.group_id(nexus))
    body += _designator(0x1, 0x95, group.to_bytes(4, "big"), PROTOCOL_ID_ISCSI)
    # logical unit group: association 00b, type 6 (SPC-4 7.8.6.9)
    body += _designator(0x1, 0x06, bytes(4))
    # SCSI name strings, UTF-8, PIV=1: the target port (assoc 01b) and the target device (assoc 10b)
    body += _designator(0x3, 0x98, _name_string(nexus.target_port), PROTOCOL_ID_ISCSI)
    body += _designator(0x3, 0xA8, _name_string(nexus.target_name), PROTOCOL_ID_ISCSI)
    return _vpd(0x83, body)


def vpd_extended_inquiry(ctx: CommandContext) -> bytes:
    body = bytearray(0x3C)
    body[1] = 0x07  # HEADSUP, ORDSUP, SIMPSUP (SPC-4 7.8.7)
    body[2] = 0x01 if ctx.lu.write_cache_enabled else 0x00  # V_SUP: volatile cache
    body[4] = 0x10  # LUICLR: unit attentions are cleared per I_T nexus
    return _vpd(0x86, body)


def _sbc_common() -> Any:
    try:
        from target.scsi.sbc import common
    except ImportError:  # pragma: no cover - SPC-only build
        return None
    return common


def _xcopy() -> Any:
    try:
        from target.scsi.sbc import xcopy
    except ImportError:  # pragma: no cover - SPC-only build
        return None
    return xcopy


def third_party_copy_offered(lu: LogicalUnit) -> bool:
    """emulate_3pc is on and the EXTENDED COPY implementation is present."""
    return bool(lu.attrs.emulate_3pc) and _xcopy() is not None


def vpd_third_party_copy(ctx: CommandContext) -> bytes:
    """Third-party Copy VPD page (SPC-4 7.8.17): what EXTENDED COPY (LID1) supports."""
    return _vpd(0x8F, _xcopy().third_party_copy_descriptors())


def vpd_block_limits(ctx: CommandContext) -> bytes:
    lu = ctx.lu
    common = _sbc_common()
    if common is not None and hasattr(common, "block_limits"):
        page = bytearray(common.block_limits(lu).encode_vpd_b0())
        page[0] = PERIPHERAL_DEVICE_TYPE_DISK
        return bytes(page)
    # fallback (SBC-3 6.5.3) straight from the attributes
    a = lu.attrs
    body = bytearray(0x3C)
    body[1] = 1 if a.emulate_caw else 0
    body[2:4] = (1).to_bytes(2, "big")
    body[4:8] = a.hw_max_sectors.to_bytes(4, "big")
    body[8:12] = a.optimal_sectors.to_bytes(4, "big")
    if a.emulate_tpu or a.emulate_tpws:
        body[16:20] = a.max_unmap_lba_count.to_bytes(4, "big")
        body[20:24] = a.max_unmap_block_desc_count.to_bytes(4, "big")
        body[24:28] = a.unmap_granularity.to_bytes(4, "big")
    body[32:40] = a.max_write_same_len.to_bytes(8, "big")
    return _vpd(0xB0, body)


def vpd_block_device_characteristics(ctx: CommandContext) -> bytes:
    body = bytearray(0x3C)
    body[0:2] = (1 if ctx.lu.attrs.is_nonrot else 0).to_bytes(2, "big")  # MEDIUM ROTATION RATE (SBC-3 6.5.2)
    return _vpd(0xB1, body)


def _thin(lu: LogicalUnit) -> tuple[bool, bool]:
    """(provisioning enabled, LBPRZ) as the SBC handlers see them."""
    common = _sbc_common()
    if common is not None and hasattr(common, "thin_provisioned"):
        return bool(common.thin_provisioned(lu)), bool(common.lbprz(lu))
    tp = lu.backstore.can_unmap and bool(lu.attrs.emulate_tpu or lu.attrs.emulate_tpws)
    return tp, tp and lu.backstore.unmap_zeroes


def vpd_logical_block_provisioning(ctx: CommandContext) -> bytes:
    lu = ctx.lu
    tp, lbprz = _thin(lu)
    body = bytearray(4)
    # body[0]: THRESHOLD EXPONENT 0 (no thresholds)
    flags = 0
    if tp and lu.attrs.emulate_tpu:
        flags |= 0x80  # LBPU
    if tp and lu.attrs.emulate_tpws:
        flags |= 0x40 | 0x20  # LBPWS, LBPWS10
    if lbprz:
        flags |= 0x04  # LBPRZ (SBC-3 6.5.4)
    body[1] = flags
    body[2] = 0x02 if tp else 0x00  # PROVISIONING TYPE: thin / full
    return _vpd(0xB2, body)


VPD_PAGES: dict[int, Callable[[CommandContext], bytes]] = {
    0x80: vpd_unit_serial,
    0x83: vpd_device_identification,
    0x86: vpd_extended_inquiry,
    0x8F: vpd_third_party_copy,
    0xB0: vpd_block_limits,
    0xB1: vpd_block_device_characteristics,
    0xB2: vpd_logical_block_provisioning,
}


#: pages offered only when the LU offers what they describe
_CONDITIONAL_PAGES: dict[int, Callable[[LogicalUnit], bool]] = {0x8F: third_party_copy_offered}


def _offered(lu: LogicalUnit | None, page: int) -> bool:
    cond = _CONDITIONAL_PAGES.get(page)
    return cond is None or (lu is not None and cond(lu))


def vpd_supported_pages(lu: LogicalUnit | None = None) -> bytes:
    return _vpd(0x00, bytes([0x00, *sorted(p for p in VPD_PAGES if _offered(lu, p))]))


async def inquiry(ctx: CommandContext) -> ScsiResult:
    evpd = ctx.cdb[1] & 0x01
    page = ctx.cdb[2]
    if not evpd:
        if page != 0:
            ctx.invalid_cdb(2)  # SPC-4 6.6.1: PAGE CODE must be zero when EVPD is zero
        return ctx.respond(standard_inquiry(ctx.lu, ctx.nexus))
    if page == 0x00:
        return ctx.respond(vpd_supported_pages(ctx.lu))
    handler = VPD_PAGES.get(page)
    if handler is None or not _offered(ctx.lu, page):
        ctx.invalid_cdb(2)
    return ctx.respond(handler(ctx))


COMMANDS = [
    CommandSpec(
        opcode=0x12,
        name="INQUIRY",
        cdb_length=6,
        usage=usage(0x12, 0x01, 0xFF, 0xFF, 0xFF, 0x00),
        handler=inquiry,
        direction=Direction.IN,
        ua_exempt=True,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.ANY,
        spc2_allowed=True,
        alloc_len=(3, 2),
    )
]
