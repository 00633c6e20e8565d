"""The scenario's declarative checks, evaluated on a failover drill's results (pure functions).

Each check names a metric and a condition (`max`, `min` or `equals`), optionally narrowed to one fault or one
initiator. What each metric is:

- io_errors: I/O errors the application saw. Narrowed to a fault: the sum of that fault's rows (errors inside
  its window, lab.metrics). Otherwise: the larger of the sum over every fault row and the errors the
  workloads reported over their whole run (an error outside every fault window still counts).
- verify_ok: data verification passed on every workload that verifies (and at least one did).
- faults_ok: every fault was injected (and, if it clears, cleared) without an error.
- workloads_ok: every workload started, ran and stopped cleanly.
- max_stall_s, first_io_after_s, recovered_90_s: the largest value over the fault rows in scope. A row with no
  value (no probe ran; throughput never came back to 90 %) fails a `max` check: "never" is not a number.

A check with nothing in scope (no fault rows where rows are needed) fails: a drill that measured nothing
must not pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.scenario.model import CheckSpec

ROW_METRICS = ("max_stall_s", "first_io_after_s", "recovered_90_s")


def _rows(check: CheckSpec, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        r
        for r in rows
        if (check.fault is None or r.get("name") == check.fault)
        and (check.initiator is None or r.get("initiator") == check.initiator)
    ]


def _workloads(check: CheckSpec, workloads: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [w for w in workloads if check.initiator is None or w.get("initiator") == check.initiator]


def metric_value(
    check: CheckSpec,
    rows: Sequence[Mapping[str, Any]],
    workloads: Sequence[Mapping[str, Any]],
    faults: Sequence[Mapping[str, Any]],
) -> tuple[Any, str]:
    """(value, why) of the check's metric in its scope; value None means 'not measured / never'."""
    m = check.metric
    in_rows = _rows(check, rows)
    wls = _workloads(check, workloads)
    if m == "io_errors":
        from_rows = sum(int(r.get("io_errors") or 0) for r in in_rows)
        if check.fault is not None:
            return (from_rows if in_rows else None), f"{len(in_rows)} fault rows"
        from_wl = sum(int(w.get("errors") or 0) for w in wls)
        return max(from_rows, from_wl), f"fault windows {from_rows}, workloads {from_wl}"
    if m == "verify_ok":
        verdicts = [w.get("verify_ok") for w in wls if w.get("verify_ok") is not None]
        if not verdicts:
            return None, "no workload verified data"
        return all(verdicts), f"{sum(bool(v) for v in verdicts)}/{len(verdicts)} workloads verified"
    if m == "faults_ok":
        fs = [f for f in faults if check.fault is None or f.get("name") == check.fault]
        if not fs:
            return None, "no fault ran"
        bad = [str(f.get("name")) for f in fs if not f.get("ok")]
        return not bad, f"failed: {', '.join(bad)}" if bad else f"{len(fs)} faults injected"
    if m == "workloads_ok":
        if not wls:
            return None, "no workload ran"
        bad = [f"{w.get('workload')}@{w.get('initiator')}" for w in wls if not w.get("ok")]
        return not bad, f"failed: {', '.join(bad)}" if bad else f"{len(wls)} workloads ok"
    # row metrics: the worst (largest) value, None if any row has none
    if not in_rows:
        return None, "no fault rows in scope"
    values = [r.get(m) for r in in_rows]
    if any(v is None for v in values):
        missing = [f"{r.get('name')}@{r.get('initiator')}" for r in in_rows if r.get(m) is None]
        return None, f"no value for {', '.join(missing)}"
    worst = max(float(v) for v in values if v is not None)
    return worst, f"worst of {len(values)} fault rows"


def evaluate(
    checks: Sequence[CheckSpec],
    rows: Sequence[Mapping[str, Any]],
    workloads: Sequence[Mapping[str, Any]],
    faults: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Every check -> {name, metric, status (passed|failed), value, detail} (summary.json `checks`)."""
    out = []
    for c in checks:
        value, why = metric_value(c, rows, workloads, faults)
        ok = value is not None
        if ok and c.equals is not None:
            ok = value == c.equals
        if ok and c.max is not None:
            ok = float(value) <= c.max
        if ok and c.min is not None:
            ok = float(value) >= c.min
        shown = "never / not measured" if value is None else value
        out.append(
            {
                "name": c.text,
                "metric": c.metric,
                "status": "passed" if ok else "failed",
                "value": value,
                "detail": f"{c.metric} = {shown} ({why})",
            }
        )
    return out
