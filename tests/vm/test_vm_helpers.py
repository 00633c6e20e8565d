"""Pure helpers of lab.vm (no VM booted): console parsing, kernel command line, module closure, versions."""

from __future__ import annotations

import pytest

from lab.vm.initramfs import PATTERN_SIZE, module_closure, pattern_bytes
from lab.vm.kernel import parse_versions
from lab.vm.labnet import lab_host_address
from lab.vm.qemu import clean_console, kernel_cmdline, parse_results

CONSOLE = (
    "\x1b[2J\x1b[01;01HSeaBIOS (version 1.16)\r\n"
    "[    3.1] random kernel line\r\n"
    "SANLAB boot=3.22\r\n"
    "SANLAB discovered=198.18.0.1:3260,1 iqn.2026-11.org.example:t\r\n"
    "SANLAB discovered=198.18.0.1:3261,1 iqn.2026-11.org.example:t\r\n"
    "GUEST sg_inq: SANLAB fake=1\r\n"
    "SANLAB inq_vendor=LIO-ORG \r\n"
    "SANLAB error=fs: mkfs.ext4: a=b\r\n"
)


def test_parse_results_keeps_every_value_in_order() -> None:
    res = parse_results(CONSOLE)
    assert res["boot"] == ["3.22"]
    assert res["discovered"] == [
        "198.18.0.1:3260,1 iqn.2026-11.org.example:t",
        "198.18.0.1:3261,1 iqn.2026-11.org.example:t",
    ]
    assert res["inq_vendor"] == ["LIO-ORG"]
    assert res["error"] == ["fs: mkfs.ext4: a=b"]  # value = rest of the line after the first '='
    assert "fake" not in res  # only lines that start with SANLAB


def test_clean_console_drops_escapes_and_cr() -> None:
    assert clean_console(b"\x1b[2J\x1b[01;01Hab\r\ncd") == "ab\ncd"


def test_kernel_cmdline_and_its_guards() -> None:
    line = kernel_cmdline({"job": "initiator", "lun": 1})
    assert line == "console=ttyS0 quiet panic=-1 sanlab.job=initiator sanlab.lun=1"
    for bad in ({"Job": "x"}, {"job": "a b"}, {"job": ""}, {"a-b": "x"}):
        with pytest.raises(ValueError):
            kernel_cmdline(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kernel_cmdline({"x": "y" * 2100})


def test_module_closure_follows_dependencies() -> None:
    dep = (
        "kernel/drivers/scsi/iscsi_tcp.ko: kernel/drivers/scsi/libiscsi_tcp.ko kernel/drivers/scsi/libiscsi.ko\n"
        "kernel/drivers/scsi/libiscsi_tcp.ko: kernel/drivers/scsi/libiscsi.ko\n"
        "kernel/drivers/scsi/libiscsi.ko: kernel/drivers/scsi/scsi_mod.ko\n"
        "kernel/drivers/scsi/scsi_mod.ko:\n"
        "kernel/drivers/md/dm-mod.ko:\n"
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n"
    )
    paths, missing = module_closure(dep, ["iscsi_tcp", "dm_mod", "nope"])
    assert paths == sorted(
        [
            "kernel/drivers/scsi/iscsi_tcp.ko",
            "kernel/drivers/scsi/libiscsi_tcp.ko",
            "kernel/drivers/scsi/libiscsi.ko",
            "kernel/drivers/scsi/scsi_mod.ko",
            "kernel/drivers/md/dm-mod.ko",
        ]
    )
    assert missing == ["nope"]


def test_parse_versions_orders_by_abi_number() -> None:
    out = (
        "linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)\n"
        "linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)\n"
        "linux-image-6.1.0-47-cloud-amd64 - Linux 6.1 for x86-64 cloud\n"
        "linux-image-6.1.0-10-amd64 - Linux 6.1 for 64-bit PCs (signed)\n"
    )
    assert parse_versions(out) == ["6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-56-amd64"]


def test_pattern_is_deterministic() -> None:
    data = pattern_bytes()
    assert len(data) == PATTERN_SIZE
    assert data == pattern_bytes()
    assert len(set(data[:4096])) > 200  # pseudo-random, not a fill byte


def test_lab_address_only_in_the_benchmark_range() -> None:
    with pytest.raises(ValueError), lab_host_address("10.0.2.2"):
        pass
