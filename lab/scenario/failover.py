"""The failover drill: workloads on the initiators, a timeline of faults on one drill clock, then metrics.

Phases (after images and bring-up, see lab.scenario.runner):

- prepare:  resolve each initiator's device (the dm-multipath map, or the one disk) and build the faults;
            nothing is started.
- workload: the drill clock starts (t0 = host time.time()); every workload starts (in parallel: a fio
            prefill or an agent upload can take a while on a TCG VM); the timeline's origin is the moment they
            all run (`timeline_origin_s` on the drill clock). Each fault is injected `at_s` after the origin
            and cleared `duration_s` later; `duration_s` of the scenario after the origin every workload
            stops, then any fault still in place is cleared. Every recorded time is on the drill clock.
- verify:   each workload's records (probe, throughput) are collected onto the drill clock and written to
            records.jsonl; lab.metrics.summarize_faults measures every (fault, initiator) pair; data
            verification and the scenario's checks (lab.scenario.checks) are evaluated.

The timeline is bounded: nothing waits past the scenario's duration plus the bounded inject/clear calls.
`Timeline` is independent of the lab (it takes objects with inject/clear and a clock), so it is unit-tested
with fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lab.scenario.model import FaultEntry

#: the timeline sleeps in slices no longer than this (each inject/clear call is bounded by the fault itself)
MAX_SLEEP_SLICE_S = 0.5


class FaultLike(Protocol):
    def inject(self) -> str: ...

    def clear(self) -> str: ...


class WorkloadLike(Protocol):
    def start(self) -> str: ...

    def stop(self) -> str: ...

    def collect(self) -> Any: ...


@dataclass
class FaultRun:
    """One fault of the timeline and what happened to it (becomes a `fault` record)."""

    entry: FaultEntry
    fault: FaultLike
    injected_at_s: float | None = None
    cleared_at_s: float | None = None
    ok: bool = True
    details: list[str] = field(default_factory=list)

    @property
    def clears(self) -> bool:
        return self.entry.duration_s is not None

    def record(self) -> dict[str, Any]:
        return {
            "name": self.entry.name,
            "fault": self.entry.kind,
            "scheduled_at_s": self.entry.at_s,  # after the timeline's origin (the scenario's at_s)
            "injected_at_s": None if self.injected_at_s is None else round(self.injected_at_s, 3),
            "cleared_at_s": None if self.cleared_at_s is None else round(self.cleared_at_s, 3),
            "ok": self.ok and self.injected_at_s is not None,
            "detail": "; ".join(d for d in self.details if d)[-2000:],
            "params": dict(self.entry.params),
        }


@dataclass
class Timeline:
    """Inject and clear faults at their times. Times recorded are on the drill clock (`clock() - t0`); the
    scenario's `at_s` count from `origin_s` on that clock (the moment every workload was running)."""

    runs: list[FaultRun]
    t0: float
    origin_s: float = 0.0
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = lambda m: None

    def now(self) -> float:
        """Seconds on the drill clock."""
        return self.clock() - self.t0

    def events(self) -> list[tuple[float, int, str, FaultRun]]:
        """(time, order, action, run) sorted; clears before injections at the same time."""
        ev: list[tuple[float, int, str, FaultRun]] = []
        for r in self.runs:
            ev.append((r.entry.at_s, 1, "inject", r))
            if r.entry.duration_s is not None:
                ev.append((r.entry.at_s + r.entry.duration_s, 0, "clear", r))
        return sorted(ev, key=lambda e: (e[0], e[1], self.runs.index(e[3])))

    def _wait_until(self, at_s: float) -> None:
        """Until `at_s` after the timeline's origin."""
        while (left := self.origin_s + at_s - self.now()) > 0:
            self.sleep(min(left, MAX_SLEEP_SLICE_S))

    def _inject(self, r: FaultRun) -> None:
        r.injected_at_s = self.now()
        try:
            r.details.append(r.fault.inject())
            self.log(f"{r.entry.name}: injected at {r.injected_at_s:.2f} s")
        except Exception as e:  # a failed injection is a result (the fault record says so), not a crash
            r.ok = False
            r.injected_at_s = None
            r.details.append(f"inject failed: {type(e).__name__}: {e}")
            self.log(f"{r.entry.name}: inject FAILED: {e}")

    def _clear(self, r: FaultRun) -> None:
        if r.injected_at_s is None or r.cleared_at_s is not None:
            return
        t = self.now()
        try:
            r.details.append(r.fault.clear())
            r.cleared_at_s = t
            self.log(f"{r.entry.name}: cleared at {t:.2f} s")
        except Exception as e:
            r.ok = False
            r.details.append(f"clear failed: {type(e).__name__}: {e}")
            self.log(f"{r.entry.name}: clear FAILED: {e}")

    def run(self, until_s: float) -> None:
        """Every event due before `until_s` (after the origin), each at its time (late events run at once,
        never skipped); returns at `until_s`."""
        for at_s, _, action, r in self.events():
            if at_s >= until_s:
                break
            self._wait_until(at_s)
            (self._inject if action == "inject" else self._clear)(r)
        self._wait_until(until_s)

    def clear_remaining(self) -> None:
        """Clear every fault still in place (those with a duration past the end, and 'until the end' ones of
        kinds that undo something, e.g. a cut path). Instantaneous kinds' clear() is a no-op."""
        for r in self.runs:
            if r.injected_at_s is not None and r.cleared_at_s is None:
                self._clear(r)
                if not r.clears and r.cleared_at_s is not None:
                    # an instantaneous fault (or one meant to last to the end) has no clearing time of its own
                    r.cleared_at_s = None
            elif r.injected_at_s is None and any(d.startswith("inject failed") for d in r.details):
                # a failed injection may have done half its work (e.g. a restart that stopped the target and
                # could not start it): every clear() is safe after a failed inject, so restore the lab; the
                # fault keeps no clearing time (it never took effect as planned)
                try:
                    r.details.append("restore after failed inject: " + r.fault.clear())
                except Exception as e:
                    r.details.append(f"restore after failed inject failed: {type(e).__name__}: {e}")
                    self.log(f"{r.entry.name}: restore after failed inject FAILED: {e}")


@dataclass
class Collected:
    """A workload's result, in the runner's terms (from a lab.workloads WorkloadResult or a mapping)."""

    probes: list[dict[str, Any]]
    throughput: list[dict[str, Any]]
    errors: int
    verify_ok: bool | None
    detail: str
    ok: bool
    extra: dict[str, Any]


def collected(result: Any, initiator: str) -> Collected:
    """Read a WorkloadResult (probes, throughput, errors, verify_ok, detail, ok, clock, extra). A result that
    only has `records` (dicts with a `kind`, or (kind, fields) pairs) is split into probes and throughput."""

    def get(name: str, default: Any) -> Any:
        if isinstance(result, Mapping):
            return result.get(name, default)
        return getattr(result, name, default)

    probes = [dict(p) for p in get("probes", None) or []]
    tput = [dict(w) for w in get("throughput", None) or []]
    if not probes and not tput:
        for item in get("records", None) or []:
            kind, rec = (item[0], dict(item[1])) if isinstance(item, tuple) else (None, dict(item))
            kind = kind or rec.pop("kind", None) or ("probe" if "lat_s" in rec else "throughput")
            rec.pop("kind", None)
            if kind == "probe":
                probes.append(rec)
            elif kind == "throughput":
                tput.append(rec)
    for rec in (*probes, *tput):
        rec.setdefault("initiator", initiator)
    extra: dict[str, Any] = {}
    if get("clock", None):
        extra["clock"] = get("clock", None)
    extra.update(get("extra", None) or {})
    return Collected(
        probes=probes,
        throughput=tput,
        errors=int(get("errors", 0) or 0),
        verify_ok=get("verify_ok", None),
        detail=str(get("detail", "") or ""),
        ok=bool(get("ok", True)),
        extra=extra,
    )


def measurement_faults(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fault records as the metrics should see them: faults scheduled at the same time are one event (e.g.
    kill the active node + promote the standby) and share one measurement window, which starts at the first
    of their injections. Each record keeps its own time in `injected_self_s`."""
    first: dict[float, float] = {}
    for r in records:
        if r.get("injected_at_s") is not None:
            at = float(r.get("scheduled_at_s", r["injected_at_s"]))
            first[at] = min(first.get(at, float("inf")), float(r["injected_at_s"]))
    out = []
    for r in records:
        rec = dict(r)
        if rec.get("injected_at_s") is not None:
            rec["injected_self_s"] = rec["injected_at_s"]
            rec["injected_at_s"] = first[float(rec.get("scheduled_at_s", rec["injected_at_s"]))]
        out.append(rec)
    return out


def verify_verdict(workloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """summary["verify"]: ok when every workload that verifies data passed (and at least one verified)."""
    verdicts = [(f"{w['workload']}@{w['initiator']}", w.get("verify_ok")) for w in workloads]
    checked = [(n, v) for n, v in verdicts if v is not None]
    bad = [n for n, v in checked if not v]
    ok = bool(checked) and not bad
    if not checked:
        detail = "no workload verified its data"
    elif bad:
        detail = f"verification FAILED on {', '.join(bad)}"
    else:
        detail = f"data verified by {', '.join(n for n, _ in checked)}"
    return {"ok": ok, "detail": detail}
