"""Boot a qemu VM under TCG and read its results from the serial console.

KVM hangs on the lab machines, so every VM runs `-accel tcg`. The guest's console goes to a file; result
lines have the form `SANLAB <key>=<value>` (value = rest of the line). `Qemu` is a context manager that always
kills the VM on exit; `run_vm()` boots a kernel + initramfs, waits (bounded) for it to power off and returns
the parsed results.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

RESULT_RE = re.compile(r"^SANLAB ([A-Za-z0-9_.-]+)=(.*)$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1bc")
_POLL_S = 0.1


class QemuError(RuntimeError):
    """qemu is missing or could not start."""


def clean_console(raw: bytes | str) -> str:
    """Console text without CRs and ANSI escapes (firmware and iPXE draw with them)."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return _ANSI_RE.sub("", text).replace("\r", "")


def parse_results(console: str) -> dict[str, list[str]]:
    """Every `SANLAB key=value` line, values per key in order of appearance."""
    results: dict[str, list[str]] = {}
    for line in clean_console(console).splitlines():
        m = RESULT_RE.match(line.strip())
        if m:
            results.setdefault(m.group(1), []).append(m.group(2).strip())
    return results


@dataclass
class VmResult:
    console: str  # cleaned console text
    console_path: Path
    elapsed_s: float
    returncode: int | None  # None if qemu had to be killed
    timed_out: bool
    values: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        """The last value reported for `key`."""
        vals = self.values.get(key)
        return vals[-1] if vals else default

    def all(self, key: str) -> list[str]:
        return list(self.values.get(key, []))

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise QemuError("qemu-system-x86_64 not found (Debian package qemu-system-x86)")
    return path


class Qemu:
    """One qemu-system-x86_64 process (TCG, no display, console to `console_path`, monitor off)."""

    def __init__(self, args: Sequence[str], console_path: Path, *, memory_mib: int = 512) -> None:
        self.console_path = console_path
        self.cmd = [
            qemu_binary(),
            "-accel", "tcg",
            "-M", "pc",
            "-cpu", "max",
            "-m", str(memory_mib),
            "-nographic",
            "-serial", f"file:{console_path}",
            "-monitor", "none",
            "-no-reboot",
            *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.stderr_path = console_path.with_suffix(".qemu-stderr")

    def start(self) -> Qemu:
        self.console_path.parent.mkdir(parents=True, exist_ok=True)
        self.console_path.write_bytes(b"")
        self.started_at = time.monotonic()
        with open(self.stderr_path, "wb") as err:
            try:
                self.proc = subprocess.Popen(
                    self.cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT
                )
            except OSError as exc:
                raise QemuError(f"cannot start qemu: {exc}") from exc
        return self

    def console(self) -> str:
        try:
            return clean_console(self.console_path.read_bytes())
        except FileNotFoundError:
            return ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, pattern: str | re.Pattern[str], timeout_s: float) -> re.Match[str] | None:
        """Wait until `pattern` appears in the console (or qemu exits, or the timeout passes)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout_s
        while True:
            m = rx.search(self.console())
            if m or not self.running() or time.monotonic() >= deadline:
                return m
            time.sleep(_POLL_S)

    def wait_exit(self, timeout_s: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a killed process always goes
                self.proc.wait(timeout=10)

    def qemu_stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Qemu:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def kernel_cmdline(params: dict[str, str | int], *, base: str = "console=ttyS0 quiet panic=-1") -> str:
    """The kernel command line: `base` plus one `sanlab.<key>=<value>` word per param (see guest_init.sh)."""
    words = [base]
    for key, value in params.items():
        text = str(value)
        if not re.fullmatch(r"[a-z0-9_]+", key) or any(c.isspace() for c in text) or not text:
            raise ValueError(
                f"bad guest parameter {key}={text!r}: keys [a-z0-9_], values non-empty, no spaces"
            )
        words.append(f"sanlab.{key}={text}")
    line = " ".join(words)
    if len(line) >= 2048:  # x86 COMMAND_LINE_SIZE
        raise ValueError("kernel command line too long")
    return line


def run_vm(
    kernel: Path,
    initrd: Path,
    params: dict[str, str | int],
    console_path: Path,
    *,
    timeout_s: float = 300,
    memory_mib: int = 512,
    extra_args: Sequence[str] = (),
    netdev: str = "user,id=n0,net=10.0.2.0/24",
) -> VmResult:
    """Boot `kernel` + `initrd` with a virtio NIC on qemu's user network, wait for the guest to power off
    (at most `timeout_s`, then kill it) and parse its `SANLAB` lines."""
    args = [
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", kernel_cmdline(params),
        "-netdev", netdev,
        "-device", "virtio-net-pci,netdev=n0",
        *extra_args,
    ]  # fmt: skip
    vm = Qemu(args, console_path, memory_mib=memory_mib)
    with vm:
        rc = vm.wait_exit(timeout_s)
        elapsed = vm.elapsed()
    console = vm.console()
    if rc is None:
        console += "\n[host] qemu killed after timeout\n"
    elif rc != 0:
        console += f"\n[host] qemu exited {rc}: {vm.qemu_stderr()[-2000:]}\n"
    return VmResult(
        console=console,
        console_path=console_path,
        elapsed_s=elapsed,
        returncode=rc,
        timed_out=rc is None,
        values=parse_results(console),
    )
