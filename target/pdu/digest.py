"""iSCSI header and data digests: CRC32C (RFC 7143 section 13.1, RFC 3720 appendix B.4).

The digest is the standard CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected, initial value and final
XOR 0xFFFFFFFF). On the wire the 32-bit result goes least significant byte first: RFC 3720 B.4 shows
32 zero bytes -> "aa 36 91 8a" for CRC 0x8A9136AA, and Linux iscsi_tcp / libiscsi copy the little-endian
crc32c result straight into the PDU. The data digest covers the data segment *and* its padding bytes.
"""

from __future__ import annotations

import struct

import crc32c as _crc32c

DIGEST_LENGTH = 4

_LE32 = struct.Struct("<I")

Buffer = bytes | bytearray | memoryview


def crc32c(data: Buffer, value: int = 0) -> int:
    """CRC32C of `data`; pass a previous result as `value` to continue over several buffers."""
    return int(_crc32c.crc32c(data, value))


def digest_bytes(*parts: Buffer) -> bytes:
    """The 4 wire bytes of the digest over the concatenation of `parts`."""
    value = 0
    for part in parts:
        value = _crc32c.crc32c(part, value)
    return _LE32.pack(value)


def digest_value(wire: Buffer) -> int:
    """Decode 4 digest bytes as they appear on the wire into the CRC32C value."""
    return int(_LE32.unpack_from(wire)[0])


def check_digest(wire: Buffer, *parts: Buffer) -> bool:
    """True when the 4 bytes `wire` are the digest of the concatenation of `parts`."""
    value = 0
    for part in parts:
        value = _crc32c.crc32c(part, value)
    return bool(_LE32.unpack_from(wire)[0] == value)
