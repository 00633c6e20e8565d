"""Per-fault metrics of a failover drill: pure functions from records to numbers.

Every time is seconds on the drill clock (host ``time.time()`` minus the drill's epoch ``t0``). The inputs are
the records of lab/results.py's records.jsonl:

- ``probe`` records ``{initiator, t, ok, lat_s, err}``: one small verified write+read every 100 ms; ``t`` is
  the time the probe I/O *completed* (issue time + ``lat_s``).
- ``throughput`` records ``{initiator, t, window_s, bytes, ios, errors, source}``: ``t`` is the END of a
  window of ``window_s`` seconds.
- ``fault`` records ``{name, fault, injected_at_s, cleared_at_s, ok, detail}``.

Definitions (they are printed in the HTML report), per fault and initiator, over the fault's window
``[injected_at_s, window_end_s]`` where ``window_end_s`` is the next fault's injection or the end of the
workload:

- **max_stall_s**: the longest interval between consecutive successful probe completions inside the window.
  The interval that starts at the last success before the injection counts (a stall that began just before
  the cut is the cut's), and so does the interval from the last success to the window end (I/O that never
  came back stalls until the window ends). Rounded to 0.1 s, the probe period. ``None`` when the initiator
  ran no probe. ``stall_start_s``/``stall_end_s`` say where that interval lies.
- **first_io_after_s**: time from the injection to the first successful probe completion after it
  (``None`` if none in the window).
- **baseline_bps / baseline_iops**: the median rate of the throughput windows that end within
  ``baseline_s`` (10 s) before the injection. Windows of the main workload are used (fio, qemu-img or
  iscsi-perf, the source with the most bytes); the probe's own windows only when there is no other.
- **recovered_90_s**: time from the injection to the start of the first window after which throughput
  stays >= 90 % of the baseline for at least 2 consecutive windows (never earlier than the injection).
  ``None`` when throughput never gets back inside the window, or there is no baseline.
- **io_errors**: errors the application saw inside the window: failed probes plus the ``errors`` of the
  workload's throughput windows (the probe's own windows are not counted twice).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

RESOLUTION_S = 0.1
RECOVERY_FRACTION = 0.9
RECOVERY_WINDOWS = 2
BASELINE_S = 10.0

#: metric name -> one-line definition (for reports)
DEFINITIONS: dict[str, str] = {
    "injected_at_s": "when the fault was injected, seconds on the drill clock (0 = workload start)",
    "max_stall_s": "longest gap between successful probe I/Os from the last success before the injection "
    "to the next fault or the workload end (0.1 s resolution)",
    "first_io_after_s": "injection to the first successful probe I/O after it",
    "recovered_90_s": "injection to the start of the first window from which throughput stays >= 90% of "
    "the pre-fault baseline for 2 consecutive windows (none: never)",
    "io_errors": "failed probe I/Os plus workload I/O errors between the injection and the next fault",
    "baseline_bps": "median throughput of the windows in the 10 s before the injection",
}


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x + 0.0, digits)


def fault_kind(fault: Mapping[str, Any]) -> str:
    """The fault's kind: ``fault`` in a record, ``kind`` in a FaultSpec-like mapping."""
    return str(fault.get("fault") or fault.get("kind") or "")


def _rate(w: Mapping[str, Any], key: str) -> float:
    span = float(w.get("window_s") or 0.0)
    return float(w.get(key) or 0) / span if span > 0 else 0.0


def primary_throughput(throughput: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The windows of the main workload source of ONE initiator, sorted by time.

    Non-probe sources win over the probe's own windows; among them the source with the most bytes.
    """
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for w in throughput:
        if w.get("t") is None:
            continue
        by_source.setdefault(str(w.get("source") or ""), []).append(w)
    if not by_source:
        return []
    candidates = [s for s in by_source if s != "probe"] or list(by_source)
    best = max(candidates, key=lambda s: (sum(float(w.get("bytes") or 0) for w in by_source[s]), s))
    return sorted(by_source[best], key=lambda w: float(w["t"]))


def count_io_errors(
    probes: Sequence[Mapping[str, Any]], throughput: Sequence[Mapping[str, Any]], start_s: float, end_s: float
) -> int:
    """I/O errors in ``(start_s, end_s]``: failed probes plus workload errors (non-probe throughput windows
    ending in the interval)."""
    n = sum(1 for p in probes if not p.get("ok") and p.get("t") is not None and start_s < p["t"] <= end_s)
    n += sum(
        int(w.get("errors") or 0)
        for w in throughput
        if w.get("source") != "probe" and w.get("t") is not None and start_s < w["t"] <= end_s
    )
    return n


def _stall(
    probes: Sequence[Mapping[str, Any]], injected: float, end: float
) -> tuple[float | None, float | None, float | None, float | None]:
    """(max_stall, stall_start, stall_end, first_io_after) over [injected, end]."""
    if not probes:
        return None, None, None, None
    succ = sorted(float(p["t"]) for p in probes if p.get("ok") and p.get("t") is not None)
    before = [t for t in succ if t <= injected]
    start = before[-1] if before else injected
    inside = [t for t in succ if injected < t <= end]
    points = [start, *inside, end]
    best, b_start, b_end = 0.0, start, start
    for a, b in itertools.pairwise(points):
        if b - a > best:
            best, b_start, b_end = b - a, a, b
    first = inside[0] - injected if inside else None
    return best, b_start, b_end, first


def _recovery(
    windows: Sequence[Mapping[str, Any]], injected: float, end: float, key: str, baseline: float
) -> float | None:
    if baseline <= 0:
        return None
    post = [w for w in windows if float(w["t"]) > injected and float(w["t"]) - float(w["window_s"]) < end]
    need = RECOVERY_FRACTION * baseline
    for i in range(len(post) - RECOVERY_WINDOWS + 1):
        if all(_rate(w, key) >= need for w in post[i : i + RECOVERY_WINDOWS]):
            return max(0.0, float(post[i]["t"]) - float(post[i]["window_s"]) - injected)
    return None


def fault_metrics(
    fault: Mapping[str, Any],
    probes: Sequence[Mapping[str, Any]],
    throughput: Sequence[Mapping[str, Any]],
    *,
    window_end_s: float,
    baseline_s: float = BASELINE_S,
) -> dict[str, Any]:
    """The metrics of one fault for ONE initiator's probes and throughput windows (see the module doc)."""
    initiator = next(
        (str(r["initiator"]) for r in [*probes, *throughput] if r.get("initiator") is not None),
        str(fault.get("initiator") or ""),
    )
    injected = fault.get("injected_at_s")
    out: dict[str, Any] = {
        "name": str(fault.get("name") or fault_kind(fault)),
        "kind": fault_kind(fault),
        "initiator": initiator,
        "injected_at_s": _round(injected, 3),
        "cleared_at_s": _round(fault.get("cleared_at_s"), 3),
        "injected_ok": bool(fault.get("ok", injected is not None)),
        "max_stall_s": None,
        "stall_start_s": None,
        "stall_end_s": None,
        "first_io_after_s": None,
        "recovered_90_s": None,
        "io_errors": 0,
        "baseline_bps": None,
        "baseline_iops": None,
        "window_end_s": _round(window_end_s, 3),
    }
    if injected is None:
        return out
    inj = float(injected)
    end = max(float(window_end_s), inj)
    stall, s_start, s_end, first = _stall(probes, inj, end)
    out.update(
        max_stall_s=_round(stall),
        stall_start_s=_round(s_start, 3),
        stall_end_s=_round(s_end, 3),
        first_io_after_s=_round(first, 2),
        io_errors=count_io_errors(probes, throughput, inj, end),
    )
    windows = primary_throughput(throughput)
    base = [
        w for w in windows if inj - baseline_s < float(w["t"]) <= inj and float(w.get("window_s") or 0) > 0
    ]
    if base:
        bps = statistics.median(_rate(w, "bytes") for w in base)
        iops = statistics.median(_rate(w, "ios") for w in base)
        out["baseline_bps"] = round(bps, 1)
        out["baseline_iops"] = round(iops, 1)
        key, level = ("bytes", bps) if bps > 0 else ("ios", iops)
        out["recovered_90_s"] = _round(_recovery(windows, inj, end, key, level))
    return out


def _by_initiator(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r.get("initiator") or ""), []).append(r)
    return out


def summarize_faults(
    faults: Sequence[Mapping[str, Any]],
    probes: Sequence[Mapping[str, Any]],
    throughput: Sequence[Mapping[str, Any]],
    workload_end_s: float | Mapping[str, float],
    *,
    baseline_s: float = BASELINE_S,
) -> list[dict[str, Any]]:
    """fault_metrics for every (fault, initiator) pair, faults in injection order.

    A fault's window ends at the next LATER injection (faults injected at the same moment share a window) or
    at the workload end: one float for all initiators, or a mapping initiator -> the time its workload
    stopped (initiators missing from the mapping use the largest value). A fault with no initiator records
    still gets one row (initiator "") so it shows up in the summary.
    """
    ordered = sorted(
        faults,
        key=lambda f: (f.get("injected_at_s") is None, float(f.get("injected_at_s") or 0.0)),
    )
    p_by = _by_initiator(probes)
    t_by = _by_initiator(throughput)
    initiators = list(dict.fromkeys([*p_by, *t_by]))
    if isinstance(workload_end_s, Mapping):
        default_end = max((float(v) for v in workload_end_s.values()), default=0.0)
        ends = {i: float(workload_end_s.get(i, default_end)) for i in initiators}
    else:
        default_end = float(workload_end_s)
        ends = dict.fromkeys(initiators, default_end)
    injections = sorted({float(f["injected_at_s"]) for f in faults if f.get("injected_at_s") is not None})
    rows: list[dict[str, Any]] = []
    for f in ordered:
        inj = f.get("injected_at_s")
        later = [t for t in injections if inj is not None and t > float(inj)]
        for ini in initiators or [""]:
            end = ends.get(ini, default_end)
            if later:
                end = min(end, later[0])
            rows.append(
                fault_metrics(
                    f, p_by.get(ini, []), t_by.get(ini, []), window_end_s=end, baseline_s=baseline_s
                )
            )
    return rows
