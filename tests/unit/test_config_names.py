"""iSCSI name, unit serial and storage object name validation (RFC 7143 4.2.7, RFC 3722, SPC-4 7.8.17)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target.config import names
from target.config.names import InvalidNameError, NameType


@pytest.mark.parametrize(
    "name",
    [
        "iqn.2026-11.org.example:sanlab",
        "iqn.2003-01.org.linux-iscsi.host.x8664:sn.75fcaf1cfc33",
        "iqn.1994-05.com.redhat:3731c7982838",
        "iqn.1991-05.com.microsoft:win-host.corp.example.com",
        "iqn.2001-04.com.example",  # the unique part is optional
        "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
        "iqn.2026-11.org.example:bücher",  # non-ASCII lower-case letters survive stringprep
        "eui.02004567A425678D",
        "eui.02004567a425678d",
        "naa.52004567BA64678D",
        "naa.62004567BA64678D0123456789ABCDEF",
    ],
)
def test_valid_names(name):
    assert names.check_iscsi_name(name) is None
    assert names.validate_name(name) in NameType


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "may not be empty"),
        ("IQN.2026-11.org.example:x", "upper-case"),
        ("iqn.2026-11.org.example:Disk", "upper-case letters; iSCSI names are lower case"),
        ("iqn.2026-13.org.example:x", "month 13"),
        ("iqn.26-11.org.example:x", "not of the form"),
        ("iqn.2026-11:x", "not of the form"),
        ("iqn.2026-11.org..example:x", "naming authority"),
        ("iqn.2026-11.org.ex_ample:x", "naming authority"),
        ("iqn.2026-11.org.example:a b", "' '"),
        ("iqn.2026-11.org.example:a/b", "'/'"),
        ("eui.0200", "16 hexadecimal digits"),
        ("eui.02004567A425678G", "16 hexadecimal digits"),
        ("naa.5200456", "16 or 32"),
        ("naa.52004567BA64678D01", "16 or 32"),
        ("wwn.1234", "not an iSCSI name"),
        ("iqn.2026-11.org.example:" + "x" * 200, "longer than 223 bytes"),
    ],
)
def test_invalid_names(name, fragment):
    problem = names.check_iscsi_name(name)
    assert problem is not None and fragment in problem
    with pytest.raises(InvalidNameError):
        names.validate_name(name)


def test_length_limit_counts_utf8_bytes():
    base = "iqn.2026-11.org.example:"
    fits = base + "a" * (223 - len(base))
    assert names.check_iscsi_name(fits) is None
    # 'ü' is 2 bytes in UTF-8: same character count, one byte too many
    over = base + "ü" + "a" * (222 - len(base))
    assert len(over) == 223 and "223 bytes" in (names.check_iscsi_name(over) or "")


def test_name_type():
    assert names.name_type("eui.02004567A425678D") is NameType.EUI
    assert names.name_type("naa.52004567BA64678D") is NameType.NAA
    assert names.name_type("iqn.2026-11.org.example") is NameType.IQN


def test_initiator_names_reject_wildcards():
    assert "wildcards" in (names.check_initiator_name("iqn.1994-05.com.redhat:*") or "")
    assert names.check_initiator_name("iqn.1994-05.com.redhat:client") is None
    with pytest.raises(InvalidNameError):
        names.validate_initiator_name("nope")


@pytest.mark.parametrize("serial", ["", "8c1f6e2a-4b7d-4f1e-9a3c-5d2e7b9f0a11", "SN123", "x" * 254])
def test_valid_unit_serials(serial):
    assert names.check_unit_serial(serial) is None


@pytest.mark.parametrize("serial", ["has space", "tab\t", "x" * 255, "ünï"])
def test_invalid_unit_serials(serial):
    assert names.check_unit_serial(serial) is not None
    with pytest.raises(InvalidNameError):
        names.validate_unit_serial(serial)


@pytest.mark.parametrize("name", ["disk0", "vol-01", "a.b_c:d+e", "X" * 64])
def test_valid_storage_object_names(name):
    assert names.check_storage_object_name(name) is None


@pytest.mark.parametrize("name", ["", "a/b", "../etc", ".hidden", "-x", "a b", "x" * 65, 5])
def test_invalid_storage_object_names(name):
    assert names.check_storage_object_name(name) is not None


def test_alias_and_tg_pt_gp():
    assert names.check_alias("LIO Target") is None
    assert names.check_alias("a\nb") is not None
    assert names.check_alias("x" * 256) is not None
    assert names.check_tg_pt_gp_name("default_tg_pt_gp") is None
    assert names.check_tg_pt_gp_name("bad name") is not None


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@given(
    year=st.integers(1970, 9999),
    month=st.integers(1, 12),
    labels=st.lists(_label, min_size=1, max_size=4),
    rest=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.:", max_size=40),
)
def test_generated_iqn_names_are_valid(year, month, labels, rest):
    name = f"iqn.{year:04d}-{month:02d}.{'.'.join(labels)}" + (f":{rest}" if rest else "")
    assert names.check_iscsi_name(name) is None


@given(st.text(max_size=300))
def test_checker_never_raises(text):
    result = names.check_iscsi_name(text)
    assert result is None or isinstance(result, str)
    if result is None:
        assert len(text.encode()) <= 223
