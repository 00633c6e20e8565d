"""iSCSI TransportIDs (SPC-4 7.6.4.6, table 508/509): how PERSISTENT RESERVE IN/OUT name an initiator port.

    byte 0     FORMAT CODE (bits 7-6) | PROTOCOL IDENTIFIER (bits 3-0, 5h = iSCSI)
    byte 1     reserved
    bytes 2-3  ADDITIONAL LENGTH (n - 3): a multiple of 4, at least 20
    format 00b ISCSI NAME, null-terminated and padded with nulls: the initiator device (every ISID of the name)
    format 01b ISCSI NAME ",i,0x" ISID (12 hex digits), null-terminated and padded: one initiator port

Parsing is bounded by the buffer; anything malformed raises `CheckCondition` INVALID FIELD IN PARAMETER LIST
pointing at the offending byte of the parameter list (`base` is the TransportID's offset there).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from target.scsi.sense import CheckCondition

PROTOCOL_ID_ISCSI = 0x5
#: RFC 7143 4.2.7.1: an iSCSI name is at most 223 bytes
MAX_ISCSI_NAME = 223
_MIN_ADDITIONAL = 20
_SEPARATOR = ",i,0x"


class TidFormat(enum.IntEnum):
    """FORMAT CODE of an iSCSI TransportID."""

    DEVICE = 0b00  # initiator name only
    PORT = 0b01  # initiator name + ISID


@dataclass(frozen=True, slots=True)
class TransportId:
    """An iSCSI initiator: the name, and the ISID when it names one initiator port (format 01b)."""

    name: str
    isid: int | None = None

    @property
    def format(self) -> TidFormat:
        return TidFormat.DEVICE if self.isid is None else TidFormat.PORT

    def encode(self) -> bytes:
        """The TransportID bytes (null-terminated, padded to a multiple of 4, at least 24 bytes)."""
        text = self.name if self.isid is None else f"{self.name}{_SEPARATOR}{self.isid:012x}"
        body = text.encode("utf-8") + b"\x00"
        body += bytes(-len(body) % 4)
        if len(body) < _MIN_ADDITIONAL:
            body += bytes(_MIN_ADDITIONAL - len(body))
        head = bytes(((self.format << 6) | PROTOCOL_ID_ISCSI, 0)) + len(body).to_bytes(2, "big")
        return head + body


def decode(buf: bytes, offset: int = 0, *, base: int = 0) -> tuple[TransportId, int]:
    """Decode one TransportID at `offset` of `buf`; returns it and its total length.
    `base` is added to field pointers (the TransportID's position in the parameter list minus `offset`)."""
    if len(buf) - offset < 4:
        raise CheckCondition.invalid_param(base + offset)
    b0 = buf[offset]
    if b0 & 0x0F != PROTOCOL_ID_ISCSI:
        raise CheckCondition.invalid_param(base + offset, 3)
    fmt = b0 >> 6
    if fmt not in (TidFormat.DEVICE, TidFormat.PORT) or b0 & 0x30:
        raise CheckCondition.invalid_param(base + offset, 7)
    add_len = int.from_bytes(buf[offset + 2 : offset + 4], "big")
    if add_len < _MIN_ADDITIONAL or add_len % 4 or offset + 4 + add_len > len(buf):
        raise CheckCondition.invalid_param(base + offset + 2)
    raw = bytes(buf[offset + 4 : offset + 4 + add_len])
    nul = raw.find(b"\x00")
    if nul <= 0:
        raise CheckCondition.invalid_param(base + offset + 4)
    try:
        text = raw[:nul].decode("utf-8")
    except UnicodeDecodeError:
        raise CheckCondition.invalid_param(base + offset + 4) from None
    isid: int | None = None
    if fmt == TidFormat.PORT:
        sep = text.lower().find(_SEPARATOR)
        hex_part = text[sep + len(_SEPARATOR) :] if sep > 0 else ""
        if sep <= 0 or not 0 < len(hex_part) <= 12:
            raise CheckCondition.invalid_param(base + offset + 4)
        try:
            isid = int(hex_part, 16)
        except ValueError:
            raise CheckCondition.invalid_param(base + offset + 4 + sep) from None
        text = text[:sep]
    if not text or len(text.encode("utf-8")) > MAX_ISCSI_NAME:
        raise CheckCondition.invalid_param(base + offset + 4)
    return TransportId(text, isid), 4 + add_len


def decode_list(buf: bytes, *, base: int = 0, limit: int = 1024) -> list[TransportId]:
    """Decode back-to-back TransportIDs filling `buf` (SPEC_I_PT parameter data), at most `limit` of them."""
    out: list[TransportId] = []
    pos = 0
    while pos < len(buf):
        if len(out) >= limit:
            raise CheckCondition.invalid_param(base + pos)
        tid, n = decode(buf, pos, base=base)
        out.append(tid)
        pos += n
    return out
