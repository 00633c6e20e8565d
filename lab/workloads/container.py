"""Load from the userspace initiator containers: `qemu-img bench` loops (qemu's iSCSI driver) and iscsi-perf
(libiscsi). The containers have no python: the loops are POSIX sh with coreutils (`date +%s.%N`, `timeout`,
`mkfifo`), run detached, bounded by a deadline, a run count and a stop file.

`device` is the tool's target argument, built by `lab.workloads.device.container_device`:
- qemu-bench: `[--object secret,id=chap0,data=...] --image-opts driver=iscsi,...` (shell words);
- iscsi-perf: `-i INITIATOR-IQN iscsi://[user%secret@]ip:port/iqn/lun` (shell words).

qemu-bench: each run is `qemu-img bench -c COUNT -d QD -s BS -t none -o OFFSET [-w --pattern=P]`, a new session
each time (login included in the window: that is what an application reopening the LUN sees). One throughput
window per run (t = its end, window_s = its wall time); a run that fails or times out counts as one I/O error.
Writes stay inside [offset, offset + count * bs) (qemu-img steps by bs from the offset; COUNT is capped so it
never wraps), and `collect()` reads the region back with `qemu-io -c "read -P PATTERN"` -> verify_ok.

iscsi-perf: `iscsi-perf -l -m QD -b BLOCKS [-r]` prints (and flushes) about one line per second
(`iops current N`); each line is timestamped by the loop as it arrives -> one throughput window per line,
spanning the time since the previous line (no line comes while every request is stuck). iscsi-perf only reads: verify_ok is
None. Lines that report a failure, and a run that exits non-zero, count as errors; the loop restarts it.
"""

from __future__ import annotations

import re
import shlex
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
)

QEMU_BASE_MIB = 32
QEMU_SLOT_MIB = 16
_SIZES = {"": 1, "k": 1024, "m": 1 << 20}


def parse_size(text: str | int) -> int:
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+)\s*([kKmM]?)[iI]?[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(m[1]) * _SIZES[m[2].lower()]


def parse_qemu_runs(text: str, *, bytes_per_run: int, ios_per_run: int) -> list[dict[str, Any]]:
    """The loop's `runs.log`: `START END RC SECONDS|-` per run -> [{start, end, rc, secs, bytes, ios}]."""
    out = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) != 4:
            continue
        if cols[2] == "stop":
            continue  # the run stop() interrupted: its I/O count is unknown
        try:
            s, e, rc = float(cols[0]), float(cols[1]), int(cols[2])
        except ValueError:
            continue
        secs = float(cols[3]) if re.fullmatch(r"[0-9.]+", cols[3]) else None
        ok = rc == 0
        out.append(
            {
                "start": s,
                "end": e,
                "rc": rc,
                "secs": secs,
                "bytes": bytes_per_run if ok else 0,
                "ios": ios_per_run if ok else 0,
            }
        )
    return out


_PERF_LINE = re.compile(r"^([0-9]+\.[0-9]+)\s+(.*)$")
_PERF_IOPS = re.compile(r"iops current\s+([0-9]+)")
_PERF_XFER = re.compile(r"transfer size of\s+([0-9]+)\s+blocks\s+\(([0-9]+)\s*byte")
_PERF_FAIL = re.compile(r"fail|error", re.IGNORECASE)


def parse_perf_log(text: str) -> dict[str, Any]:
    """The loop's timestamped iscsi-perf output -> {"samples": [(t, iops, window_s)], "xfer": bytes,
    "errors": [(t, line)], "runs": [(t, rc)]} (rc None: ended by stop() or the deadline).

    iscsi-perf prints a sample at the first completion at least 1 s after the previous one; "iops current" is
    the completions since the previous sample over the time since it. While every request is outstanding it
    prints nothing, so a sample's window is the time since the previous sample (or since the run's start)."""
    out: dict[str, Any] = {"samples": [], "xfer": 0, "errors": [], "runs": []}
    last: float | None = None
    for raw in text.split("\n"):  # not splitlines(): iscsi-perf starts its sample lines with a CR
        m = _PERF_LINE.match(raw.replace("\r", " ").strip())
        if not m:
            continue
        t, line = float(m[1]), m[2].strip()
        if line.startswith("EXIT "):
            word = line.split()[1] if len(line.split()) > 1 else ""
            rc = int(word) if word.isdigit() else (None if word == "stop" else -1)
            out["runs"].append((t, rc))
            last = None
            continue
        if line == "START":  # written by the loop just before it starts iscsi-perf
            last = t
            continue
        x = _PERF_XFER.search(line)
        if x:
            out["xfer"] = int(x[2])
            continue
        i = _PERF_IOPS.search(line)
        if i:
            window = t - last if last is not None and t > last else 1.0
            out["samples"].append((t, int(i[1]), round(window, 4)))
            last = t
        elif _PERF_FAIL.search(line):
            out["errors"].append((t, line[:200]))
    return out


def _loop_script(workdir: str, body: str, *, deadline_s: int, max_runs: int) -> str:
    w = shlex.quote(workdir)
    return f"""#!/bin/sh
# sanlab drill workload loop (generated): stops at the deadline, after {max_runs} runs, or when {workdir}/stop exists
W={w}
END=$(( $(date +%s) + {deadline_s} ))
i=0
while [ "$(date +%s)" -lt "$END" ] && [ "$i" -lt {max_runs} ] && [ ! -e "$W/stop" ]; do
{body}
    i=$((i + 1))
done
echo "$(date +%s.%N) loop-end" >> "$W/loop.log"
"""


class _ContainerLoop(Workload):
    """A detached sh loop in a container; `stop()` touches the stop file, interrupts the running tool and waits."""

    def _p(self, name: str) -> str:
        return f"{self.workdir}/{name}"

    def body(self) -> str:
        raise NotImplementedError

    def max_runs(self) -> int:
        return 100000

    def launch(self) -> None:
        self.clock.before = measure_offset(self.executor)
        w = shlex.quote(self.workdir)
        ok, msg = self.sh(f"rm -rf {w}; mkdir -p {w}")
        if not ok:
            raise WorkloadError(f"{self.kind} on {self.node}: {msg.strip()[-200:]}")
        script = _loop_script(
            self.workdir, self.body(), deadline_s=int(self.max_duration_s), max_runs=self.max_runs()
        )
        if not put_file(self.executor, self._p("loop.sh"), script.encode(), mode="0755"):
            raise WorkloadError(f"{self.kind} on {self.node}: cannot write the loop script")
        ok, msg = self.sh(background(f"exec sh {self._p('loop.sh')}", self._p("pid"), self._p("loop.out")))
        self.started_at_s = self.now_s()
        if not ok:
            raise WorkloadError(f"{self.kind} on {self.node}: start failed: {msg.strip()[-300:]}")

    def stop(self) -> str:
        w = shlex.quote(self.workdir)
        wait = float(self.params["stop_timeout_s"])
        steps = max(1, int(wait / 0.2))
        _ok, out = self.sh(
            ALIVE_FN
            + f'touch {w}/stop; t=$(cat {w}/tool.pid 2>/dev/null); alive "$t" && kill -INT $t 2>/dev/null; '
            f"pid=$(cat {w}/pid 2>/dev/null); i=0; "
            f'while alive "$pid" && [ $i -lt {steps} ]; do sleep 0.2; i=$((i+1)); done; '
            f'if alive "$pid"; then kill -KILL $pid 2>/dev/null; alive "$t" && kill -KILL $t 2>/dev/null; '
            f"echo killed; else echo exited; fi",
            timeout=wait + 15,
        )
        self.stopped_at_s = self.now_s()
        word = out.strip().splitlines()[-1] if out.strip() else "no answer"
        return f"{self.kind} loop {word}"


class QemuBenchWorkload(_ContainerLoop):
    kind: ClassVar[str] = "qemu-bench"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "write": True,
        "count": 2048,
        "depth": 8,
        "bs": "4k",
        "slot": 0,  # region = 32 MiB + slot * 16 MiB unless offset_mib is given
        "offset_mib": None,
        "size_mib": 16,
        "pattern": 0x5A,
        "run_timeout_s": 120.0,
        "stop_timeout_s": 150.0,
        "verify_timeout_s": 120.0,
    }

    def _geometry(self) -> tuple[int, int, int]:
        """(offset, bs, count) with count * bs inside the region for writes."""
        bs = parse_size(self.params["bs"])
        mib = self.params["offset_mib"]
        if mib is None:
            mib = QEMU_BASE_MIB + QEMU_SLOT_MIB * int(self.params["slot"])
        size = int(self.params["size_mib"]) << 20
        count = int(self.params["count"])
        if self.params["write"]:
            count = min(count, size // bs)
        return int(mib) << 20, bs, max(1, count)

    def body(self) -> str:
        off, bs, count = self._geometry()
        wr = f" -w --pattern={int(self.params['pattern'])}" if self.params["write"] else ""
        bench = f"qemu-img bench -c {count} -d {int(self.params['depth'])} -s {bs} -t none -o {off}{wr} {self.device}"
        to = int(self.params["run_timeout_s"])
        return f"""    s=$(date +%s.%N)
    timeout -k 5 {to} {bench} > "$W/run.out" 2>&1 &
    echo $! > "$W/tool.pid"; wait $!; rc=$?
    e=$(date +%s.%N)
    secs=$(sed -n 's/^Run completed in \\([0-9.]*\\) seconds.*/\\1/p' "$W/run.out")
    if [ $rc -ne 0 ] && [ -e "$W/stop" ]; then rc=stop; fi  # interrupted by stop(): not a failure
    echo "$s $e $rc ${{secs:--}}" >> "$W/runs.log"
    if [ "$rc" != 0 ] && [ "$rc" != stop ]; then echo "$e rc=$rc $(tail -n 3 "$W/run.out" | tr '\\n' ' ')" >> "$W/errors.log"; sleep 0.2; fi"""

    def start(self) -> str:
        off, bs, count = self._geometry()
        self.launch()
        mode = f"writes (pattern {int(self.params['pattern']):#x})" if self.params["write"] else "reads"
        return f"qemu-img bench loop: {count} x {bs} B {mode} QD{self.params['depth']} at {off >> 20} MiB"

    def collect(self) -> WorkloadResult:
        off, bs, count = self._geometry()
        self.clock.after = measure_offset(self.executor)
        runs = parse_qemu_runs(
            fetch_file(self.executor, self._p("runs.log")) or "", bytes_per_run=count * bs, ios_per_run=count
        )
        errs = fetch_file(self.executor, self._p("errors.log")) or ""
        windows = []
        for r in runs:
            end = self.clock.drill(r["end"])
            windows.append(
                {
                    "initiator": self.node,
                    "t": round(end, 4),
                    "window_s": round(max(r["end"] - r["start"], 1e-3), 4),
                    "bytes": r["bytes"],
                    "ios": r["ios"],
                    "errors": 0 if r["rc"] == 0 else 1,
                    "source": "qemu-img",
                }
            )
        errors = sum(w["errors"] for w in windows)
        parts = [f"{len(runs)} qemu-img bench runs of {count} x {bs} B, {errors} failed"]
        if errs.strip():
            parts.append("first failure: " + errs.strip().splitlines()[0][:200])
        verify_ok: bool | None = None
        if self.params["write"]:
            pattern = int(self.params["pattern"])
            cmd = f"qemu-io {self.device} -c {shlex.quote(f'read -P {pattern} {off} {count * bs}')}"
            ok, out = self.sh(cmd, timeout=float(self.params["verify_timeout_s"]))
            verify_ok = bool(
                ok and "verification failed" not in out and re.search(r"^read \d+/\d+ bytes", out, re.M)
            )
            if not any(r["rc"] == 0 for r in runs):
                verify_ok = False  # nothing was written
            parts.append(
                f"read-back of {count * bs >> 10} KiB {'matches the pattern' if verify_ok else 'FAILED: ' + out.strip()[-160:]}"
            )
        parts.append(self.clock.summary())
        return self.result(
            ok=bool(runs) and errors == 0 and verify_ok is not False,
            errors=errors,
            verify_ok=verify_ok,
            detail="; ".join(parts),
            throughput=windows,
            extra={"runs": len(runs)},
        )


class IscsiPerfWorkload(_ContainerLoop):
    kind: ClassVar[str] = "iscsi-perf"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "depth": 8,
        "blocks": 8,  # logical blocks per request
        "random": True,
        "max_reconnects": 100,
        "stop_timeout_s": 30.0,
        "max_runs": 100,
    }

    def max_runs(self) -> int:
        return int(self.params["max_runs"])

    def body(self) -> str:
        r = " -r" if self.params["random"] else ""
        perf = (
            f"$SB iscsi-perf -l -m {int(self.params['depth'])} -b {int(self.params['blocks'])}{r} "
            f"-x {int(self.params['max_reconnects'])} {self.device}"
        )
        return f"""    rm -f "$W/fifo"; mkfifo "$W/fifo"
    if command -v stdbuf >/dev/null 2>&1; then SB="stdbuf -oL"; else SB=; fi
    echo "$(date +%s.%N) START" >> "$W/perf.log"
    rem=$((END - $(date +%s))); [ $rem -gt 0 ] || break
    timeout -s INT -k 5 $rem {perf} > "$W/fifo" 2>&1 &
    echo $! > "$W/tool.pid"
    while IFS= read -r l; do [ -n "$l" ] && echo "$(date +%s.%N) $l"; done < "$W/fifo" >> "$W/perf.log"
    wait $(cat "$W/tool.pid"); rc=$?
    if [ -e "$W/stop" ] || [ $rc -eq 124 ]; then rc=stop; fi  # stop() or the deadline: not a failure
    echo "$(date +%s.%N) EXIT $rc" >> "$W/perf.log"
    [ -e "$W/stop" ] || sleep 1"""

    def start(self) -> str:
        self.launch()
        return f"iscsi-perf loop: QD{self.params['depth']}, {self.params['blocks']} blocks per read"

    def collect(self) -> WorkloadResult:
        self.clock.after = measure_offset(self.executor)
        parsed = parse_perf_log(fetch_file(self.executor, self._p("perf.log")) or "")
        xfer = int(parsed["xfer"]) or 512 * int(self.params["blocks"])
        err_times = [t for t, _ in parsed["errors"]]
        # a run that ended non-zero while the loop was not being stopped is an error the application saw
        err_times += [t for t, rc in parsed["runs"] if rc is not None and rc != 0]
        windows = []
        for t, iops, span in parsed["samples"]:
            ios = round(iops * span)
            windows.append(
                {
                    "initiator": self.node,
                    "t": round(self.clock.drill(t), 4),
                    "window_s": span,
                    "bytes": ios * xfer,
                    "ios": ios,
                    "errors": 0,
                    "source": "iscsi-perf",
                }
            )
        for t in err_times:  # charge each error to the window it happened in (or the next one)
            d = self.clock.drill(t)
            target = next((w for w in windows if w["t"] >= d), windows[-1] if windows else None)
            if target is not None:
                target["errors"] += 1
        errors = len(err_times)
        parts = [
            f"{len(windows)} samples from {len(parsed['runs'])} iscsi-perf run(s), {errors} errors",
            f"{xfer} B per read",
        ]
        if parsed["errors"]:
            parts.append("first: " + parsed["errors"][0][1])
        parts.append(self.clock.summary())
        return self.result(
            ok=bool(windows) and errors == 0,
            errors=errors,
            verify_ok=None,
            detail="; ".join(parts),
            throughput=windows,
            extra={"runs": len(parsed["runs"])},
        )
