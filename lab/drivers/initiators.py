"""The compatibility checks, per initiator kind: login (CHAP), inquiry, VPD, capacity, write a pattern,
read it back and verify it, logout. Each kind uses its own initiator's tools on its own node:

    linux-vm      open-iscsi sessions (logged in by the linux_initiator role), sg3-utils, dd O_DIRECT, iscsiadm
    libiscsi      iscsi-ls / iscsi-inq / iscsi-readcapacity16, and `libiscsi_probe` (WRITE(16)/READ(16) via ctypes)
    qemu-driver   qemu-img info / qemu-io write -P / read -P (qemu's libiscsi block driver), CHAP via a secret
    ipxe          qemu -boot n with iPXE: `sanboot` of LBA 0, which holds a boot sector printing a marker

A check that a kind cannot do is `skipped` with the reason; the initiator passes when no check failed.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.drivers.exec import Executor, Result
from lab.topology.model import InitiatorKind, InitiatorNode, Topology

CHECKS = ("login", "inquiry", "vpd", "capacity", "write", "read-verify", "logout")
PATTERN_BYTES = 1 << 20
IPXE_BOOT_TIMEOUT_S = 180
PROBE = Path(__file__).with_name("libiscsi_probe.py")


@dataclass
class Check:
    name: str
    status: str  # passed | failed | skipped
    detail: str
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "seconds": self.seconds}


@dataclass
class InitiatorReport:
    name: str
    kind: str
    release: str | None
    versions: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.status != "failed" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "release": self.release,
            "versions": self.versions,
            "checks": [c.as_dict() for c in self.checks],
            "passed": self.passed,
        }


def _check(name: str, r: Result, ok: bool | None = None, detail: str = "") -> Check:
    passed = r.ok if ok is None else ok
    text = detail or _tail(r.output)
    return Check(name, "passed" if passed else "failed", text, r.seconds)


def _tail(text: str, n: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def pattern_offset(topo: Topology, ini: InitiatorNode) -> int:
    """Each initiator writes its own MiB (from 8 MiB on; LBA 0 is iPXE's boot sector)."""
    return (8 + 2 * [i.name for i in topo.initiators].index(ini.name)) << 20


def _versions(ex: Executor, commands: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, cmd in commands.items():
        r = ex.run(cmd, timeout=20)
        out[key] = r.output.strip().splitlines()[0][:120] if r.ok and r.output.strip() else "unknown"
    return out


# ------------------------------------------------------------------------------------- linux-vm


def linux_vm_checks(topo: Topology, ini: InitiatorNode, ex: Executor) -> InitiatorReport:
    rep = InitiatorReport(ini.name, ini.kind.value, ini.release.value if ini.release else None)
    rep.versions = _versions(
        ex,
        {
            "debian": "cat /etc/debian_version",
            "kernel": "uname -r",
            "open-iscsi": "iscsiadm --version",
            "multipath-tools": "dpkg-query -W -f '${Version}' multipath-tools",
        },
    )
    tgt = topo.target(ini.target)
    r = ex.run("iscsiadm -m session", timeout=20)
    n = sum(1 for line in r.output.splitlines() if tgt.iqn in line)
    rep.checks.append(
        _check("login", r, r.ok and n == len(ini.paths), f"{n}/{len(ini.paths)} sessions (CHAP)")
    )
    # the device: the multipath map over both sessions, or the one disk
    if len(ini.paths) > 1:
        find = 'd=$(multipath -l -v1 | head -1); [ -n "$d" ] && echo /dev/mapper/$d'
    else:
        find = "iscsiadm -m session -P 3 | sed -n 's/.*Attached scsi disk \\([a-z]*\\).*/\\/dev\\/\\1/p' | head -1"
    r = ex.run(find, timeout=20)
    dev = r.output.strip().splitlines()[-1] if r.ok and r.output.strip() else ""
    if not dev.startswith("/dev/"):
        for name in CHECKS[1:]:
            rep.checks.append(Check(name, "failed", f"no block device for the LUN: {_tail(r.output)}"))
        return rep
    d = shlex.quote(dev)
    r = ex.run(f"sg_inq {d}", timeout=30)
    vendor = re.search(r"Vendor identification:\s*(.+)", r.output)
    rep.checks.append(
        _check(
            "inquiry",
            r,
            r.ok and vendor is not None,
            f"{dev}: {vendor[1].strip() if vendor else _tail(r.output)}",
        )
    )
    r = ex.run(f"sg_vpd -p sn {d} && sg_vpd -p di {d}", timeout=30)
    rep.checks.append(_check("vpd", r, r.ok and "designator" in r.output.lower()))
    r = ex.run(f"sg_readcap -l {d}", timeout=30)
    size = re.search(r"Device size:\s*([0-9]+) bytes", r.output)
    expect = next(lu.size for lu in tgt.luns if lu.index == ini.lun)
    rep.checks.append(
        _check("capacity", r, r.ok and size is not None and int(size[1]) == expect, _tail(r.output, 160))
    )
    off = pattern_offset(topo, ini) >> 20
    r = ex.run(
        f"head -c {PATTERN_BYTES} /dev/urandom > /tmp/sanlab-pattern && "
        f"dd if=/tmp/sanlab-pattern of={d} bs=1M seek={off} count=1 oflag=direct conv=fsync 2>&1 && "
        "sha256sum < /tmp/sanlab-pattern",
        timeout=60,
    )
    rep.checks.append(_check("write", r, detail=f"1 MiB at {off} MiB, O_DIRECT: {_tail(r.output, 120)}"))
    r = ex.run(
        f"a=$(dd if={d} bs=1M skip={off} count=1 iflag=direct 2>/dev/null | sha256sum); "
        'b=$(sha256sum < /tmp/sanlab-pattern); echo "$a"; [ "$a" = "$b" ]',
        timeout=60,
    )
    rep.checks.append(_check("read-verify", r, detail=f"sha256 {'matches' if r.ok else 'DIFFERS'}"))
    flush = "multipath -F >/dev/null 2>&1; " if len(ini.paths) > 1 else ""
    r = ex.run(
        f"{flush}iscsiadm -m node -T {shlex.quote(tgt.iqn)} --logout && ! iscsiadm -m session 2>/dev/null | grep -q {shlex.quote(tgt.iqn)}",
        timeout=60,
    )
    rep.checks.append(_check("logout", r))
    return rep


# ------------------------------------------------------------------------------------- libiscsi


def libiscsi_checks(topo: Topology, ini: InitiatorNode, ex: Executor) -> InitiatorReport:
    rep = InitiatorReport(ini.name, ini.kind.value, None)
    rep.versions = _versions(
        ex, {"debian": "cat /etc/debian_version", "libiscsi": "dpkg-query -W -f '${Version}' libiscsi-bin"}
    )
    tgt = topo.target(ini.target)
    (ip, port), lun = topo.portal_addresses(ini)[0], topo.lun_number(ini)
    chap = topo.chap_for(ini)
    cred = f"{chap.userid}%{chap.password}@" if chap else ""
    url = shlex.quote(f"iscsi://{cred}{ip}:{port}/{tgt.iqn}/{lun}")
    me = f"-i {shlex.quote(ini.iqn)}"
    # login: SendTargets lists the target, a normal session logs in with CHAP on this node's path, and (CHAP
    # on) a wrong secret is refused. Not `iscsi-ls -s`: it logs in on EVERY portal SendTargets returns, also
    # on SAN networks this node is not attached to (internal networks drop that traffic: it would hang).
    r = ex.run(f"iscsi-ls {me} {shlex.quote(f'iscsi://{cred}{ip}:{port}')}", timeout=30)
    listed = r.ok and tgt.iqn in r.output
    s = ex.run(f"iscsi-inq {me} {url} >/dev/null && echo SESSION-OK", timeout=30)
    session = s.ok and "SESSION-OK" in s.output
    refused, detail = True, ""
    if chap:
        bad = shlex.quote(f"iscsi://{chap.userid}%{chap.password}-wrong@{ip}:{port}/{tgt.iqn}/{lun}")
        w = ex.run(f"iscsi-inq {me} {bad}", timeout=30)
        refused = not w.ok
        detail = "; a wrong CHAP secret is " + ("refused" if refused else "ACCEPTED")
    rep.checks.append(
        Check(
            "login",
            "passed" if listed and session and refused else "failed",
            f"discovery {'lists' if listed else 'MISSES'} the target; CHAP login on {ip}:{port} "
            f"{'succeeded' if session else 'FAILED: ' + _tail(s.output, 160)}{detail}",
            round(r.seconds + s.seconds, 3),
        )
    )
    r = ex.run(f"iscsi-inq {me} {url}", timeout=30)
    rep.checks.append(
        _check(
            "inquiry",
            r,
            r.ok and re.search(r"vendor(?:_identification)?\s*:\s*\S", r.output, re.IGNORECASE) is not None,
            _tail(r.output, 200),
        )
    )
    r = ex.run(f"iscsi-inq {me} -e 1 -c 0x80 {url} && iscsi-inq {me} -e 1 -c 0x83 {url}", timeout=30)
    rep.checks.append(_check("vpd", r, detail=_tail(r.output, 200)))
    r = ex.run(f"iscsi-readcapacity16 {me} {url}", timeout=30)
    total = re.search(r"Total size:\s*([0-9]+)", r.output)
    expect = next(lu.size for lu in tgt.luns if lu.index == ini.lun)
    rep.checks.append(
        _check("capacity", r, r.ok and total is not None and int(total[1]) == expect, _tail(r.output, 160))
    )
    args = [f"{ip}:{port}", tgt.iqn, str(lun), ini.iqn, str(pattern_offset(topo, ini)), str(PATTERN_BYTES)]
    if chap:
        args += [chap.userid, chap.password]
    r = ex.run("python3 - " + shlex.join(args), timeout=120, stdin=PROBE.read_bytes())
    try:
        res: dict[str, Any] = json.loads(r.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"ok": False, "step": "output", "error": _tail(r.output)}
    wrote = res.get("step") in ("read", "done")
    rep.checks.append(
        Check(
            "write",
            "passed" if wrote else "failed",
            "WRITE(16) 1 MiB" if wrote else str(res.get("error")),
            r.seconds,
        )
    )
    verified = bool(res.get("verified"))
    detail = (
        "READ(16) in a new session, sha256 matches" if verified else str(res.get("error", "data differs"))
    )
    rep.checks.append(Check("read-verify", "passed" if verified else "failed", detail))
    logged_out = bool(res.get("logout")) and bool(res.get("write_logout"))
    rep.checks.append(
        Check(
            "logout",
            "passed" if logged_out else "failed",
            "Logout of both sessions answered" if logged_out else "no logout response",
        )
    )
    return rep


# ------------------------------------------------------------------------------------- qemu-driver


def qemu_driver_checks(topo: Topology, ini: InitiatorNode, ex: Executor) -> InitiatorReport:
    rep = InitiatorReport(ini.name, ini.kind.value, None)
    rep.versions = _versions(ex, {"debian": "cat /etc/debian_version", "qemu": "qemu-img --version"})
    tgt = topo.target(ini.target)
    (ip, port), lun = topo.portal_addresses(ini)[0], topo.lun_number(ini)
    chap = topo.chap_for(ini)
    opts = (
        f"driver=iscsi,transport=tcp,portal={ip}:{port},target={tgt.iqn},lun={lun},initiator-name={ini.iqn}"
    )
    secret = ""
    if chap:
        opts += f",user={chap.userid},password-secret=chap0"
        secret = f"--object secret,id=chap0,data={shlex.quote(chap.password)} "
    base = f"{secret}--image-opts {shlex.quote(opts)}"
    r = ex.run(f"qemu-img info {base}", timeout=60)
    size = re.search(r"virtual size: .*\(([0-9]+) bytes\)", r.output)
    rep.checks.append(_check("login", r, detail="qemu-img opened the LUN (CHAP)" if r.ok else ""))
    implied = "qemu's driver sends INQUIRY (standard and VPD pages) at open; open succeeded"
    rep.checks.append(Check("inquiry", "passed" if r.ok else "failed", implied if r.ok else "open failed"))
    rep.checks.append(Check("vpd", "passed" if r.ok else "failed", implied if r.ok else "open failed"))
    expect = next(lu.size for lu in tgt.luns if lu.index == ini.lun)
    rep.checks.append(
        _check(
            "capacity",
            r,
            r.ok and size is not None and int(size[1]) == expect,
            f"virtual size {size[1] if size else '?'} bytes",
        )
    )
    off, byte = pattern_offset(topo, ini), secrets.randbelow(254) + 1
    r = ex.run(f"qemu-io {base} -c {shlex.quote(f'write -P {byte:#x} {off} {PATTERN_BYTES}')}", timeout=60)
    rep.checks.append(_check("write", r, r.ok and "wrote" in r.output, _tail(r.output, 160)))
    r = ex.run(f"qemu-io {base} -c {shlex.quote(f'read -P {byte:#x} {off} {PATTERN_BYTES}')}", timeout=60)
    ok = r.ok and "read " in r.output and "verification failed" not in r.output
    rep.checks.append(
        _check(
            "read-verify",
            r,
            ok,
            f"pattern {byte:#x} in a new session: {'matches' if ok else _tail(r.output, 160)}",
        )
    )
    rep.checks.append(
        Check(
            "logout",
            "passed" if r.ok else "failed",
            "qemu-io closed its session and exited 0" if r.ok else "qemu-io failed",
        )
    )
    return rep


# ------------------------------------------------------------------------------------- iPXE


def boot_sector(message: bytes) -> bytes:
    """512-byte MBR that prints `message` on COM1 then halts (real mode, loaded at 0000:7C00)."""
    head, tail = bytes.fromhex("31C08ED8FCBE"), bytes.fromhex("BAF803AC08C07403EEEBF8FAF4EBFC")
    code = head + (0x7C00 + len(head) + 2 + len(tail)).to_bytes(2, "little") + tail
    body = code + message + b"\0"
    if len(body) > 446:
        raise ValueError("boot message too long")
    return body.ljust(510, b"\0") + b"\x55\xaa"


def ipxe_checks(
    topo: Topology, ini: InitiatorNode, ex: Executor, target_ex: Executor, lun_file: str
) -> InitiatorReport:
    rep = InitiatorReport(ini.name, ini.kind.value, None)
    rep.versions = _versions(
        ex,
        {
            "debian": "cat /etc/debian_version",
            "ipxe": "dpkg-query -W -f '${Version}' ipxe-qemu",
            "qemu": "qemu-system-x86_64 --version",
        },
    )
    tgt = topo.target(ini.target)
    (ip, port), lun = topo.portal_addresses(ini)[0], topo.lun_number(ini)
    chap = topo.chap_for(ini)
    marker = f"SANLAB-SANBOOT-{secrets.token_hex(4)}"
    # prepare: the boot sector goes to LBA 0 of the LUN's backing file, on the target node
    w = target_ex.run(
        f"dd of={shlex.quote(lun_file)} bs=512 count=1 conv=notrunc,fsync 2>&1",
        timeout=30,
        stdin=boot_sector(f"\r\n{marker}\r\n".encode()),
    )
    if not w.ok:
        rep.checks = [
            Check(c, "failed", f"could not place the boot sector: {_tail(w.output)}") for c in CHECKS
        ]
        return rep
    script = ["#!ipxe", "echo SANLAB-IPXE-SCRIPT", f"set initiator-iqn {ini.iqn}"]
    if chap:
        script += [f"set username {chap.userid}", f"set password {chap.password}"]
    script.append(f"sanboot iscsi:{ip}::{port}:{lun}:{tgt.iqn} || echo SANLAB-SANBOOT-FAILED")
    ex.run(
        "mkdir -p /tmp/ipxe && cat > /tmp/ipxe/boot.ipxe",
        timeout=10,
        stdin=("\n".join(script) + "\n").encode(),
    )
    qemu = (
        "qemu-system-x86_64 -accel tcg -M pc -m 256 -nographic -monitor none -no-reboot -boot n "
        "-serial file:/tmp/ipxe/console.log "
        "-netdev user,id=n0,net=10.0.2.0/24,tftp=/tmp/ipxe,bootfile=boot.ipxe -device virtio-net-pci,netdev=n0"
    )
    t0 = time.monotonic()
    r = ex.run(
        f"rm -f /tmp/ipxe/console.log; {qemu} </dev/null >/tmp/ipxe/qemu.log 2>&1 & q=$!; "
        f"for i in $(seq {IPXE_BOOT_TIMEOUT_S * 5}); do "
        f"grep -aq -e {marker} -e SANLAB-SANBOOT-FAILED /tmp/ipxe/console.log 2>/dev/null && break; sleep 0.2; done; "
        "kill $q 2>/dev/null; wait $q 2>/dev/null; tr -d '\\r' < /tmp/ipxe/console.log | sed 's/\\x1b\\[[0-9;?]*[a-zA-Z]//g'",
        timeout=IPXE_BOOT_TIMEOUT_S + 30,
    )
    seconds = round(time.monotonic() - t0, 3)
    console = r.output
    booted = marker in console
    registered = "Registered SAN device" in console or booted
    rep.checks.append(
        Check(
            "login",
            "passed" if registered else "failed",
            "sanboot registered the SAN device (CHAP)" if registered else _tail(console),
            seconds,
        )
    )
    rep.checks.append(Check("inquiry", "skipped", "iPXE's SCSI layer does not issue INQUIRY"))
    rep.checks.append(Check("vpd", "skipped", "iPXE does not read VPD pages"))
    rep.checks.append(
        Check(
            "capacity",
            "passed" if registered else "failed",
            "READ CAPACITY answered (iPXE needs it to register the device)"
            if registered
            else "device not registered",
        )
    )
    rep.checks.append(
        Check("write", "skipped", "sanboot only reads; the boot sector was written on the target")
    )
    rep.checks.append(
        Check(
            "read-verify",
            "passed" if booted else "failed",
            f"LBA 0 booted and printed {marker}" if booted else "marker not seen",
        )
    )
    rep.checks.append(Check("logout", "skipped", "the session ends with the VM (boot hand-over)"))
    return rep


CheckFn = Callable[..., InitiatorReport]
BY_KIND: dict[InitiatorKind, CheckFn] = {
    InitiatorKind.LINUX_VM: linux_vm_checks,
    InitiatorKind.LIBISCSI: libiscsi_checks,
    InitiatorKind.QEMU_DRIVER: qemu_driver_checks,
    InitiatorKind.IPXE: ipxe_checks,
}
