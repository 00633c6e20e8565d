"""lab.bench.tools (command lines, output parsers) and lab.bench.procstat (/proc parsing)."""

from __future__ import annotations

import json
import os

import pytest

from lab.bench import procstat, tools
from lab.bench.tools import ToolError
from lab.bench.workloads import Workload

URL = "iscsi://127.0.0.1:3260/iqn.2026-11.org.example:t/0"

QEMU_OUT = """Sending 20000 read requests, 4096 bytes each, 32 in parallel (starting at offset 0, step size 4096)
Run completed in 1.540 seconds.
"""

# iscsi-perf redraws its progress line with carriage returns
PERF_OUT = (
    "iscsi-perf version 0.1 - (c) 2014-2015 by Peter Lieven\n\nconnected to " + URL + "\n"
    "capacity is 2097152 blocks or 1073741824 byte (1024 MB)\n"
    "performing SEQUENTIAL READ with 32 parallel requests\nFIXED transfer size of 8 blocks (4096 byte)\n"
    "will run for 3 seconds.\n\n"
    "00:00:02 - lba 213288, iops current 26628 (104 MB/s), iops average 26628 (104 MB/s), in_flight 32, busy 0\r"
    "00:00:01 - lba 327864, iops current 13833 (54 MB/s), iops average 20120 (78 MB/s), in_flight 32, busy 0\r"
    "iops average 19361 (75 MB/s)          \n\nfinished.\n"
)


def test_qemu_command_read_and_write() -> None:
    r = tools.qemu_command(Workload("qemu", "read", 4096, 32), URL, 1000)
    assert r[:2] == ["qemu-img", "bench"] and r[-1] == URL
    assert r[r.index("-c") + 1] == "1000" and r[r.index("-d") + 1] == "32" and r[r.index("-s") + 1] == "4096"
    assert "-w" not in r
    w = tools.qemu_command(Workload("qemu", "write", 131072, 1), URL, 10)
    assert "-w" in w and f"--pattern={tools.WRITE_PATTERN}" in w


def test_parse_qemu() -> None:
    w = Workload("qemu", "read", 4096, 32)
    res = tools.parse_qemu(QEMU_OUT, w, 20000)
    assert res.ios == 20000 and res.bytes == 20000 * 4096 and res.seconds == pytest.approx(1.54)
    assert res.iops == pytest.approx(20000 / 1.54)
    assert res.bytes_per_s == pytest.approx(20000 * 4096 / 1.54)


def test_parse_qemu_refuses_other_runs_and_garbage() -> None:
    with pytest.raises(ToolError, match="something else"):
        tools.parse_qemu(QEMU_OUT, Workload("qemu", "write", 4096, 32), 20000)
    with pytest.raises(ToolError, match="something else"):
        tools.parse_qemu(QEMU_OUT, Workload("qemu", "read", 4096, 32), 100)
    with pytest.raises(ToolError, match="no completion"):
        tools.parse_qemu(
            "qemu-img: Could not open 'iscsi://...': Failed to connect", Workload("qemu", "read", 4096, 1), 1
        )


def test_iscsi_perf_command_in_blocks() -> None:
    cmd = tools.iscsi_perf_command(Workload("iscsiperf", "read", 131072, 32), URL, 3)
    assert cmd == ["iscsi-perf", "-t", "3", "-m", "32", "-b", "256", URL]


def test_parse_iscsi_perf_takes_the_final_average() -> None:
    res = tools.parse_iscsi_perf(PERF_OUT, Workload("iscsiperf", "read", 4096, 32), 3)
    assert res.iops == pytest.approx(19361)
    assert res.ios == 19361 * 3 and res.bytes == res.ios * 4096


def test_parse_iscsi_perf_checks_transfer_size() -> None:
    with pytest.raises(ToolError, match="not 8192"):
        tools.parse_iscsi_perf(PERF_OUT, Workload("iscsiperf", "read", 8192, 32), 3)
    with pytest.raises(ToolError, match="no 'iops average'"):
        tools.parse_iscsi_perf("connect failed\n", Workload("iscsiperf", "read", 4096, 32), 3)


def test_parse_iperf3() -> None:
    doc = {"end": {"sum_received": {"bits_per_second": 18.4e9}, "sum_sent": {"bits_per_second": 18.5e9}}}
    assert tools.parse_iperf3(json.dumps(doc)) == pytest.approx(2.3e9)
    with pytest.raises(ToolError):
        tools.parse_iperf3('{"error": "unable to connect to server"}')
    with pytest.raises(ToolError):
        tools.parse_iperf3("not json")


def test_missing_tools_and_hints() -> None:
    hint = tools.install_hint("iperf3")
    assert "setup-host.sh" in hint and "iperf3" in hint
    missing = tools.missing_tools([Workload("qemu", "read", 4096, 1)], iperf3=False)
    assert set(missing) <= {"qemu-img"}


def test_parse_stat_with_spaces_and_parentheses_in_the_name() -> None:
    line = "4242 (tgt (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 5 0 100 1000 200"
    f = procstat.parse_stat(line)
    assert (f.pid, f.ppid, f.session) == (4242, 1, 4242)
    assert (f.utime, f.stime, f.cutime, f.cstime) == (250, 75, 3, 4)


def test_parse_status_kib() -> None:
    text = "Name:\tpython\nVmHWM:\t   53000 kB\nVmRSS:\t   52000 kB\n"
    assert procstat.parse_status_kib(text, "VmHWM") == 53000
    assert procstat.parse_status_kib(text, "VmRSS") == 52000
    assert procstat.parse_status_kib(text, "VmSwap") == 0


def test_usage_of_this_process() -> None:
    u = procstat.usage(os.getpid())
    assert u.processes >= 1
    assert u.rss_peak_kib >= u.rss_kib > 0
    assert u.cpu_s > 0
