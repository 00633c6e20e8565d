"""qemu's own iSCSI block driver (libiscsi inside qemu-img / qemu-io) against the target.

`qemu-img info` on the iscsi:// URL, `qemu-io` writes patterns and reads them back with -P verification
(also checked in the backing file), and short `qemu-img bench` read and write runs that must finish cleanly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from target_process import RunningTarget, TargetSpec

pytestmark = pytest.mark.slow

LUN_SIZE = 64 * 1024 * 1024
CMD_TIMEOUT_S = 120


def _run(cmd: list[str]) -> tuple[str, float]:
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CMD_TIMEOUT_S, check=False)
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{out}"
    return out, elapsed


@pytest.fixture
def target(
    start_iscsi_target: Callable[..., RunningTarget], free_tcp_port: Callable[..., int], tmp_path: Path
) -> RunningTarget:
    for tool in ("qemu-img", "qemu-io"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed (Debian packages qemu-utils, qemu-block-extra)")
    spec = TargetSpec(
        backing_file=tmp_path / "lun0.img", portals=[("127.0.0.1", free_tcp_port())], lun_size=LUN_SIZE
    )
    return start_iscsi_target(spec)


def test_qemu_img_info(target: RunningTarget) -> None:
    out, _ = _run(["qemu-img", "info", "--output=human", target.url()])
    assert re.search(r"file format:\s*raw", out), out
    m = re.search(r"virtual size:.*\((\d+) bytes\)", out)
    assert m is not None, out
    assert int(m.group(1)) == LUN_SIZE


def test_qemu_io_pattern_write_read(target: RunningTarget) -> None:
    url = target.url()
    writes = [
        (0xA5, 1024 * 1024, 64 * 1024),
        (0x3C, 5 * 1024 * 1024 + 512, 512),
        (0x7E, LUN_SIZE - 256 * 1024, 256 * 1024),
    ]
    cmds: list[str] = []
    for pattern, offset, length in writes:
        cmds += ["-c", f"write -P 0x{pattern:02x} {offset} {length}"]
    for pattern, offset, length in writes:
        cmds += ["-c", f"read -P 0x{pattern:02x} {offset} {length}"]
    cmds += ["-c", "flush"]
    out, _ = _run(["qemu-io", "-f", "raw", *cmds, url])
    assert "Pattern verification failed" not in out, out
    assert out.count("read ") >= len(writes), out
    # a fresh qemu-io process (new session) sees the same data
    out, _ = _run(["qemu-io", "-f", "raw", "-c", f"read -P 0xa5 {1024 * 1024} {64 * 1024}", url])
    assert "Pattern verification failed" not in out, out
    # and it is in the backing file
    with open(target.backing_file, "rb") as f:
        for pattern, offset, length in writes:
            f.seek(offset)
            assert f.read(length) == bytes([pattern]) * length, f"pattern 0x{pattern:02x} at {offset}"


def test_qemu_img_bench(
    target: RunningTarget, report_figure: Callable[[str, dict[str, object]], None]
) -> None:
    figures: dict[str, object] = {}
    runs: tuple[tuple[str, list[str], int], ...] = (
        ("read_4k", [], 4096),
        ("write_4k", ["-w"], 4096),
        ("read_64k", [], 65536),
        ("write_64k", ["-w"], 65536),
    )
    for label, extra, size in runs:
        cmd = [
            "qemu-img",
            "bench",
            *extra,
            "-c",
            "2000",
            "-d",
            "8",
            "-s",
            str(size),
            "-t",
            "none",
            "-f",
            "raw",
        ]
        out, elapsed = _run([*cmd, target.url()])
        m = re.search(r"Run completed in ([0-9.]+) seconds", out)
        assert m is not None, out
        seconds = float(m.group(1))
        figures[f"{label}_s"] = seconds
        figures[f"{label}_iops"] = round(2000 / seconds) if seconds > 0 else "inf"
        assert elapsed < CMD_TIMEOUT_S
    report_figure(f"qemu-img bench (2000 ops, QD8), {target.kind}", figures)
