"""The 8-byte LUN field (SAM-5 4.7, SPC-4 REPORT LUNS) as an unsigned 64-bit int, first level only.

Encoding follows what initiators expect from REPORT LUNS: peripheral device addressing (method 00b, bus 0)
for LUNs 0-255 and flat space addressing (method 01b) for 256-16383.

Decoding accepts both of those plus peripheral addressing with a non-zero bus number, which is how Linux
(`int_to_scsilun`) sends LUNs above 255: byte 0 = LUN >> 8, byte 1 = LUN & 0xff; with bus b and target/LUN t
the result is b * 256 + t, the same number the flat form gives. Other address methods (logical unit
addressing, extended addressing) and multi-level LUNs decode to numbers at or above 16384 (the Linux
`scsilun_to_int` value), which never match a configured LUN, so the command gets LOGICAL UNIT NOT SUPPORTED
rather than reaching the wrong unit.
"""

from __future__ import annotations

import enum

__all__ = ["MAX_LUN", "AddressMethod", "decode_lun", "encode_lun", "lun_bytes"]

MAX_LUN = 16383  # flat space addressing: 14 bits


class AddressMethod(enum.IntEnum):
    """SAM-5 4.7.3: the two top bits of the first byte of each level."""

    PERIPHERAL = 0
    FLAT = 1
    LOGICAL_UNIT = 2
    EXTENDED = 3


def encode_lun(n: int) -> int:
    """LUN number -> 8-byte LUN field as an int."""
    if 0 <= n <= 0xFF:
        return n << 48
    if 0 < n <= MAX_LUN:
        return ((AddressMethod.FLAT << 14) | n) << 48
    raise ValueError(f"LUN {n} out of range 0..{MAX_LUN}")


def decode_lun(field: int) -> int:
    """8-byte LUN field -> LUN number (see the module docstring for the forms accepted)."""
    field &= 0xFFFF_FFFF_FFFF_FFFF
    first = field >> 48
    method = first >> 14
    if field & 0xFFFF_FFFF_FFFF == 0 and method in (AddressMethod.PERIPHERAL, AddressMethod.FLAT):
        return first & 0x3FFF
    # Anything else: the Linux scsilun_to_int value (levels of 2 bytes, least significant level first).
    value = 0
    for level in range(4):
        value |= ((field >> (48 - 16 * level)) & 0xFFFF) << (16 * level)
    return value


def lun_bytes(n: int) -> bytes:
    """The 8 wire bytes for LUN number `n` (as in a REPORT LUNS list)."""
    return encode_lun(n).to_bytes(8, "big")
