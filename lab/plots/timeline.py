"""The drill timeline: throughput (MB/s) and probe latency over time, one subplot per initiator.

Marked on every subplot: fault spans shaded (injection to clearing), injection lines, the longest stall of
each fault (hatched span) and its recovery to 90 % of the pre-fault throughput (dotted green line).
Pure: records in, Figure out (explicit Figure/Axes API, no pyplot). Artists carry a ``gid`` ("fault-span",
"injection", "stall", "recovery", "throughput", "probe-ok", "probe-failed") so tests and tools can find them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lab.metrics.faults import fault_kind, primary_throughput

FAULT_COLOUR = "#e53935"
STALL_COLOUR = "#fb8c00"
RECOVERY_COLOUR = "#2e7d32"
THROUGHPUT_COLOUR = "#1e88e5"
LATENCY_COLOUR = "#757575"
#: stalls shorter than this are not drawn (a probe period or two is not a stall)
MIN_STALL_DRAWN_S = 0.5


def initiators_of(*groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """Initiator names in first-seen order across record groups (records without one are skipped)."""
    names: list[str] = []
    for g in groups:
        for r in g:
            ini = r.get("initiator")
            if ini and ini not in names:
                names.append(str(ini))
    return names


#: fault labels closer than this fraction of the x range are merged into one ("a + b")
LABEL_MERGE_FRACTION = 0.02
#: successive labels closer than this fraction are set on alternating heights
LABEL_STAGGER_FRACTION = 0.10


def fault_labels(faults: Sequence[Mapping[str, Any]], span_s: float) -> list[tuple[float, str, int]]:
    """(x, text, level) of the fault labels: faults injected within LABEL_MERGE_FRACTION of `span_s` of each
    other share one label, and a label close to the previous one goes one level up (so none overlap)."""
    points = sorted(
        (float(f["injected_at_s"]), str(f.get("name") or fault_kind(f)))
        for f in faults
        if f.get("injected_at_s") is not None
    )
    merge, stagger = LABEL_MERGE_FRACTION * span_s, LABEL_STAGGER_FRACTION * span_s
    groups: list[tuple[float, list[str]]] = []
    for x, name in points:
        if groups and x - groups[-1][0] <= merge:
            if name not in groups[-1][1]:
                groups[-1][1].append(name)
        else:
            groups.append((x, [name]))
    out: list[tuple[float, str, int]] = []
    for x, names in groups:
        level = 1 - out[-1][2] if out and x - out[-1][0] < stagger else 0
        out.append((x, " + ".join(names), level))
    return out


def _faults_on(ax: Axes, faults: Sequence[Mapping[str, Any]], label_them: bool) -> None:
    for f in faults:
        inj = f.get("injected_at_s")
        if inj is None:
            continue
        cleared = f.get("cleared_at_s")
        if cleared is not None and cleared > inj:
            ax.axvspan(inj, cleared, color=FAULT_COLOUR, alpha=0.10, lw=0, gid="fault-span")
        ax.axvline(inj, color=FAULT_COLOUR, ls="--", lw=1.2, gid="injection")
    if label_them:
        lo, hi = ax.get_xlim()
        for x, text, level in fault_labels(faults, max(hi - lo, 1e-9)):
            ax.annotate(
                text,
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, 2 + 9 * level),
                textcoords="offset points",
                fontsize=7,
                color=FAULT_COLOUR,
                va="bottom",
                gid="fault-label",
            )


def _metrics_on(ax: Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    for m in rows:
        start, end, stall = m.get("stall_start_s"), m.get("stall_end_s"), m.get("max_stall_s")
        if start is not None and end is not None and stall is not None and stall >= MIN_STALL_DRAWN_S:
            ax.axvspan(
                start,
                end,
                facecolor="none",
                edgecolor=STALL_COLOUR,
                hatch="///",
                lw=0.8,
                gid="stall",
                label=None,
            )
            ax.annotate(
                f"stall {stall:.1f} s",
                xy=((start + end) / 2, 0.5),
                xycoords=("data", "axes fraction"),
                ha="center",
                fontsize=7,
                color=STALL_COLOUR,
            )
        inj, rec = m.get("injected_at_s"), m.get("recovered_90_s")
        if inj is not None and rec is not None:
            ax.axvline(inj + rec, color=RECOVERY_COLOUR, ls=":", lw=1.5, gid="recovery")
            ax.plot(
                [inj + rec],
                [1.0],
                marker="v",
                color=RECOVERY_COLOUR,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                gid="recovery",
            )


def timeline_figure(
    probes: Sequence[Mapping[str, Any]],
    throughput: Sequence[Mapping[str, Any]],
    faults: Sequence[Mapping[str, Any]],
    metrics: Sequence[Mapping[str, Any]],
    title: str = "drill timeline",
) -> Figure:
    """One subplot per initiator: throughput (left axis, MB/s) and probe latency (right axis, ms)."""
    names = initiators_of(probes, throughput, metrics) or [""]
    fig = Figure(figsize=(11, 1.0 + 2.6 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, name) in enumerate(zip(axes, names)):
        tp = primary_throughput([w for w in throughput if w.get("initiator") == name])
        lat = ax.twinx()
        if tp:
            xs = [float(w["t"]) for w in tp]
            ys = [
                float(w.get("bytes") or 0) / float(w["window_s"]) / 1e6 if w.get("window_s") else 0.0
                for w in tp
            ]
            ax.step(
                xs,
                ys,
                where="pre",
                color=THROUGHPUT_COLOUR,
                lw=1.4,
                gid="throughput",
                label=f"throughput ({tp[0].get('source', '?')})",
            )
        mine = [p for p in probes if p.get("initiator") == name and p.get("t") is not None]
        ok = [p for p in mine if p.get("ok")]
        bad = [p for p in mine if not p.get("ok")]
        if ok:
            lat.plot(
                [p["t"] for p in ok],
                [1000 * float(p.get("lat_s") or 0) for p in ok],
                ".",
                ms=2,
                color=LATENCY_COLOUR,
                gid="probe-ok",
                label="probe latency",
            )
        if bad:
            lat.plot(
                [p["t"] for p in bad],
                [1000 * float(p.get("lat_s") or 0) for p in bad],
                "x",
                ms=5,
                color=FAULT_COLOUR,
                gid="probe-failed",
                label="failed probe",
            )
        _faults_on(ax, faults, label_them=i == 0)
        _metrics_on(ax, [m for m in metrics if m.get("initiator") in (name, "")])
        ax.set_ylabel("MB/s")
        ax.set_ylim(bottom=0)
        lat.set_ylabel("probe latency (ms)", color=LATENCY_COLOUR)
        lat.set_ylim(bottom=0)
        ax.set_title(name or "(no initiator data)", loc="left", fontsize=9)
        ax.grid(alpha=0.3)
        if not tp and not mine:
            ax.text(0.5, 0.5, "no records", transform=ax.transAxes, ha="center", va="center", color="grey")
        handles = [h for a in (ax, lat) for h in a.get_legend_handles_labels()[0]]
        if handles:
            ax.legend(handles=handles, loc="lower left", fontsize=7)
    axes[-1].set_xlabel("seconds since workload start (drill clock)")
    fig.suptitle(title)
    return fig
