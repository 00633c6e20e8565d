"""Drill workloads (lab/workloads/): parsers of fio, qemu-img bench and iscsi-perf output, the clock map, the
device resolution and the registry. The fio samples are trimmed from real fio 3.33 runs (Debian 12); the
iscsi-perf and qemu-img lines from real runs against the loopback target."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from lab.drivers.exec import Result
from lab.topology.model import (
    Chap,
    InitiatorKind,
    InitiatorNode,
    Lun,
    Network,
    NetworkRole,
    TargetKind,
    TargetNode,
    Topology,
)
from lab.workloads import (
    WORKLOAD_KINDS,
    ClockMap,
    ClockSample,
    WorkloadError,
    WorkloadResult,
    WorkloadSpec,
    container_device,
    make_workload,
    measure_offset,
    resolve_device,
    spec_problems,
)
from lab.workloads.base import background, measure_offset_session, parse_epoch
from lab.workloads.container import QemuBenchWorkload, parse_perf_log, parse_qemu_runs, parse_size
from lab.workloads.device import parse_resolve
from lab.workloads.fio import FioWorkload, fio_windows, job_file, parse_fio_json, parse_fio_log, pass_command
from lab.workloads.probe import ProbeWorkload, parse_agent_lines, probe_records


@dataclass
class FakeExec:
    """Answers commands from a list of outputs (or a function of the command); records what it was asked."""

    outputs: list[Result] = field(default_factory=list)
    name: str = "fake"
    calls: list[str] = field(default_factory=list)

    def run(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        self.calls.append(cmd)
        return self.outputs.pop(0) if self.outputs else Result(1, "no answer", 0.0)


# ----------------------------------------------------------------------------------------------- fio

# `fio --output-format=json` of the drill job stopped with SIGTERM (fio 3.33): the message comes first
FIO_TERMINATED = """
fio: terminating on signal 15
{
  "fio version" : "fio-3.33",
  "timestamp" : 1795482658,
  "timestamp_ms" : 1795482658430,
  "jobs" : [
    {
      "jobname" : "drill",
      "groupid" : 0,
      "error" : 0,
      "elapsed" : 4,
      "read" : {"io_bytes" : 6291456, "io_kbytes" : 6144, "runtime" : 2947, "total_ios" : 1536, "short_ios" : 0},
      "write" : {"io_bytes" : 6033408, "io_kbytes" : 5892, "runtime" : 2947, "total_ios" : 1473, "short_ios" : 0},
      "trim" : {"io_bytes" : 0, "runtime" : 0, "total_ios" : 0},
      "job_runtime" : 2946,
      "total_err" : 0,
      "first_error" : 0
    }
  ]
}
"""

# the read-back verify pass over a region with one corrupted block: stderr merged before the report
FIO_VERIFY_FAILED = """crc32c: verify failed at file /var/tmp/h4c/fdev.img offset 17092608, length 4096 (requested block: offset=17092608, length=4096, flags=8)
       Expected CRC: 02ebdf05
       Received CRC: 19fd04e8
fio: pid=16236, err=84/file:io_u.c:2190, func=io_u_queued_complete, error=Invalid or incomplete multibyte or wide character
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "verify",
      "error" : 84,
      "read" : {"io_bytes" : 348160, "runtime" : 5, "total_ios" : 85},
      "write" : {"io_bytes" : 0, "runtime" : 0, "total_ios" : 0},
      "job_runtime" : 5
    }
  ]
}
"""

# write_bw_log / write_iops_log with log_avg_msec=500, log_unix_epoch=1 (time_ms, value, ddir, bs, offset)
FIO_BW_LOG = """1795482655934, 512, 0, 0, 0
1795482655934, 2008, 1, 0, 0
1795482656434, 2000, 1, 0, 0
1795482656934, 0, 1, 0, 0
1795482657434, 2004, 1, 0, 0, 0
"""
FIO_IOPS_LOG = """1795482655934, 128, 0, 0, 0
1795482655934, 502, 1, 0, 0
1795482656434, 500, 1, 0, 0
1795482656934, 0, 1, 0, 0
1795482657434, 501, 1, 0, 0, 0
"""


def test_fio_windows_fill_the_hole_of_a_stall() -> None:
    # measured on a Debian 12 VM: no sample from 59.4 s to 68.5 s while a path was cut
    bw = [(59400, 400.0, 1), (68500, 8.0, 1), (69000, 32.0, 1)]
    iops = [(59400, 100.0, 1), (68500, 2.0, 1), (69000, 8.0, 1)]
    ws = fio_windows(bw, iops, avg_ms=500, initiator="deb12", to_drill=lambda t: t, epoch_ms=True)
    ts = [w["t"] for w in ws]
    assert ts == [pytest.approx(59.4 + 0.5 * k) for k in range(18)] + [
        pytest.approx(68.5),
        pytest.approx(69.0),
    ]
    assert all(w["ios"] == 0 and w["bytes"] == 0 for w in ws[1:18])
    assert ws[0]["ios"] == 50 and ws[-2]["ios"] == 1


def test_fio_json_after_termination_message() -> None:
    rep = parse_fio_json(FIO_TERMINATED)
    assert rep is not None
    assert rep["version"] == "fio-3.33"
    assert (rep["error"], rep["total_err"]) == (0, 0)
    assert (rep["write_bytes"], rep["write_ios"]) == (6033408, 1473)
    assert (rep["read_bytes"], rep["read_ios"]) == (6291456, 1536)
    assert rep["runtime_ms"] == 2946


def test_fio_json_verify_failure_with_stderr_before() -> None:
    rep = parse_fio_json(FIO_VERIFY_FAILED)
    assert rep is not None
    assert rep["error"] == 84  # EILSEQ: fio's verification failure
    assert rep["read_bytes"] < 8 << 20


@pytest.mark.parametrize("text", ["", "fio: no such file", "{not json", '{"jobs": []}'])
def test_fio_json_absent_or_broken(text: str) -> None:
    assert parse_fio_json(text) is None


def test_fio_log_lines_with_and_without_prio_column() -> None:
    rows = parse_fio_log(FIO_BW_LOG + "garbage\n\n")
    assert rows[0] == (1795482655934, 512.0, 0)
    assert rows[-1] == (1795482657434, 2004.0, 1)
    assert len(rows) == 5


def test_fio_windows_sum_directions_and_use_the_drill_clock() -> None:
    clock = ClockMap(t0=1795482655.0, before=ClockSample(1795482650.0, 0.5, 0.01))
    ws = fio_windows(
        parse_fio_log(FIO_BW_LOG),
        parse_fio_log(FIO_IOPS_LOG),
        avg_ms=500,
        initiator="deb12",
        to_drill=clock.drill,
    )
    assert [w["t"] for w in ws] == [pytest.approx(x) for x in (0.434, 0.934, 1.434, 1.934)]
    first = ws[0]
    assert first["bytes"] == round((512 + 2008) * 1024 * 0.5)
    assert first["ios"] == round((128 + 502) * 0.5)
    assert ws[2]["bytes"] == 0  # a stalled window is logged as zero
    assert {w["source"] for w in ws} == {"fio"}
    assert all(w["window_s"] == 0.5 and w["initiator"] == "deb12" for w in ws)


def test_fio_job_file_and_pass_commands() -> None:
    params = {"iodepth": 4, "bs": "4k", "verify_backlog": 64, "rw": "randwrite", "rwmixread": 50}
    params |= {"log_avg_msec": 500, "rate_iops": 0}
    job = job_file("/dev/mapper/mpatha", params, 96 << 20, 32 << 20, "/tmp/w/fio", 900)
    lines = job.splitlines()
    for want in (
        "filename=/dev/mapper/mpatha",
        "direct=1",
        "ioengine=libaio",
        "verify=crc32c",
        "verify_backlog=64",
        "continue_on_error=io",
        "time_based=1",
        "runtime=900",
        f"offset={96 << 20}",
        f"size={32 << 20}",
        "log_unix_epoch=1",
        "write_bw_log=/tmp/w/fio",
        "write_iops_log=/tmp/w/fio",
    ):
        assert want in lines
    assert not any(line.startswith("rate_iops") for line in lines)
    assert lines[-1] == "[drill]"
    pre = pass_command("/dev/sdb", params, 0, 1 << 20, write=True)
    ver = pass_command("/dev/sdb", params, 0, 1 << 20, write=False)
    assert "--rw=write" in pre and "--do_verify=0" in pre and "--verify=crc32c" in pre
    assert "--rw=read" in ver and "--verify=crc32c" in ver and "--do_verify" not in ver


# --------------------------------------------------------------------------------- container tools

PERF_LOG = (
    "1795483182.700 START\n"
    "1795483182.765 iscsi-perf version 0.1 - (c) 2014-2015 by Peter Lieven <pl@\u0138amp.de>\n"
    "1795483182.768 connected to iscsi://127.0.0.1:48127/iqn.2026-11.org.example.sanlab:test/0\n"
    "1795483182.776 FIXED transfer size of 8 blocks (4096 byte)\n"
    "1795483182.780 infinite runtime - press CTRL-C to abort.\n"
    "1795483183.700 \r00:00:01 - lba 102957, iops current 6110 (23 MB/s), iops average 6110 (23 MB/s), "
    "in_flight 8, busy 0        \n"
    "1795483187.700 \r00:00:04 - lba 80699, iops current 954 (3 MB/s), iops average 1997 (7 MB/s), "
    "in_flight 8, busy 0        \n"
    "1795483188.200 Failed to send read16 command\n"
    "1795483188.700 \r00:00:05 - lba 98072, iops current 3819 (14 MB/s), in_flight 8, busy 0\n"
    "1795483189.000 EXIT 1\n"
    "1795483190.000 START\n"
    "1795483191.000 00:00:01 - lba 1, iops current 100 (0 MB/s), in_flight 8, busy 0\n"
    "1795483191.500 EXIT stop\n"
)


def test_iscsi_perf_log_windows_span_the_gaps() -> None:
    p = parse_perf_log(PERF_LOG)
    assert p["xfer"] == 4096
    ts = [(round(t, 3), iops, w) for t, iops, w in p["samples"]]
    # the first window starts at the loop's START line; a 4 s silence becomes one 4 s window
    assert ts == [
        (1795483183.7, 6110, 1.0),
        (1795483187.7, 954, 4.0),
        (1795483188.7, 3819, 1.0),
        (1795483191.0, 100, 1.0),
    ]
    assert [line for _, line in p["errors"]] == ["Failed to send read16 command"]
    assert p["runs"] == [(pytest.approx(1795483189.0), 1), (pytest.approx(1795483191.5), None)]


def test_qemu_runs_log() -> None:
    text = "1.0 2.5 0 1.2\n2.6 3.0 1 -\n3.1 3.3 stop -\nbad line\n"
    runs = parse_qemu_runs(text, bytes_per_run=8192, ios_per_run=2)
    assert [(r["rc"], r["bytes"], r["ios"], r["secs"]) for r in runs] == [(0, 8192, 2, 1.2), (1, 0, 0, None)]


def test_qemu_bench_writes_stay_in_their_region() -> None:
    spec = WorkloadSpec("qemu-bench", {"count": 100000, "size_mib": 4, "slot": 1})
    w = make_workload(spec, "qemu1", FakeExec(), "--image-opts x", 0.0)
    assert isinstance(w, QemuBenchWorkload)
    off, bs, count = w._geometry()
    assert off == (32 + 16) << 20
    assert count * bs == 4 << 20  # qemu-img steps by bs from the offset: capped so it never wraps
    assert "-w --pattern=90" in w.body() and f"-o {off}" in w.body()


@pytest.mark.parametrize(("text", "size"), [("4k", 4096), ("128K", 131072), ("1MiB", 1 << 20), (512, 512)])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


# ------------------------------------------------------------------------------------ probe (drill side)


def test_probe_lines_to_records_on_the_drill_clock() -> None:
    lines = [
        {"type": "start", "t": 1000.0, "direct": True},
        {"type": "io", "seq": 0, "t_start": 1000.0, "t_end": 1000.01, "ok": True, "err": ""},
        {"type": "io", "seq": 1, "t_start": 1000.1, "t_end": 1001.6, "ok": True, "err": ""},
        *({"type": "missed", "t_slot": 1000.2 + i / 10, "late": False} for i in range(14)),
        {"type": "io", "seq": 2, "t_start": 1001.7, "t_end": 1001.71, "ok": False, "err": "write: I/O error"},
        {"type": "end", "reason": "signal"},
        {"type": "verify", "ok": True, "checked": 3},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"type": "io", "seq"'  # a line cut by a kill
    parsed = parse_agent_lines(text)
    assert (len(parsed["ios"]), len(parsed["missed"]), parsed["bad_lines"]) == (3, 14, 1)
    clock = ClockMap(t0=995.0, before=ClockSample(990.0, 2.0, 0.05))  # the node is 2 s ahead
    probes, windows = probe_records(parsed["ios"], "deb12", clock.drill)
    assert [p["t"] for p in probes] == [pytest.approx(3.01), pytest.approx(4.6), pytest.approx(4.71)]
    assert probes[1]["lat_s"] == pytest.approx(1.5)
    assert probes[2] == {
        "initiator": "deb12",
        "t": pytest.approx(4.71),
        "ok": False,
        "lat_s": pytest.approx(0.01),
        "op": "write+read",
        "err": "write: I/O error",
    }
    assert [(w["t"], w["ios"], w["errors"]) for w in windows] == [(4.0, 2, 0), (5.0, 2, 1)]
    assert all(w["source"] == "probe" for w in windows)


# ---------------------------------------------------------------------------------------------- clock


def test_clock_map_interpolates_drift() -> None:
    c = ClockMap(t0=100.0, before=ClockSample(100.0, 1.0, 0.1), after=ClockSample(200.0, 1.2, 0.1))
    assert c.drill(101.0) == pytest.approx(0.0)
    assert c.drill(151.1) == pytest.approx(50.0, abs=1e-3)  # halfway: offset 1.1
    assert c.describe()["drift_s"] == pytest.approx(0.2)
    assert "drift +200.0 ms" in c.summary()
    shared = ClockMap(t0=100.0, before=ClockSample(100.0, 0.04, 0.1), shared=True)
    assert shared.drill(150.0) == 50.0  # a container reads the host's clock


def test_measure_offset_keeps_the_shortest_round_trip() -> None:
    import time

    ahead = 3.0
    outs = [Result(1, "date: bad", 0.0), Result(0, "garbage", 0.0)]

    class Clocked(FakeExec):
        def run(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
            if self.outputs:
                return super().run(cmd, timeout=timeout, stdin=stdin)
            return Result(0, f"{time.time() + ahead:.9f}\n", 0.0)

    s = measure_offset(Clocked(outs), samples=4)
    assert s is not None
    assert s.offset_s == pytest.approx(ahead, abs=max(s.rtt_s, 0.05))
    assert measure_offset(FakeExec([Result(1, "", 0.0)] * 3), samples=3) is None
    assert parse_epoch("1795482591.572844\n") == pytest.approx(1795482591.572844)
    assert parse_epoch("12") is None and parse_epoch("") is None


def test_clock_session_over_one_connection() -> None:
    """The interactive session (what SshExec.argv gives) against a local shell: this host's clock, offset ~0."""

    @dataclass
    class LocalArgv(FakeExec):
        def argv(self, remote: list[str]) -> list[str]:
            return remote

    s = measure_offset(LocalArgv())
    assert s is not None
    assert abs(s.offset_s) <= s.rtt_s / 2 + 0.002
    assert measure_offset_session(["sh", "-c", "exit 0"], timeout=5) is None
    assert measure_offset_session(["/nonexistent/ssh"], timeout=5) is None


# --------------------------------------------------------------------------------------------- device


def test_resolve_device_multipath_single_and_errors() -> None:
    mp = Result(0, "DISKS=sda sdb\nVENDORS=SANLAB SANLAB\nMAP=mpatha\n", 0.1)
    assert resolve_device(FakeExec([mp]), iqn="iqn.x:t", lun=0, paths=2) == "/dev/mapper/mpatha"
    one = Result(0, "DISKS=sdc\nVENDORS=IET\nMAP=\n", 0.1)
    ex = FakeExec([one])
    assert resolve_device(ex, iqn="iqn.x:t", lun=1, paths=1) == "/dev/sdc"
    assert ex.calls[0].startswith("sh -s iqn.x:t 1 1 ")
    with pytest.raises(WorkloadError, match="no dm-multipath map"):
        resolve_device(
            FakeExec([Result(0, "DISKS=sda sdb\nVENDORS=SANLAB SANLAB\nMAP=\n", 0.1)]), iqn="i", paths=2
        )
    with pytest.raises(WorkloadError, match="vendor"):
        resolve_device(FakeExec([Result(0, "DISKS=sda\nVENDORS=OTHER\nMAP=\n", 0.1)]), iqn="i")
    with pytest.raises(WorkloadError, match="no disk"):
        resolve_device(FakeExec([Result(0, "DISKS=\nVENDORS=\nMAP=\n", 0.1)]), iqn="i")
    assert parse_resolve("noise\nDISKS=sdd\nVENDORS=LIO-ORG\nMAP=\n") == (["sdd"], ["LIO-ORG"], "")


def _topo(kind: TargetKind) -> Topology:
    import ipaddress

    nets = [
        Network("san-a", NetworkRole.SAN_A, ipaddress.IPv4Network("198.18.1.0/24")),
        Network("mgmt", NetworkRole.MGMT, ipaddress.IPv4Network("198.18.0.0/24")),
    ]
    tgt = TargetNode("tgt1", kind, "iqn.2026-11.org.sanlab:t", ["san-a"], [Lun(0, 256 << 20, "disk0")])
    inis = [
        InitiatorNode("q1", InitiatorKind.QEMU_DRIVER, "tgt1", ["san-a"], "iqn.2026-11.org.sanlab:q1"),
        InitiatorNode("l1", InitiatorKind.LIBISCSI, "tgt1", ["san-a"], "iqn.2026-11.org.sanlab:l1"),
    ]
    return Topology("t", nets, [tgt], inis, Chap("user1", "secret-1234567"))


def test_container_device_arguments() -> None:
    topo = _topo(TargetKind.TGT)
    q = container_device(topo, topo.initiators[0])
    assert q.startswith("--object secret,id=chap0,data=secret-1234567 --image-opts driver=iscsi,")
    assert "portal=198.18.1.10:3260" in q and "lun=1," in q and "password-secret=chap0" in q  # tgtd: LUN 1
    lib = container_device(topo, topo.initiators[1])
    assert (
        lib
        == "-i iqn.2026-11.org.sanlab:l1 iscsi://user1%secret-1234567@198.18.1.10:3260/iqn.2026-11.org.sanlab:t/1"
    )


# ------------------------------------------------------------------------------------------- registry


def test_registry_and_param_validation() -> None:
    assert set(WORKLOAD_KINDS) == {"probe", "fio", "qemu-bench", "iscsi-perf"}
    assert spec_problems(WorkloadSpec("fio", {"size_mib": 16, "rw": "randrw"})) == []
    assert "unknown workload kind" in spec_problems(WorkloadSpec("dd"))[0]
    problems = spec_problems(WorkloadSpec("probe", {"interval_s": "fast", "colour": 1, "blocks": True}))
    assert len(problems) == 3
    with pytest.raises(WorkloadError):
        make_workload(WorkloadSpec("probe", {"nope": 1}), "n", FakeExec(), "/dev/sda", 0.0)
    w = make_workload(WorkloadSpec("probe", {"slot": 2}, name="p"), "deb 12", FakeExec(), "/dev/sda", 0.0)
    assert isinstance(w, ProbeWorkload)
    assert w._offset() == (64 + 2) << 20
    assert w.workdir == "/tmp/sanlab-wl/probe-deb-12-p"
    # the runner's slot applies unless the spec chose one
    w1 = make_workload(WorkloadSpec("fio"), "a", FakeExec(), "/dev/sda", 0.0, slot=1)
    w2 = make_workload(WorkloadSpec("fio", {"slot": 0}), "b", FakeExec(), "/dev/sda", 0.0, slot=1)
    assert isinstance(w1, FioWorkload) and isinstance(w2, FioWorkload)
    assert w1._region() == ((96 + 64) << 20, 32 << 20) and w2._region() == (96 << 20, 32 << 20)
    assert (
        make_workload(WorkloadSpec("iscsi-perf"), "l", FakeExec(), "-i x y", 0.0, slot=3).params.get("slot")
        is None
    )


def test_workload_result_records() -> None:
    r = WorkloadResult("deb12", "probe", "probe", 0.1, 30.0, True, 0, True, "d")
    r.probes.append(
        {"initiator": "deb12", "t": 1.0, "ok": True, "lat_s": 0.001, "op": "write+read", "err": ""}
    )
    r.throughput.append(
        {"initiator": "deb12", "t": 1.0, "window_s": 1.0, "bytes": 8192, "ios": 2, "errors": 0}
    )
    kinds = [k for k, _ in r.records]
    assert kinds == ["probe", "throughput", "workload"]
    wl = r.records[-1][1]
    assert (wl["started_at_s"], wl["stopped_at_s"], wl["verify_ok"], wl["errors"]) == (0.1, 30.0, True, 0)


def test_background_line_detaches_and_records_the_pid() -> None:
    line = background("exec sleep 1", "/tmp/w/pid", "/tmp/w/log")
    assert "nohup sh -c 'exec sleep 1'" in line and "echo $! > /tmp/w/pid" in line and "</dev/null" in line
