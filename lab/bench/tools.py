"""Load generators: command lines and output parsers (pure), plus bounded runners.

- ``qemu-img bench -f raw -t none -c COUNT -d QD -s BS [-w --pattern=P] iscsi://...``: sequential, wraps at
  the end of the LUN; prints "Run completed in X seconds." -> IOPS = COUNT / X.
- ``iscsi-perf -t SECONDS -m QD -b BLOCKS iscsi://...``: sequential reads for SECONDS; prints (with ``\\r``)
  progress lines and a final "iops average N (M MB/s)" -> IOPS = N, I/Os ~ N x SECONDS.
- ``iperf3 -c 127.0.0.1 -t S -J`` against ``iperf3 -s -1``: one TCP stream on loopback, the physical limit.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from lab.bench.workloads import Workload

#: pattern byte qemu-img bench writes (non-zero, so writes keep the LUN's data non-trivial)
WRITE_PATTERN = 0x5A
BLOCK_SIZE = 512
_QEMU_DONE_RE = re.compile(r"Run completed in ([0-9.]+) seconds")
_QEMU_SENT_RE = re.compile(r"Sending (\d+) (read|write) requests, (\d+) bytes each, (\d+) in parallel")
_PERF_AVG_RE = re.compile(r"iops average (\d+) \(")
_PERF_XFER_RE = re.compile(r"transfer size of (\d+) blocks \((\d+) byte\)")


class ToolError(RuntimeError):
    """A load generator failed or printed something unparsable; the message carries its output tail."""


@dataclass(frozen=True)
class ToolResult:
    ios: int
    seconds: float  # the load generator's own measure of the run
    bytes: int

    @property
    def iops(self) -> float:
        return self.ios / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


def missing_tools(workloads: list[Workload], iperf3: bool) -> list[str]:
    need = {"qemu-img" if w.tool == "qemu" else "iscsi-perf" for w in workloads}
    if iperf3:
        need.add("iperf3")
    return sorted(t for t in need if shutil.which(t) is None)


def install_hint(tool: str) -> str:
    package = {"qemu-img": "qemu-utils qemu-block-extra", "iscsi-perf": "libiscsi-bin", "iperf3": "iperf3"}
    return f"{tool} is not installed: run scripts/setup-host.sh (Debian package {package.get(tool, tool)})"


def qemu_command(w: Workload, url: str, count: int) -> list[str]:
    cmd = ["qemu-img", "bench", "-f", "raw", "-t", "none", "-c", str(count), "-d", str(w.qd), "-s", str(w.bs)]
    if w.op == "write":
        cmd += ["-w", f"--pattern={WRITE_PATTERN}"]
    return [*cmd, url]


def parse_qemu(output: str, w: Workload, count: int) -> ToolResult:
    done = _QEMU_DONE_RE.search(output)
    if not done:
        raise ToolError(f"qemu-img bench printed no completion line:\n{output[-2000:]}")
    sent = _QEMU_SENT_RE.search(output)
    if sent and (int(sent.group(1)), sent.group(2), int(sent.group(3))) != (count, w.op, w.bs):
        raise ToolError(f"qemu-img bench ran something else than asked ({w.name}, {count}): {sent.group(0)}")
    seconds = float(done.group(1))
    if seconds <= 0:
        raise ToolError(f"qemu-img bench reported {seconds} s")
    return ToolResult(ios=count, seconds=seconds, bytes=count * w.bs)


def iscsi_perf_command(w: Workload, url: str, seconds: int) -> list[str]:
    return ["iscsi-perf", "-t", str(seconds), "-m", str(w.qd), "-b", str(w.bs // BLOCK_SIZE), url]


def parse_iscsi_perf(output: str, w: Workload, seconds: int) -> ToolResult:
    text = output.replace("\r", "\n")
    xfer = _PERF_XFER_RE.search(text)
    if xfer and int(xfer.group(2)) != w.bs:
        raise ToolError(f"iscsi-perf transferred {xfer.group(2)} bytes per request, not {w.bs} (block size?)")
    averages = _PERF_AVG_RE.findall(text)
    if not averages:
        raise ToolError(f"iscsi-perf printed no 'iops average':\n{text[-2000:]}")
    iops = int(averages[-1])
    ios = iops * seconds
    return ToolResult(ios=ios, seconds=float(seconds), bytes=ios * w.bs)


def parse_iperf3(output: str) -> float:
    """Bytes per second received, from ``iperf3 -J`` output."""
    try:
        doc = json.loads(output)
        bps = float(doc["end"]["sum_received"]["bits_per_second"])
    except (ValueError, KeyError, TypeError) as e:
        raise ToolError(f"cannot read iperf3 JSON ({e}):\n{output[-1000:]}") from None
    if bps <= 0:
        raise ToolError("iperf3 measured nothing")
    return bps / 8


def run_tool(cmd: list[str], timeout_s: float) -> str:
    """Run a load generator (bounded); its stdout+stderr, or ToolError on failure/timeout."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raw = e.stdout or b""
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        raise ToolError(f"{' '.join(cmd)} still running after {timeout_s:.0f} s:\n{text[-1500:]}") from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-2000:]}")
    return out


def iperf3_loopback(port: int, seconds: int = 3, host: str = "127.0.0.1") -> float:
    """One iperf3 stream over loopback for `seconds` (bounded); bytes per second."""
    if shutil.which("iperf3") is None:
        raise ToolError(install_hint("iperf3"))
    server = subprocess.Popen(
        ["iperf3", "-s", "-1", "-B", host, "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = ""
        for _attempt in range(20):  # the server needs a moment to listen
            time.sleep(0.1)
            try:
                out = run_tool(
                    ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J"], timeout_s=seconds + 20
                )
                break
            except ToolError as e:
                if "Connection refused" not in str(e) and "unable to connect" not in str(e):
                    raise
        return parse_iperf3(out)
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
