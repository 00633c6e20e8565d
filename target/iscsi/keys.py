"""The iSCSI login/text key table (RFC 7143 section 13, RFC 7144, RFC 7145 iSER keys), kept as data.

Theory of operation: every key the target knows is one `KeyDef` row saying how the key is negotiated
(`KeyKind`: declarative, list, numerical min/max, boolean and/or), what values it admits, its RFC default,
who may send it, when it may be sent (`Use`: LO/IO/ALL/FFP, security or operational stage) and its scope.
`target.iscsi.negotiation` is driven entirely by this table; nothing there special-cases a key's combining
rule. Keys not in the table get "NotUnderstood" (RFC 7143 6.2), and so do vendor keys ("X-" and "X#"
prefixes, 6.1 / 13.12) unless a row exists for them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# RFC 7143 6.1: key names are at most 63 bytes; values at most 255 bytes unless the key says otherwise
# (binary values such as CHAP_C/CHAP_R may be longer; we bound them separately).
MAX_KEY_NAME_LENGTH = 63
MAX_VALUE_LENGTH = 255
MAX_BINARY_VALUE_LENGTH = 8192

NOT_UNDERSTOOD = "NotUnderstood"
IRRELEVANT = "Irrelevant"
REJECT = "Reject"
YES = "Yes"
NO = "No"

MAX_DATA_SEGMENT = 2**24 - 1

_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9.\-+@_#]{1,63}$")


class KeyKind(enum.Enum):
    """How a key's outcome is computed (RFC 7143 6.2.1/6.2.2)."""

    DECLARATIVE = "declarative"
    LIST = "list"
    NUMERICAL_MIN = "numerical-min"
    NUMERICAL_MAX = "numerical-max"
    BOOLEAN_AND = "boolean-and"
    BOOLEAN_OR = "boolean-or"


class ValueType(enum.Enum):
    TEXT = "text"  # names, aliases, addresses: any UTF-8 text value
    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"  # comma-separated list of tokens from `values`
    ENUM = "enum"  # one token from `values` (declarative SessionType)
    BINARY = "binary"  # hex 0x... / base64 0b... (CHAP_C, CHAP_R)


class Use(enum.Enum):
    """RFC 7143 13 "Use": when a key may be sent."""

    LO = "LO"  # leading only: session-wide, only during the login of the leading connection
    IO = "IO"  # initialize only: only during login (of any connection)
    ALL = "ALL"  # during login and in the full feature phase
    FFP = "FFP"  # only in the full feature phase (Text Request)
    SECURITY = "SECURITY"  # security stage only (AuthMethod, CHAP_*)


class Scope(enum.Enum):
    SESSION = "SW"
    CONNECTION = "CO"


class Sender(enum.Flag):
    INITIATOR = enum.auto()
    TARGET = enum.auto()
    BOTH = INITIATOR | TARGET


@dataclass(frozen=True, slots=True)
class KeyDef:
    name: str
    kind: KeyKind
    vtype: ValueType
    default: str | None  # RFC default; None = no default (must be declared when needed)
    use: Use
    scope: Scope
    senders: Sender = Sender.BOTH
    minimum: int = 0
    maximum: int = 0
    values: tuple[str, ...] = ()  # admissible tokens for LIST/ENUM keys
    irrelevant_in_discovery: bool = False
    max_length: int = MAX_VALUE_LENGTH
    #: answered with a fixed value whatever is offered (obsolete marker keys, RFC 7143 13.25)
    fixed_answer: str | None = None
    #: the key needs no answer from the target (declarations; security keys handled by the CHAP exchange)
    no_answer: bool = False

    @property
    def leading_only(self) -> bool:
        return self.use is Use.LO

    def in_range(self, value: int) -> bool:
        return self.minimum <= value <= self.maximum


def _num(
    name: str,
    kind: KeyKind,
    default: int,
    lo: int,
    hi: int,
    use: Use = Use.LO,
    scope: Scope = Scope.SESSION,
    *,
    discovery: bool = True,
    senders: Sender = Sender.BOTH,
) -> KeyDef:
    return KeyDef(
        name,
        kind,
        ValueType.NUMBER,
        str(default),
        use,
        scope,
        senders=senders,
        minimum=lo,
        maximum=hi,
        irrelevant_in_discovery=not discovery,
    )


def _bool(name: str, kind: KeyKind, default: str, *, discovery: bool = False, use: Use = Use.LO) -> KeyDef:
    return KeyDef(
        name, kind, ValueType.BOOLEAN, default, use, Scope.SESSION, irrelevant_in_discovery=not discovery
    )


def _text(name: str, use: Use, senders: Sender, *, no_answer: bool = True) -> KeyDef:
    return KeyDef(
        name,
        KeyKind.DECLARATIVE,
        ValueType.TEXT,
        None,
        use,
        Scope.SESSION,
        senders=senders,
        no_answer=no_answer,
    )


_MIN, _MAX = KeyKind.NUMERICAL_MIN, KeyKind.NUMERICAL_MAX
_AND, _OR = KeyKind.BOOLEAN_AND, KeyKind.BOOLEAN_OR
_I, _T = Sender.INITIATOR, Sender.TARGET

KEY_TABLE: tuple[KeyDef, ...] = (
    # ---- security stage (RFC 7143 12, 13.1 AuthMethod)
    KeyDef(
        "AuthMethod",
        KeyKind.LIST,
        ValueType.LIST,
        "None",
        Use.SECURITY,
        Scope.CONNECTION,
        values=("KRB5", "SPKM1", "SPKM2", "SRP", "CHAP", "None"),
    ),
    *(
        KeyDef(
            name,
            KeyKind.DECLARATIVE,
            ValueType.BINARY if name in ("CHAP_C", "CHAP_R") else ValueType.TEXT,
            None,
            Use.SECURITY,
            Scope.CONNECTION,
            no_answer=True,
            max_length=MAX_BINARY_VALUE_LENGTH,
        )
        for name in ("CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R")
    ),
    # ---- digests (13.1), connection scope, initialize-only
    KeyDef(
        "HeaderDigest",
        KeyKind.LIST,
        ValueType.LIST,
        "None",
        Use.IO,
        Scope.CONNECTION,
        values=("CRC32C", "None"),
    ),
    KeyDef(
        "DataDigest",
        KeyKind.LIST,
        ValueType.LIST,
        "None",
        Use.IO,
        Scope.CONNECTION,
        values=("CRC32C", "None"),
    ),
    # ---- session-wide operational keys
    _num("MaxConnections", _MIN, 1, 1, 65535, discovery=False),
    KeyDef("SendTargets", KeyKind.DECLARATIVE, ValueType.TEXT, None, Use.FFP, Scope.SESSION, senders=_I),
    _text("TargetName", Use.IO, Sender.BOTH),
    _text("InitiatorName", Use.IO, _I),
    _text("TargetAlias", Use.ALL, _T),
    _text("InitiatorAlias", Use.ALL, _I),
    _text("TargetAddress", Use.ALL, _T),
    _num("TargetPortalGroupTag", KeyKind.DECLARATIVE, 1, 0, 65535, Use.IO, senders=_T),
    _bool("InitialR2T", _OR, YES),
    _bool("ImmediateData", _AND, YES),
    # MaxRecvDataSegmentLength is declarative and per direction (13.12): each side declares what it receives.
    KeyDef(
        "MaxRecvDataSegmentLength",
        KeyKind.DECLARATIVE,
        ValueType.NUMBER,
        "8192",
        Use.ALL,
        Scope.CONNECTION,
        minimum=512,
        maximum=MAX_DATA_SEGMENT,
    ),
    _num("MaxBurstLength", _MIN, 262144, 512, MAX_DATA_SEGMENT, discovery=False),
    _num("FirstBurstLength", _MIN, 65536, 512, MAX_DATA_SEGMENT, discovery=False),
    _num("DefaultTime2Wait", _MAX, 2, 0, 3600),
    _num("DefaultTime2Retain", _MIN, 20, 0, 3600),
    _num("MaxOutstandingR2T", _MIN, 1, 1, 65535, discovery=False),
    _bool("DataPDUInOrder", _OR, YES),
    _bool("DataSequenceInOrder", _OR, YES),
    _num("ErrorRecoveryLevel", _MIN, 0, 0, 2),
    KeyDef(
        "SessionType",
        KeyKind.DECLARATIVE,
        ValueType.ENUM,
        "Normal",
        Use.LO,
        Scope.SESSION,
        senders=_I,
        values=("Discovery", "Normal"),
        no_answer=True,
    ),
    # 13.23 TaskReporting: list, LO
    KeyDef(
        "TaskReporting",
        KeyKind.LIST,
        ValueType.LIST,
        "RFC3720",
        Use.LO,
        Scope.SESSION,
        values=("RFC3720", "ResponseFence", "FastAbort"),
        irrelevant_in_discovery=True,
    ),
    # 13.24 / RFC 7144: iSCSIProtocolLevel, numerical min, 0..31
    _num("iSCSIProtocolLevel", _MIN, 1, 0, 31, discovery=False),
    # 13.25: obsolete marker keys. Booleans answer "No" (MAY), the intervals get "Reject" (MUST).
    KeyDef(
        "OFMarker", _AND, ValueType.BOOLEAN, NO, Use.IO, Scope.CONNECTION, fixed_answer=NO, values=(YES, NO)
    ),
    KeyDef(
        "IFMarker", _AND, ValueType.BOOLEAN, NO, Use.IO, Scope.CONNECTION, fixed_answer=NO, values=(YES, NO)
    ),
    KeyDef(
        "OFMarkInt", KeyKind.DECLARATIVE, ValueType.TEXT, None, Use.IO, Scope.CONNECTION, fixed_answer=REJECT
    ),
    KeyDef(
        "IFMarkInt", KeyKind.DECLARATIVE, ValueType.TEXT, None, Use.IO, Scope.CONNECTION, fixed_answer=REJECT
    ),
    # RFC 7145 (iSER) keys as LIO knows them. This target speaks TCP only: RDMAExtensions is always No, and
    # the other iSER keys are irrelevant when RDMAExtensions=No.
    KeyDef(
        "RDMAExtensions",
        _AND,
        ValueType.BOOLEAN,
        NO,
        Use.LO,
        Scope.SESSION,
        fixed_answer=NO,
        values=(YES, NO),
    ),
    KeyDef(
        "InitiatorRecvDataSegmentLength",
        KeyKind.DECLARATIVE,
        ValueType.NUMBER,
        "8192",
        Use.IO,
        Scope.CONNECTION,
        minimum=512,
        maximum=MAX_DATA_SEGMENT,
        fixed_answer=IRRELEVANT,
    ),
    KeyDef(
        "TargetRecvDataSegmentLength",
        KeyKind.DECLARATIVE,
        ValueType.NUMBER,
        "8192",
        Use.IO,
        Scope.CONNECTION,
        minimum=512,
        maximum=MAX_DATA_SEGMENT,
        fixed_answer=IRRELEVANT,
    ),
    KeyDef(
        "MaxOutstandingUnexpectedPDUs",
        _MIN,
        ValueType.NUMBER,
        "0",
        Use.LO,
        Scope.SESSION,
        minimum=0,
        maximum=2**32 - 1,
        fixed_answer=IRRELEVANT,
    ),
)

KEYS: dict[str, KeyDef] = {k.name: k for k in KEY_TABLE}

#: The security-stage keys (RFC 7143 12); anything else in a security-stage PDU is an operational key.
SECURITY_KEYS = frozenset(k.name for k in KEY_TABLE if k.use is Use.SECURITY)
CHAP_KEYS = frozenset(n for n in SECURITY_KEYS if n.startswith("CHAP_"))


def lookup(name: str) -> KeyDef | None:
    """The table row for `name` (key names are case-sensitive, RFC 7143 6.1)."""
    return KEYS.get(name)


def is_vendor_key(name: str) -> bool:
    """X- (unregistered vendor) and X# (IANA-registered) extension keys, RFC 7143 13.12/13.13."""
    return name.startswith(("X-", "X#"))


def valid_key_name(name: str) -> bool:
    """RFC 7143 6.1 key-name syntax: letters, digits, '.', '-', '+', '@', '_' (and '#' after X), <= 63 bytes."""
    return bool(_KEY_NAME_RE.match(name))


def parse_number(value: str) -> int | None:
    """RFC 7143 6.1 numerical value: decimal, or hex with 0x/0X. None for anything else (no sign, no blanks)."""
    if not value or len(value) > 20:
        return None
    if value[:2] in ("0x", "0X"):
        digits = value[2:]
        if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
            return None
        return int(digits, 16)
    if not value.isascii() or not value.isdigit():
        return None
    return int(value)


def parse_boolean(value: str) -> bool | None:
    if value == YES:
        return True
    if value == NO:
        return False
    return None


def split_list(value: str) -> list[str]:
    """A list-of-values: comma separated tokens (RFC 7143 6.2.1), empty tokens dropped."""
    return [v for v in value.split(",") if v]
