"""iSCSI text data: key=value pairs of Login and Text PDUs (RFC 7143 section 6.1).

The data segment holds UTF-8 `key=value` strings, each terminated by a NUL byte. Key names are letters, digits
and `. - + @ _` (plus `#` of the IANA-registered `X#` keys), at most 63 bytes. A value is at most 255 bytes
unless the key says otherwise (the CHAP/SRP binary values run longer); callers pass the bounds. A sequence
of Text/Login PDUs with the C (continue) bit set carries one logical text that may be split anywhere, even
inside a pair (6.1, 11.10.2): `TextAssembler` joins it back, bounded, and `split_text` cuts a long answer.
Duplicate keys are an error the negotiation layer decides on (6.2); `find_duplicates` lists them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

__all__ = [
    "LONG_VALUE_KEYS",
    "MAX_KEY_LENGTH",
    "MAX_LONG_VALUE_LENGTH",
    "MAX_VALUE_LENGTH",
    "TextAssembler",
    "TextError",
    "encode_text",
    "find_duplicates",
    "parse_text",
    "split_text",
    "valid_key_name",
]

MAX_KEY_LENGTH = 63  # 6.1: "A key-name ... MUST NOT exceed 63 bytes"
MAX_VALUE_LENGTH = 255  # 6.1/6.2: simple values are at most 255 bytes unless specified otherwise
MAX_LONG_VALUE_LENGTH = (
    8192  # binary values (CHAP_C, CHAP_R, SRP); also the 8192-byte text a peer must accept
)
# Keys whose values are large binary numbers (RFC 7143 12.1.3 CHAP, RFC 3720 11.1.3 SRP).
LONG_VALUE_KEYS: frozenset[str] = frozenset(
    {"CHAP_C", "CHAP_R", "SRP_A", "SRP_B", "SRP_M", "SRP_HM", "SRP_s"}
)

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-+@_#")


class TextError(Exception):
    """Malformed or oversized text data (answered with a Login Initiator Error or a Reject)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def valid_key_name(key: str) -> bool:
    """RFC 7143 6.1 key-name syntax: 1-63 characters from the allowed set."""
    return 0 < len(key) <= MAX_KEY_LENGTH and all(c in _KEY_CHARS for c in key)


def parse_text(
    data: bytes | bytearray | memoryview,
    *,
    max_value_length: int = MAX_VALUE_LENGTH,
    long_value_keys: Collection[str] = LONG_VALUE_KEYS,
    max_long_value_length: int = MAX_LONG_VALUE_LENGTH,
) -> list[tuple[str, str]]:
    """Parse NUL-terminated key=value pairs in order (duplicates kept; see `find_duplicates`).

    Empty strings between NULs (extra padding NULs some initiators send) are skipped. Raises TextError for a
    missing final NUL, a pair without '=', a bad key name, invalid UTF-8 or a value over its bound.
    """
    raw = bytes(data)
    if not raw:
        return []
    if raw[-1] != 0:
        raise TextError("text data is not NUL-terminated")
    pairs: list[tuple[str, str]] = []
    for item in raw[:-1].split(b"\0"):
        if not item:
            continue
        key_bytes, sep, value_bytes = item.partition(b"=")
        if not sep:
            raise TextError(f"text item without '=': {item[:64]!r}")
        try:
            key = key_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise TextError(f"non-ASCII key name {key_bytes[:64]!r}") from None
        if not valid_key_name(key):
            raise TextError(f"invalid key name {key[:64]!r}", key if len(key) <= MAX_KEY_LENGTH else None)
        limit = max_long_value_length if key in long_value_keys else max_value_length
        if len(value_bytes) > limit:
            raise TextError(f"value of {key} is {len(value_bytes)} bytes, over {limit}", key)
        try:
            value = value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise TextError(f"value of {key} is not UTF-8", key) from None
        pairs.append((key, value))
    return pairs


def encode_text(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Encode pairs as NUL-terminated UTF-8 key=value strings (order kept)."""
    out: list[str] = []
    for key, value in pairs:
        if not valid_key_name(key):
            raise ValueError(f"invalid key name {key!r}")
        if "\0" in value:
            raise ValueError(f"NUL in value of {key}")
        out.append(f"{key}={value}\0")
    return "".join(out).encode("utf-8")


def find_duplicates(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """Keys that occur more than once, in order of their second occurrence."""
    seen: set[str] = set()
    dups: list[str] = []
    for key, _ in pairs:
        if key in seen:
            if key not in dups:
                dups.append(key)
        else:
            seen.add(key)
    return dups


class TextAssembler:
    """Joins the data of a PDU sequence linked by the C (continue) bit, bounded by `max_total` bytes.

    `add(data, cont)` returns None while cont is set and the whole text once a PDU arrives without it.
    """

    def __init__(self, max_total: int = 65536) -> None:
        self.max_total = max_total
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> bool:
        """True while a continued text is being collected."""
        return bool(self._parts)

    @property
    def size(self) -> int:
        return self._size

    def reset(self) -> None:
        self._parts.clear()
        self._size = 0

    def add(self, data: bytes | bytearray | memoryview, cont: bool) -> bytes | None:
        size = self._size + len(data)
        if size > self.max_total:
            self.reset()
            raise TextError(f"continued text longer than {self.max_total} bytes")
        if len(data):
            self._parts.append(bytes(data))
        self._size = size
        if cont:
            if not self._parts:
                # An empty C=1 PDU still opens a sequence; remember it with an empty part.
                self._parts.append(b"")
            return None
        whole = b"".join(self._parts)
        self.reset()
        return whole


def split_text(data: bytes, max_len: int) -> list[bytes]:
    """Cut text data into PDU-sized pieces (the sender sets C=1 on all but the last; 11.10.2).

    Always returns at least one (possibly empty) piece.
    """
    if max_len <= 0:
        raise ValueError("max_len must be positive")
    if not data:
        return [b""]
    return [data[i : i + max_len] for i in range(0, len(data), max_len)]
