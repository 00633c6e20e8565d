"""What every drill workload shares: the spec, the result, the base class, the clock and file helpers.

A workload runs on ONE initiator node for ONE workload spec of the scenario: `start()` before the first fault,
`stop()` after the last, `collect()` then fetches what the node recorded and converts it to records on the
drill clock (host `time.time()` minus the drill epoch `t0`).

The clock: agents inside VMs and containers timestamp with their own `time.time()`. `measure_offset` asks the
node for its time several times and keeps the sample with the shortest round trip; the node's clock is taken to
have read its value at the midpoint of that round trip (error <= half the round trip, which is reported). Over
ssh the exchanges run inside ONE session (`measure_offset_session`): separate `ssh` calls cost a handshake
each (1-2 s on a loaded host) and read the node's clock near their end, which biased the midpoint by hundreds
of ms in a measured run. A sample is taken before `start()` and another in `collect()`; `ClockMap` interpolates linearly
between them (VM clocks under TCG drift) and reports both offsets and the drift.
"""

from __future__ import annotations

import base64
import queue
import shlex
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lab.drivers.exec import DockerExec, Executor

#: remote work directories live under this prefix, one per (workload kind, node, spec name)
REMOTE_BASE = "/tmp/sanlab-wl"
#: bytes per chunk when fetching a remote file through the executor (its output is capped at 256 KiB)
FETCH_CHUNK = 192 * 1024
#: no remote file larger than this is fetched (records of a long drill are a few MB)
FETCH_MAX = 64 * 1024 * 1024
DEFAULT_MAX_DURATION_S = 900.0


class WorkloadError(RuntimeError):
    """A workload could not be started (the message says why)."""


@dataclass(frozen=True)
class WorkloadSpec:
    """One entry of the scenario's `workloads:` list."""

    kind: str  # "probe" | "fio" | "qemu-bench" | "iscsi-perf"
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""  # default: the kind


@dataclass(frozen=True)
class ClockSample:
    """offset_s = node clock - host clock at host time `host_t` (midpoint of a round trip of `rtt_s`)."""

    host_t: float
    offset_s: float
    rtt_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "host_t": round(self.host_t, 3),
            "offset_s": round(self.offset_s, 4),
            "rtt_s": round(self.rtt_s, 4),
        }


def parse_epoch(text: str) -> float | None:
    """The last line of `date +%s.%N` (or a python float) as a float; None when it is not one."""
    lines = text.strip().splitlines()
    if not lines:
        return None
    try:
        value = float(lines[-1].strip())
    except ValueError:
        return None
    return value if value > 1e9 else None


#: the node side of an interactive clock session: one timestamp line per line read (python3 when the node has
#: it, else date(1)); it ends when stdin closes
CLOCK_LOOP = (
    "if command -v python3 >/dev/null 2>&1; then exec python3 -c "
    "'import sys,time;[print(repr(time.time()),flush=True) for _ in iter(sys.stdin.readline,\"\")]'; "
    "else while read -r x; do date +%s.%N; done; fi"
)


def _sample(a: float, b: float, node_t: float) -> ClockSample:
    return ClockSample(host_t=(a + b) / 2, offset_s=node_t - (a + b) / 2, rtt_s=b - a)


def measure_offset_session(argv: list[str], *, samples: int = 8, timeout: float = 30.0) -> ClockSample | None:
    """NTP-style exchanges over ONE connection (`argv` runs CLOCK_LOOP on the node, e.g. `SshExec.argv`): once
    the connection is up a round trip is the network's and the node's, not ssh's handshake (which a plain
    `executor.run` pays on every call, and asymmetrically: the node reads its clock near the end)."""
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
    except OSError:
        return None
    lines: queue.Queue[bytes] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            lines.put(line)
        lines.put(b"")

    threading.Thread(target=reader, daemon=True).start()
    best: ClockSample | None = None
    try:
        assert proc.stdin is not None
        for _ in range(max(1, samples) + 1):  # the first exchange waits for the connection: it rarely wins
            left = deadline - time.monotonic()
            if left <= 0:
                break
            a = time.time()
            proc.stdin.write(b"t\n")
            proc.stdin.flush()
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            b = time.time()
            node_t = parse_epoch(line.decode("ascii", "replace"))
            if node_t is None:
                break
            s = _sample(a, b, node_t)
            if best is None or s.rtt_s < best.rtt_s:
                best = s
    except (OSError, ValueError):
        pass
    finally:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)
    return best


def measure_offset(executor: Executor, *, samples: int = 3, timeout: float = 20.0) -> ClockSample | None:
    """The node's clock offset against the host's (None: no sample succeeded). Over one interactive session
    when the executor can give its command line (`argv`, as SshExec does); else the shortest of `samples`
    `executor.run("date")` round trips, read at their midpoint (error up to half the round trip)."""
    argv = getattr(executor, "argv", None)
    if callable(argv):
        s = measure_offset_session(argv(["sh", "-c", CLOCK_LOOP]), timeout=timeout)
        if s is not None:
            return s
    best: ClockSample | None = None
    for _ in range(max(1, samples)):
        a = time.time()
        r = executor.run("date +%s.%N", timeout=timeout)
        b = time.time()
        node_t = parse_epoch(r.output) if r.ok else None
        if node_t is None:
            continue
        s = _sample(a, b, node_t)
        if best is None or s.rtt_s < best.rtt_s:
            best = s
    return best


@dataclass
class ClockMap:
    """Node time -> drill time, from the samples before and after (linear drift between them)."""

    t0: float
    before: ClockSample | None = None
    after: ClockSample | None = None
    #: the node reads the host kernel's clock (a container: CLOCK_REALTIME is not namespaced): the offset is 0
    #: by construction; the samples are still taken and reported (they show the measurement's own error)
    shared: bool = False

    def offset_at(self, node_t: float) -> float:
        b, a = self.before, self.after
        if self.shared or (b is None and a is None):
            return 0.0
        if b is None or a is None or abs(a.host_t - b.host_t) < 1.0:
            return (b or a).offset_s  # type: ignore[union-attr]
        host_t = node_t - b.offset_s
        frac = (host_t - b.host_t) / (a.host_t - b.host_t)
        return b.offset_s + frac * (a.offset_s - b.offset_s)

    def drill(self, node_t: float) -> float:
        """Seconds on the drill clock for a node timestamp."""
        return node_t - self.offset_at(node_t) - self.t0

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "before": self.before.as_dict() if self.before else None,
            "after": self.after.as_dict() if self.after else None,
            "shared_host_clock": self.shared,
        }
        if self.before and self.after:
            out["drift_s"] = round(self.after.offset_s - self.before.offset_s, 4)
        return out

    def summary(self) -> str:
        def one(s: ClockSample | None) -> str:
            return "n/a" if s is None else f"{s.offset_s * 1000:+.1f} ms (rtt {s.rtt_s * 1000:.0f} ms)"

        text = f"clock offset before {one(self.before)}, after {one(self.after)}"
        if self.before and self.after:
            text += f", drift {(self.after.offset_s - self.before.offset_s) * 1000:+.1f} ms"
        if self.shared:
            text += " (container: the host's clock, offset taken as 0)"
        return text


@dataclass
class WorkloadResult:
    """What `collect()` returns: the records on the drill clock and the verdicts."""

    initiator: str
    workload: str  # the spec's name
    kind: str
    started_at_s: float | None = None
    stopped_at_s: float | None = None
    ok: bool = False
    errors: int = 0  # I/O errors the application saw
    verify_ok: bool | None = None  # None: the workload does not verify (read-only)
    detail: str = ""
    probes: list[dict[str, Any]] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    clock: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific figures (missed slots, fio totals)

    def workload_record(self) -> dict[str, Any]:
        """The `workload` record's fields."""
        return {
            "initiator": self.initiator,
            "workload": self.workload,
            "kind": self.kind,
            "started_at_s": self.started_at_s,
            "stopped_at_s": self.stopped_at_s,
            "ok": self.ok,
            "errors": self.errors,
            "verify_ok": self.verify_ok,
            "detail": self.detail,
            "clock": self.clock,
            **self.extra,
        }

    @property
    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, fields) for RunDir.record: probes, throughput windows, then the workload record."""
        out: list[tuple[str, dict[str, Any]]] = [("probe", p) for p in self.probes]
        out += [("throughput", w) for w in self.throughput]
        out.append(("workload", self.workload_record()))
        return out


class Workload(ABC):
    """One workload on one initiator node. Every method is bounded in time."""

    kind: ClassVar[str]
    #: params this kind accepts, with their defaults (unknown params are rejected by `validate_params`)
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        spec: WorkloadSpec,
        node: str,
        executor: Executor,
        device: str,
        t0: float,
        *,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
    ) -> None:
        problems = validate_params(type(self), spec.params)
        if problems:
            raise WorkloadError(f"{spec.kind} on {node}: " + "; ".join(problems))
        self.spec = spec
        self.name = spec.name or spec.kind
        self.node = node
        self.executor = executor
        self.device = device
        self.t0 = t0
        self.max_duration_s = max_duration_s
        self.params: dict[str, Any] = {**self.DEFAULTS, **dict(spec.params)}
        self.clock = ClockMap(t0, shared=isinstance(executor, DockerExec))
        self.started_at_s: float | None = None
        self.stopped_at_s: float | None = None
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{self.kind}-{node}-{self.name}")
        self.workdir = f"{REMOTE_BASE}/{safe}"

    def now_s(self) -> float:
        return time.time() - self.t0

    def sh(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> tuple[bool, str]:
        r = self.executor.run(cmd, timeout=timeout, stdin=stdin)
        return r.ok, r.output

    def result(self, **fields: Any) -> WorkloadResult:
        return WorkloadResult(
            initiator=self.node,
            workload=self.name,
            kind=self.kind,
            started_at_s=self.started_at_s,
            stopped_at_s=self.stopped_at_s,
            clock=self.clock.describe(),
            **fields,
        )

    @abstractmethod
    def start(self) -> str:
        """Prepare and start the workload in the background on the node; returns a detail line."""

    @abstractmethod
    def stop(self) -> str:
        """Stop it (bounded wait); returns a detail line."""

    @abstractmethod
    def collect(self) -> WorkloadResult:
        """Fetch the node's records, verify the data, convert to the drill clock."""


def validate_params(cls: type[Workload], params: Mapping[str, Any]) -> list[str]:
    """Unknown parameter names and values of the wrong type (against the kind's DEFAULTS)."""
    problems = []
    for key, value in params.items():
        if key not in cls.DEFAULTS:
            problems.append(f"unknown parameter {key!r} (known: {', '.join(sorted(cls.DEFAULTS))})")
            continue
        default = cls.DEFAULTS[key]
        if default is None:
            continue
        want: tuple[type, ...] = (int, float) if isinstance(default, (int, float)) else (type(default),)
        if isinstance(default, bool):
            want = (bool,)
        if not isinstance(value, want) or (isinstance(value, bool) and not isinstance(default, bool)):
            problems.append(f"{key}: {value!r} is not a {type(default).__name__}")
    return problems


def fetch_file(
    executor: Executor, path: str, *, timeout: float = 60.0, max_bytes: int = FETCH_MAX
) -> str | None:
    """A remote text file, in base64 chunks (the executor caps output); None when it does not exist."""
    q = shlex.quote(path)
    r = executor.run(f"[ -f {q} ] && wc -c < {q}", timeout=timeout)
    if not r.ok:
        return None
    try:
        size = int(r.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    size = min(size, max_bytes)
    parts: list[bytes] = []
    for start in range(0, size, FETCH_CHUNK):
        n = min(FETCH_CHUNK, size - start)
        r = executor.run(f"tail -c +{start + 1} {q} | head -c {n} | base64 -w 0; echo", timeout=timeout)
        if not r.ok:
            break
        try:
            parts.append(base64.b64decode(r.output.strip().splitlines()[-1] if r.output.strip() else ""))
        except ValueError:
            break
    return b"".join(parts).decode("utf-8", "replace")


def put_file(
    executor: Executor, path: str, data: bytes, *, mode: str = "0644", timeout: float = 60.0
) -> bool:
    q = shlex.quote(path)
    d = shlex.quote(path.rsplit("/", 1)[0] or "/")
    return executor.run(f"mkdir -p {d} && cat > {q} && chmod {mode} {q}", timeout=timeout, stdin=data).ok


def background(cmd: str, pidfile: str, log: str) -> str:
    """A shell line that starts `cmd` detached (own session when setsid exists, immune to the ssh hang-up) and
    writes its pid to `pidfile`."""
    p, lg = shlex.quote(pidfile), shlex.quote(log)
    inner = shlex.quote(cmd)
    return (
        f"if command -v setsid >/dev/null 2>&1; then S=setsid; else S=; fi; "
        f"$S nohup sh -c {inner} </dev/null >{lg} 2>&1 & echo $! > {p}; echo started $(cat {p})"
    )


#: sh function: is process $1 running? (a zombie is not: in containers whose PID 1 is `sleep infinity` nobody
#: reaps the detached loop, and `kill -0` succeeds on a zombie)
ALIVE_FN = (
    'alive() { [ -n "$1" ] || return 1; st=$(sed "s/.*) //" /proc/$1/stat 2>/dev/null | cut -c1); '
    '[ -n "$st" ] && [ "$st" != Z ]; }; '
)


def stop_pid(
    executor: Executor, pidfile: str, *, signal: str = "TERM", wait_s: float = 30.0
) -> tuple[bool, str]:
    """Signal the process in `pidfile`, wait up to `wait_s` for it to exit, then KILL it. (True, detail) when it
    exited by itself."""
    p = shlex.quote(pidfile)
    steps = max(1, int(wait_s / 0.2))
    r = executor.run(
        ALIVE_FN + f'pid=$(cat {p} 2>/dev/null); [ -n "$pid" ] || {{ echo no-pid; exit 0; }}; '
        f"alive $pid || {{ echo not-running; exit 0; }}; kill -{signal} $pid 2>/dev/null; "
        f"i=0; while alive $pid && [ $i -lt {steps} ]; do sleep 0.2; i=$((i+1)); done; "
        f"if alive $pid; then kill -KILL $pid 2>/dev/null; echo killed; else echo exited; fi",
        timeout=wait_s + 15,
    )
    word = r.output.strip().splitlines()[-1] if r.output.strip() else f"rc {r.rc}"
    return word in ("exited", "not-running", "no-pid"), word
