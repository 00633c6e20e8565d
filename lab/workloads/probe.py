"""The 100 ms stall probe on a Linux VM's device: ships `probe_agent.py`, runs it detached, collects its lines.

Region: `offset_mib` (default 64 MiB + 1 MiB per `slot`) and `blocks` 4 KiB blocks (default 256 = 1 MiB); the
runner gives initiators that share a LUN different slots. A probe record is made for every I/O the agent
issued (`t` = its completion on the drill clock); missed slots (the schedule could not issue because an I/O
was still outstanding) are counted in the workload record (`missed_slots`), they are the stall itself.
The probe also yields one `throughput` window per second (source "probe": completed I/Os x 4 KiB x 2).
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
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

AGENT = Path(__file__).with_name("probe_agent.py")
BLOCK = 4096
PROBE_BASE_MIB = 64


def parse_agent_lines(text: str) -> dict[str, Any]:
    """The agent's JSON Lines -> {"start", "ios", "missed", "end", "verify", "bad_lines"}."""
    out: dict[str, Any] = {
        "start": None,
        "ios": [],
        "missed": [],
        "end": None,
        "verify": None,
        "bad_lines": 0,
    }
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            out["bad_lines"] += 1  # a line cut short by a kill
            continue
        kind = rec.get("type") if isinstance(rec, dict) else None
        if kind == "io":
            out["ios"].append(rec)
        elif kind == "missed":
            out["missed"].append(rec)
        elif kind in ("start", "end", "verify"):
            out[kind] = rec
        else:
            out["bad_lines"] += 1
    return out


def probe_records(
    ios: list[dict[str, Any]], initiator: str, to_drill: Any, *, window_s: float = 1.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Probe records and per-second throughput windows (source "probe") on the drill clock."""
    probes = []
    for io in ios:
        t_start, t_end = float(io["t_start"]), float(io["t_end"])
        probes.append(
            {
                "initiator": initiator,
                "t": round(to_drill(t_end), 4),
                "ok": bool(io.get("ok")),
                "lat_s": round(t_end - t_start, 6),
                "op": "write+read",
                "err": str(io.get("err") or ""),
            }
        )
    probes.sort(key=lambda p: p["t"])
    windows: list[dict[str, Any]] = []
    if probes:
        first = math.floor(probes[0]["t"] / window_s)
        last = math.floor(probes[-1]["t"] / window_s)
        buckets: dict[int, list[dict[str, Any]]] = {k: [] for k in range(first, last + 1)}
        for p in probes:
            buckets[math.floor(p["t"] / window_s)].append(p)
        for k, ps in buckets.items():
            good = sum(1 for p in ps if p["ok"])
            windows.append(
                {
                    "initiator": initiator,
                    "t": round((k + 1) * window_s, 4),
                    "window_s": window_s,
                    "bytes": good * 2 * BLOCK,
                    "ios": 2 * good,
                    "errors": len(ps) - good,
                    "source": "probe",
                }
            )
    return probes, windows


class ProbeWorkload(Workload):
    kind: ClassVar[str] = "probe"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "interval_s": 0.1,
        "slot": 0,  # which MiB of the probe area (initiators sharing a LUN need different slots)
        "offset_mib": None,  # default: 64 + slot
        "blocks": 256,
        "direct": "on",
        "python": "python3",
        "verify_timeout_s": 60.0,
        "drain_timeout_s": 30.0,
    }

    def _paths(self) -> tuple[str, str, str, str, str]:
        w = self.workdir
        return f"{w}/probe_agent.py", f"{w}/probe.jsonl", f"{w}/state.json", f"{w}/pid", f"{w}/agent.log"

    def _offset(self) -> int:
        mib = self.params["offset_mib"]
        if mib is None:
            mib = PROBE_BASE_MIB + int(self.params["slot"])
        return int(mib) << 20

    def start(self) -> str:
        agent, out, state, pid, log = self._paths()
        self.clock.before = measure_offset(self.executor)
        ok, msg = self.sh(f"rm -rf {shlex.quote(self.workdir)}; mkdir -p {shlex.quote(self.workdir)}")
        if not ok or not put_file(self.executor, agent, AGENT.read_bytes()):
            raise WorkloadError(f"probe on {self.node}: cannot ship the agent: {msg[-200:]}")
        argv = [
            str(self.params["python"]),
            agent,
            "run",
            "--device",
            self.device,
            "--offset",
            str(self._offset()),
            "--blocks",
            str(int(self.params["blocks"])),
            "--out",
            out,
            "--state",
            state,
            "--interval",
            str(float(self.params["interval_s"])),
            "--duration",
            str(float(self.max_duration_s)),
            "--direct",
            str(self.params["direct"]),
            "--drain-timeout",
            str(float(self.params["drain_timeout_s"])),
            "--verify-timeout",
            str(float(self.params["verify_timeout_s"])),
        ]
        ok, msg = self.sh(background("exec " + shlex.join(argv), pid, log), timeout=30)
        self.started_at_s = self.now_s()
        if not ok:
            raise WorkloadError(f"probe on {self.node}: start failed: {msg[-300:]}")
        # the agent writes its start line at once; a bad device makes it exit at once
        ok, msg = self.sh(
            ALIVE_FN + f"i=0; while [ $i -lt 50 ]; do [ -s {shlex.quote(out)} ] && exit 0; "
            f"alive $(cat {shlex.quote(pid)}) || break; sleep 0.1; i=$((i+1)); done; "
            f"cat {shlex.quote(log)}; exit 1",
            timeout=30,
        )
        if not ok:
            raise WorkloadError(f"probe on {self.node}: agent did not start: {msg[-300:]}")
        return (
            f"probe agent on {self.device} at {self._offset() >> 20} MiB, every {self.params['interval_s']} s"
        )

    def stop(self) -> str:
        pid = self._paths()[3]
        wait = float(self.params["drain_timeout_s"]) + float(self.params["verify_timeout_s"]) + 10
        clean, word = stop_pid(self.executor, pid, wait_s=wait)
        self.stopped_at_s = self.now_s()
        return f"probe agent {word}" + ("" if clean else " (did not exit by itself)")

    def _verify_from_state(self) -> dict[str, Any] | None:
        agent, _out, state, _pid, _log = self._paths()
        t = float(self.params["verify_timeout_s"])
        argv = [str(self.params["python"]), agent, "verify", "--state", state, "--device", self.device]
        argv += ["--direct", str(self.params["direct"]), "--verify-timeout", str(t)]
        _ok, out = self.sh(f"[ -f {shlex.quote(state)} ] && " + shlex.join(argv), timeout=t + 30)
        lines = parse_agent_lines(out)
        verify: dict[str, Any] | None = lines["verify"]
        return verify

    def collect(self) -> WorkloadResult:
        _agent, out, _state, _pid, log = self._paths()
        self.clock.after = measure_offset(self.executor)
        text = fetch_file(self.executor, out)
        if text is None:
            _, tail = self.sh(f"tail -c 600 {shlex.quote(log)}")
            return self.result(ok=False, verify_ok=False, detail=f"no probe output: {tail.strip()[-300:]}")
        parsed = parse_agent_lines(text)
        if parsed["verify"] is None:  # the agent was killed before its own pass: verify from its state file
            parsed["verify"] = self._verify_from_state()
        probes, windows = probe_records(parsed["ios"], self.node, self.clock.drill)
        errors = sum(1 for p in probes if not p["ok"])
        verify = parsed["verify"]
        verify_ok = bool(verify and verify.get("ok"))
        end = parsed["end"] or {}
        start = parsed["start"] or {}
        parts = [
            f"{len(probes)} probe I/Os, {errors} failed, {len(parsed['missed'])} missed slots",
            f"O_DIRECT {'on' if start.get('direct') else 'OFF'}",
            f"ended by {end.get('reason', 'kill (no end line)')}",
        ]
        if verify is None:
            parts.append("no verify pass")
        else:
            parts.append(
                f"verify {'ok' if verify_ok else 'FAILED'}: {verify.get('checked', 0)} blocks"
                + ("" if verify_ok else f", bad {verify.get('bad', [])[:3]}")
            )
        if end.get("outstanding"):
            parts.append("an I/O was still outstanding at the end")
        parts.append(self.clock.summary())
        return self.result(
            ok=bool(probes) and errors == 0 and verify_ok,
            errors=errors,
            verify_ok=verify_ok,
            detail="; ".join(parts),
            probes=probes,
            throughput=windows,
            extra={
                "missed_slots": len(parsed["missed"]),
                "probe_ios": len(probes),
                "verify_checked": (verify or {}).get("checked", 0),
            },
        )
