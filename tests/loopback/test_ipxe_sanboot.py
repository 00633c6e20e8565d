"""iPXE's iSCSI initiator: `sanboot` from the target's LUN in a TCG VM.

LBA 0 of the LUN holds a 512-byte boot sector that prints a marker (with a per-run nonce) to COM1 and halts.
qemu boots the virtio-net iPXE ROM (-boot n); slirp's DHCP/TFTP hands it a script that runs
`sanboot iscsi:10.0.2.2::PORT:LUN:IQN` (10.0.2.2 is the host's loopback seen from the guest). The marker on
the serial console proves login, READ CAPACITY, READ and the boot hand-over.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from target_process import RunningTarget, TargetSpec, make_backing_file

from lab.vm.qemu import Qemu

pytestmark = pytest.mark.slow

BOOT_TIMEOUT_S = 180
SLIRP_HOST = "10.0.2.2"

# Real-mode boot sector, loaded at 0000:7C00:
#   xor ax,ax / mov ds,ax / cld / mov si,MSG / mov dx,0x3F8
#   next: lodsb / or al,al / jz done / out dx,al / jmp next
#   done: cli / hlt / jmp done
_CODE_HEAD = bytes.fromhex("31C0 8ED8 FC BE")
_CODE_TAIL = bytes.fromhex("BAF803 AC 08C0 7403 EE EBF8 FA F4 EBFC")


def boot_sector(message: bytes) -> bytes:
    """A 512-byte MBR boot sector that writes `message` to COM1 (polling-free `out`), then halts."""
    code_len = len(_CODE_HEAD) + 2 + len(_CODE_TAIL)
    msg_addr = 0x7C00 + code_len
    code = _CODE_HEAD + msg_addr.to_bytes(2, "little") + _CODE_TAIL
    body = code + message + b"\0"
    assert len(body) <= 446, "boot message too long"
    return body.ljust(510, b"\0") + b"\x55\xaa"


def test_boot_sector_layout() -> None:
    sector = boot_sector(b"X")
    assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"
    assert sector[0x17] == ord("X")  # 23 bytes of code, then the message
    assert sector[6:8] == (0x7C17).to_bytes(2, "little")


def test_ipxe_sanboot(
    start_iscsi_target: Callable[..., RunningTarget],
    free_tcp_port: Callable[..., int],
    report_figure: Callable[[str, dict[str, object]], None],
    tmp_path: Path,
) -> None:
    if shutil.which("qemu-system-x86_64") is None or not Path("/usr/lib/ipxe/qemu/efi-virtio.rom").exists():
        pytest.fail("qemu-system-x86 and ipxe-qemu are needed")
    marker = f"SANLAB-SANBOOT-{secrets.token_hex(4)}"
    backing = make_backing_file(tmp_path / "lun0.img", 32 * 1024 * 1024)
    with open(backing, "r+b") as f:
        f.write(boot_sector(f"\r\n{marker}\r\n".encode()))
    spec = TargetSpec(
        backing_file=backing, portals=[("127.0.0.1", free_tcp_port())], lun_size=32 * 1024 * 1024
    )
    target = start_iscsi_target(spec)
    port = target.portals[0][1]

    tftp = tmp_path / "tftp"
    tftp.mkdir()
    (tftp / "boot.ipxe").write_text(
        "#!ipxe\n"
        "echo SANLAB-IPXE-SCRIPT\n"
        f"sanboot iscsi:{SLIRP_HOST}::{port}:{target.lun}:{target.iqn} || echo SANLAB-SANBOOT-FAILED\n"
    )
    netdev = f"user,id=n0,net=10.0.2.0/24,tftp={tftp},bootfile=boot.ipxe"
    args = ["-boot", "n", "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]
    with Qemu(args, tmp_path / "ipxe-console.log", memory_mib=256) as vm:
        script = vm.wait_for("SANLAB-IPXE-SCRIPT", BOOT_TIMEOUT_S)
        t_script = vm.elapsed()
        found = vm.wait_for(rf"{re.escape(marker)}|SANLAB-SANBOOT-FAILED", BOOT_TIMEOUT_S)
        t_done = vm.elapsed()
        console = vm.console()
    tail = "\n".join(console.splitlines()[-40:])
    assert script is not None, f"iPXE never ran the TFTP script\n{tail}"
    assert found is not None, f"no marker within {BOOT_TIMEOUT_S} s\n{tail}"
    assert found.group(0) == marker, f"sanboot failed\n{tail}"
    report_figure(
        f"iPXE sanboot, {target.kind}",
        {
            "script_s": round(t_script, 1),
            "boot_sector_ran_s": round(t_done, 1),
            "san_registered": "Registered SAN device" in console,
        },
    )
