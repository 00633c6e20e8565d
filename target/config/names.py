"""Validation of the names a configuration holds.

iSCSI names (RFC 7143 section 4.2.7, formerly RFC 3720 3.2.6): three formats.

- ``iqn.`` type designator: ``iqn.YYYY-MM.<reversed domain name>[:<unique string>]``. The date is the year and
  month the naming authority owned the domain; the authority part is a reversed DNS name of ASCII labels.
- ``eui.`` followed by 16 hexadecimal digits (an IEEE EUI-64, RFC 7143 4.2.7.4).
- ``naa.`` followed by 16 or 32 hexadecimal digits (a T11 NAA identifier, RFC 3980).

Names are at most 223 bytes of UTF-8 (RFC 7143 4.2.7.1). They pass through the iSCSI stringprep profile
(RFC 3722), which maps case to lower case; so a configured ``iqn.`` name must already be in lower case, or two
names differing only by case would silently be the same node. The characters that survive the profile and
that we accept: ASCII letters (lower case), digits, ``-``, ``.``, ``:``, and non-ASCII letters/digits that are
unchanged by NFKC and case folding. The hexadecimal digits of ``eui.``/``naa.`` names are case-insensitive.

Every check has two forms: ``check_*(value) -> str | None`` returns a problem description (for collecting all
errors at once), ``validate_*(value)`` raises :class:`InvalidNameError`.
"""

from __future__ import annotations

import enum
import re
import unicodedata

MAX_ISCSI_NAME_BYTES = 223
#: SPC-4 7.8.17 Unit Serial Number VPD page: LIO keeps at most INQUIRY_VPD_SERIAL_LEN (254) bytes
MAX_UNIT_SERIAL_LEN = 254
MAX_STORAGE_OBJECT_NAME_LEN = 64
#: LIO's MAX_USER_LEN / MAX_PASS_LEN are 256 including the terminating NUL
MAX_CHAP_FIELD_LEN = 255
#: TargetAlias / InitiatorAlias: UTF-8 text of at most 255 bytes (RFC 7143 13.6/13.7, text value limit)
MAX_ALIAS_BYTES = 255


class InvalidNameError(ValueError):
    """A name does not follow its format; the message says why."""


class NameType(enum.Enum):
    IQN = "iqn"
    EUI = "eui"
    NAA = "naa"


_IQN_RE = re.compile(r"^iqn\.(?P<year>[0-9]{4})-(?P<month>[0-9]{2})\.(?P<authority>[^:]+)(?::(?P<rest>.*))?$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_SO_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")
_TG_PT_GP_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")


def _bad_char(ch: str) -> bool:
    """True if `ch` may not appear in the unique string of an iqn. name (after stringprep)."""
    if ch.isascii():
        return not (ch.islower() or ch.isdigit() or ch in "-.:")
    if unicodedata.category(ch)[0] not in "LN":
        return True
    # stringprep maps with NFKC and case folding; a character those change is not in canonical form
    return unicodedata.normalize("NFKC", ch).casefold() != ch


def check_iscsi_name(name: object) -> str | None:
    """Problem with an iSCSI node name (target or initiator), or None if it is valid."""
    if not isinstance(name, str):
        return f"{name!r} is not a string"
    if not name:
        return "an iSCSI name may not be empty"
    if len(name.encode("utf-8")) > MAX_ISCSI_NAME_BYTES:
        return f"{_short(name)} is longer than {MAX_ISCSI_NAME_BYTES} bytes (RFC 7143 4.2.7.1)"
    prefix = name[:4].lower()
    if prefix == "iqn.":
        return _check_iqn(name)
    if prefix == "eui.":
        digits = name[4:]
        if len(digits) != 16 or not _HEX_RE.match(digits):
            return f"{name!r}: an eui. name is 'eui.' followed by 16 hexadecimal digits"
        if name[:4] != "eui.":
            return f"{name!r}: the type designator must be lower case 'eui.'"
        return None
    if prefix == "naa.":
        digits = name[4:]
        if len(digits) not in (16, 32) or not _HEX_RE.match(digits):
            return f"{name!r}: an naa. name is 'naa.' followed by 16 or 32 hexadecimal digits"
        if name[:4] != "naa.":
            return f"{name!r}: the type designator must be lower case 'naa.'"
        return None
    return (
        f"{_short(name)} is not an iSCSI name (expected iqn.YYYY-MM.domain[:id], eui.<16 hex> or naa.<hex>)"
    )


def _check_iqn(name: str) -> str | None:
    if name != name.lower():
        return f"{name!r} has upper-case letters; iSCSI names are lower case (RFC 3722): {name.lower()!r}"
    m = _IQN_RE.match(name)
    if m is None:
        return f"{_short(name)} is not of the form iqn.YYYY-MM.reversed.domain[:identifier]"
    month = int(m["month"])
    if not 1 <= month <= 12:
        return f"{name!r}: month {m['month']} in the date is not 01-12"
    for label in m["authority"].split("."):
        if not _LABEL_RE.match(label):
            return (
                f"{name!r}: naming authority {m['authority']!r} is not a reversed domain name "
                "(labels of a-z, 0-9 and '-')"
            )
    rest = m["rest"]
    if rest is not None:
        bad = sorted({ch for ch in rest if _bad_char(ch)})
        if bad:
            shown = ", ".join(repr(ch) for ch in bad)
            return f"{name!r}: character(s) {shown} are not allowed in an iSCSI name"
    return None


def name_type(name: str) -> NameType:
    """The format of a valid name."""
    validate_name(name)
    return NameType(name[:3])


def validate_name(name: str) -> NameType:
    """Raise InvalidNameError unless `name` is a valid iSCSI name; return its format."""
    problem = check_iscsi_name(name)
    if problem is not None:
        raise InvalidNameError(problem)
    return NameType(name[:3])


def check_initiator_name(name: object) -> str | None:
    """Initiator names in ACLs are iSCSI names; LIO's ACLs match exactly (no wildcards)."""
    if isinstance(name, str) and any(ch in name for ch in "*?["):
        return f"{name!r}: wildcards are not supported in ACL initiator names"
    return check_iscsi_name(name)


def validate_initiator_name(name: str) -> None:
    problem = check_initiator_name(name)
    if problem is not None:
        raise InvalidNameError(problem)


def check_unit_serial(serial: object) -> str | None:
    """A storage object's T10 unit serial (LIO's 'wwn', VPD page 80h): printable ASCII, 1-254 bytes.

    SPC-4 7.8.17: the PRODUCT SERIAL NUMBER field holds ASCII data (20h-7Eh). Empty means "derive one".
    """
    if not isinstance(serial, str):
        return f"{serial!r} is not a string"
    if serial == "":
        return None
    if len(serial) > MAX_UNIT_SERIAL_LEN:
        return f"unit serial is longer than {MAX_UNIT_SERIAL_LEN} characters"
    if not all(0x21 <= ord(ch) <= 0x7E for ch in serial):
        return f"{serial!r}: a unit serial is printable ASCII without spaces (SPC-4 7.8.17)"
    return None


def validate_unit_serial(serial: str) -> None:
    problem = check_unit_serial(serial)
    if problem is not None:
        raise InvalidNameError(problem)


def check_storage_object_name(name: object) -> str | None:
    """Storage object names become paths ('fileio/disk0') and file names (APTPL state): keep them simple."""
    if not isinstance(name, str):
        return f"{name!r} is not a string"
    if not name:
        return "a storage object name may not be empty"
    if len(name) > MAX_STORAGE_OBJECT_NAME_LEN:
        return f"{_short(name)} is longer than {MAX_STORAGE_OBJECT_NAME_LEN} characters"
    if not _SO_NAME_RE.match(name):
        return (
            f"{name!r}: a storage object name is letters, digits and '_.:+-' (not starting with '.' or '-')"
        )
    return None


def check_tg_pt_gp_name(name: object) -> str | None:
    """ALUA target port group names (LIO: default_tg_pt_gp, or created names)."""
    if not isinstance(name, str) or not _TG_PT_GP_RE.match(name):
        return f"{name!r} is not a valid ALUA target port group name (letters, digits, '_.:-', at most 64)"
    return None


def check_alias(alias: object) -> str | None:
    if not isinstance(alias, str):
        return f"{alias!r} is not a string"
    if len(alias.encode("utf-8")) > MAX_ALIAS_BYTES:
        return f"alias is longer than {MAX_ALIAS_BYTES} bytes"
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in alias):
        return "an alias may not contain control characters"
    return None


def _short(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")
