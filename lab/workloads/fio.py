"""fio with data verification inside a Linux VM, on its own region of the device.

Three fio runs, all `direct=1, ioengine=libaio, bs=4k, verify=crc32c` on [offset, offset + size):

1. prefill (in `start()`, bounded): a sequential write pass so every block of the region carries a verify header;
2. the drill job, in the background (nohup, pid file): `rw=randwrite` (or `randrw`), `verify_backlog` (fio
   re-reads and checks its writes while running), `time_based` with a runtime bound, averaged bandwidth and
   IOPS logs (`log_avg_msec=500`, `log_unix_epoch=1`, so samples carry the node's wall clock);
   `continue_on_error=io`: an I/O error is counted (`total_err`) and the job goes on, so the drill still
   measures recovery; a verification error ends the job (fio's error EILSEQ);
3. a verify pass (in `collect()`): `rw=read` over the whole region with `verify=crc32c`: every block's header
   (magic, offset, crc of the data) must check -> `verify_ok`.

What counts as an application I/O error: fio's `total_err` of the drill job (I/Os that completed with an error;
with dm-multipath `queue_if_no_path` there should be none), plus 1 when the job ended with a non-zero `error`
(a verification failure or an error fio could not continue past). The logs carry no error times, so the errors
are put on the last throughput window (the metrics then charge them to the last fault's window).

Options used exist in fio 3.25 (Debian 11), 3.33 (12) and 3.39 (13). When fio is stopped with SIGTERM it writes
its JSON report after a "fio: terminating on signal 15" line: the parser skips text before the first brace.
Read bandwidth of `verify_backlog` reads is not in fio's logs: the throughput windows are the job's writes (and
reads with `randrw`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any, ClassVar

from lab.workloads.base import (
    ALIVE_FN,
    Workload,
    WorkloadError,
    WorkloadResult,
    background,
    fetch_file,
    measure_offset,
    put_file,
    stop_pid,
)

FIO_BASE_MIB = 96
FIO_SLOT_MIB = 64
#: at most this many empty windows fill one hole in fio's log (an hour at 500 ms)
MAX_GAP_WINDOWS = 7200


def parse_fio_json(text: str) -> dict[str, Any] | None:
    """fio's --output-format=json report (text before the first '{' skipped) -> totals of all jobs."""
    doc: Any = None
    decoder = json.JSONDecoder()
    # the report starts on a line of its own; fio's messages before it (and stderr merged in) are skipped
    for m in re.finditer(r"^\{", text, re.M):
        try:
            doc, _ = decoder.raw_decode(text[m.start() :])
        except ValueError:
            continue
        if isinstance(doc, dict) and "jobs" in doc:
            break
        doc = None
    if doc is None:
        return None
    jobs = doc.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        return None
    out: dict[str, Any] = {
        "version": str(doc.get("fio version", "")),
        "error": 0,
        "total_err": 0,
        "first_error": 0,
        "read_bytes": 0,
        "write_bytes": 0,
        "read_ios": 0,
        "write_ios": 0,
        "runtime_ms": 0,
    }
    for j in jobs:
        out["error"] = out["error"] or int(j.get("error") or 0)
        out["total_err"] += int(j.get("total_err") or 0)
        out["first_error"] = out["first_error"] or int(j.get("first_error") or 0)
        for d in ("read", "write"):
            s = j.get(d) or {}
            out[f"{d}_bytes"] += int(s.get("io_bytes") or 0)
            out[f"{d}_ios"] += int(s.get("total_ios") or 0)
        out["runtime_ms"] = max(
            out["runtime_ms"], int(j.get("job_runtime") or (j.get("read") or {}).get("runtime") or 0)
        )
    return out


def parse_fio_log(text: str) -> list[tuple[int, float, int]]:
    """A fio bw/iops log: lines `time_ms, value, ddir, bs, offset[, prio]` -> (time_ms, value, ddir)."""
    out = []
    for line in text.splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 3:
            continue
        try:
            out.append((int(cols[0]), float(cols[1]), int(cols[2])))
        except ValueError:
            continue
    return out


def fio_windows(
    bw: list[tuple[int, float, int]],
    iops: list[tuple[int, float, int]],
    *,
    avg_ms: int,
    initiator: str,
    to_drill: Callable[[float], float],
    epoch_ms: bool = True,
) -> list[dict[str, Any]]:
    """Throughput windows from averaged logs: one per log timestamp, summing read and write (trim ignored),
    plus empty windows over the holes fio leaves while no I/O completes. A sample at time t is the average over
    the `avg_ms` before it; bw values are KiB/s."""
    span = avg_ms / 1000.0
    rate: dict[int, list[float]] = {}
    for t, v, d in bw:
        if d in (0, 1):
            rate.setdefault(t, [0.0, 0.0])[0] += v * 1024.0
    for t, v, d in iops:
        if d in (0, 1):
            rate.setdefault(t, [0.0, 0.0])[1] += v
    # fio writes an averaged sample only when I/O completes: while every I/O is stuck (a cut path) the log has
    # a hole. The hole is throughput zero: fill it with empty windows of the same span.
    times = sorted(rate)
    filled: list[int] = []
    for prev, t in zip([None, *times], times):
        if prev is not None and t - prev > 1.5 * avg_ms:
            k = 1
            while prev + k * avg_ms < t - avg_ms / 2 and k <= MAX_GAP_WINDOWS:
                filled.append(prev + k * avg_ms)
                rate.setdefault(prev + k * avg_ms, [0.0, 0.0])
                k += 1
        filled.append(t)
    out = []
    for t in filled:
        bps, ios = rate[t]
        node_t = t / 1000.0 if epoch_ms else t
        out.append(
            {
                "initiator": initiator,
                "t": round(to_drill(node_t), 4),
                "window_s": span,
                "bytes": round(bps * span),
                "ios": round(ios * span),
                "errors": 0,
                "source": "fio",
            }
        )
    return out


def job_file(
    device: str, params: dict[str, Any], offset: int, size: int, log_prefix: str, runtime_s: int
) -> str:
    """The drill job (fio ini format)."""
    lines = [
        "[global]",
        f"filename={device}",
        "direct=1",
        "ioengine=libaio",
        f"iodepth={int(params['iodepth'])}",
        f"bs={params['bs']}",
        f"offset={offset}",
        f"size={size}",
        "verify=crc32c",
        f"verify_backlog={int(params['verify_backlog'])}",
        "verify_state_save=0",
        "continue_on_error=io",
        "time_based=1",
        f"runtime={runtime_s}",
        f"rw={params['rw']}",
        f"rwmixread={int(params['rwmixread'])}",
        "randrepeat=0",
        f"log_avg_msec={int(params['log_avg_msec'])}",
        "log_unix_epoch=1",
        "per_job_logs=0",
        f"write_bw_log={log_prefix}",
        f"write_iops_log={log_prefix}",
    ]
    if int(params["rate_iops"]) > 0:
        lines.append(f"rate_iops={int(params['rate_iops'])}")
    return "\n".join([*lines, "", "[drill]", ""])


def pass_command(device: str, params: dict[str, Any], offset: int, size: int, *, write: bool) -> str:
    """fio command line of the prefill (write) or verify (read) pass over the region."""
    argv = [
        "fio",
        f"--name={'prefill' if write else 'verify'}",
        f"--filename={device}",
        f"--offset={offset}",
        f"--size={size}",
        f"--rw={'write' if write else 'read'}",
        f"--bs={params['bs']}",
        "--direct=1",
        "--ioengine=libaio",
        "--iodepth=8",
        "--verify=crc32c",
        "--verify_state_save=0",
        "--output-format=json",
    ]
    if write:
        argv.append("--do_verify=0")
    return shlex.join(argv)


class FioWorkload(Workload):
    kind: ClassVar[str] = "fio"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "rw": "randwrite",
        "rwmixread": 50,
        "bs": "4k",
        "iodepth": 4,
        "slot": 0,  # region = 96 MiB + slot * 64 MiB unless offset_mib is given
        "offset_mib": None,
        "size_mib": 32,
        "verify_backlog": 64,
        "log_avg_msec": 500,
        "rate_iops": 0,  # 0: unlimited
        "prefill": True,
        "prefill_timeout_s": 300.0,
        "verify_timeout_s": 300.0,
        "stop_timeout_s": 60.0,
    }

    def _region(self) -> tuple[int, int]:
        mib = self.params["offset_mib"]
        if mib is None:
            mib = FIO_BASE_MIB + FIO_SLOT_MIB * int(self.params["slot"])
        return int(mib) << 20, int(self.params["size_mib"]) << 20

    def _p(self, name: str) -> str:
        return f"{self.workdir}/{name}"

    def start(self) -> str:
        if self.params["rw"] not in ("randwrite", "randrw", "write", "rw"):
            raise WorkloadError(f"fio on {self.node}: rw must write (randwrite, randrw, write, rw)")
        offset, size = self._region()
        self.clock.before = measure_offset(self.executor)
        w = shlex.quote(self.workdir)
        ok, msg = self.sh(f"rm -rf {w}; mkdir -p {w} && fio --version")
        if not ok:
            raise WorkloadError(f"fio on {self.node}: {msg.strip()[-200:]}")
        version = msg.strip().splitlines()[-1] if msg.strip() else "?"
        detail = [f"{version} {self.params['rw']} bs={self.params['bs']} QD{self.params['iodepth']}"]
        detail.append(f"region {offset >> 20}+{size >> 20} MiB of {self.device}")
        if self.params["prefill"]:
            t = float(self.params["prefill_timeout_s"])
            ok, msg = self.sh(pass_command(self.device, self.params, offset, size, write=True), timeout=t)
            pre = parse_fio_json(msg)
            if not ok or pre is None or pre["error"]:
                raise WorkloadError(f"fio prefill on {self.node} failed: {msg.strip()[-300:]}")
            detail.append(f"prefilled {pre['write_bytes'] >> 20} MiB")
        runtime = int(self.max_duration_s)
        job = job_file(self.device, self.params, offset, size, self._p("fio"), runtime)
        if not put_file(self.executor, self._p("drill.fio"), job.encode()):
            raise WorkloadError(f"fio on {self.node}: cannot write the job file")
        cmd = f"cd {w} && exec fio --output-format=json --output={shlex.quote(self._p('fio.json'))} drill.fio"
        ok, msg = self.sh(background(cmd, self._p("pid"), self._p("fio.log")), timeout=30)
        self.started_at_s = self.now_s()
        if not ok:
            raise WorkloadError(f"fio on {self.node}: start failed: {msg.strip()[-300:]}")
        ok, msg = self.sh(
            ALIVE_FN
            + f"sleep 0.5; alive $(cat {shlex.quote(self._p('pid'))}) || {{ cat {shlex.quote(self._p('fio.log'))}; exit 1; }}"
        )
        if not ok:
            raise WorkloadError(f"fio on {self.node} exited at once: {msg.strip()[-300:]}")
        return "; ".join(detail)

    def stop(self) -> str:
        clean, word = stop_pid(self.executor, self._p("pid"), wait_s=float(self.params["stop_timeout_s"]))
        self.stopped_at_s = self.now_s()
        return f"fio {word}" + ("" if clean else " (did not exit by itself: no JSON report)")

    def collect(self) -> WorkloadResult:
        offset, size = self._region()
        self.clock.after = measure_offset(self.executor)
        report = parse_fio_json(fetch_file(self.executor, self._p("fio.json")) or "")
        bw = parse_fio_log(fetch_file(self.executor, self._p("fio_bw.log")) or "")
        iops = parse_fio_log(fetch_file(self.executor, self._p("fio_iops.log")) or "")
        windows = fio_windows(
            bw, iops, avg_ms=int(self.params["log_avg_msec"]), initiator=self.node, to_drill=self.clock.drill
        )
        errors = 0
        parts = []
        if report is None:
            _, log = self.sh(f"tail -c 400 {shlex.quote(self._p('fio.log'))}")
            parts.append(f"no fio report: {log.strip()[-200:]}")
            errors = 1
        else:
            errors = int(report["total_err"]) + (1 if report["error"] else 0)
            parts.append(
                f"wrote {report['write_bytes'] >> 20} MiB, read {report['read_bytes'] >> 20} MiB "
                f"({report['write_ios']} writes, {report['read_ios']} reads incl. backlog verification), "
                f"total_err {report['total_err']}, error {report['error']}"
            )
        if windows and errors:
            windows[-1]["errors"] = errors
        t = float(self.params["verify_timeout_s"])
        ok, msg = self.sh(pass_command(self.device, self.params, offset, size, write=False), timeout=t)
        ver = parse_fio_json(msg)
        verify_ok = bool(ok and ver is not None and not ver["error"] and ver["read_bytes"] == size)
        if verify_ok:
            parts.append(f"verify pass ok ({size >> 20} MiB read back, crc32c headers check)")
        else:
            bad = [ln for ln in msg.splitlines() if "verify" in ln.lower() or "fio:" in ln][:3]
            parts.append("verify pass FAILED: " + (" | ".join(bad) or msg.strip()[-200:]))
        parts.append(f"{len(windows)} throughput windows")
        parts.append(self.clock.summary())
        return self.result(
            ok=report is not None and errors == 0 and verify_ok,
            errors=errors,
            verify_ok=verify_ok,
            detail="; ".join(parts),
            throughput=windows,
            extra={"fio": report or {}},
        )
