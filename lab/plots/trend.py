"""Trends: metrics of indexed runs (results/index.jsonl entries) over runs/revisions, one subplot per metric,
one line per (scenario, target kind). Failed runs are drawn as red crosses. Pure: entries in, Figure out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

DEFAULT_METRICS = ("max_stall_s", "recovered_90_s", "io_errors", "throughput_bps")
#: subplots drawn when no metric list is given (a bench run carries dozens of figures)
MAX_DEFAULT_METRICS = 8
SERIES_COLOURS = ("#1e88e5", "#fb8c00", "#43a047", "#8e24aa", "#6d4c41", "#00897b")


def _scale(metric: str) -> tuple[float, str]:
    if metric.endswith("_bps"):
        return 1e-6, f"{metric.removesuffix('_bps')} (MB/s)"
    return 1.0, metric


def trend_metrics(entries: Sequence[Mapping[str, Any]], wanted: Sequence[str] | None = None) -> list[str]:
    """`wanted` (default: DEFAULT_METRICS then the other metrics, at most MAX_DEFAULT_METRICS) restricted to
    metrics some entry has."""
    seen: list[str] = []
    for e in entries:
        for k, v in (e.get("metrics") or {}).items():
            if v is not None and k not in seen:
                seen.append(k)
    if wanted is not None:
        return [m for m in dict.fromkeys(wanted) if m in seen]
    return [m for m in dict.fromkeys([*DEFAULT_METRICS, *sorted(seen)]) if m in seen][:MAX_DEFAULT_METRICS]


def run_label(e: Mapping[str, Any]) -> str:
    rid = str(e.get("run_id") or "?")
    return f"{e.get('git_rev') or '?'}\n{rid[4:13] if len(rid) >= 13 else rid}"


def trend_figure(
    entries: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None, title: str = "trend"
) -> Figure:
    """x: the entries in the given (chronological) order, labelled git revision + run date."""
    names = trend_metrics(entries, metrics)
    fig = Figure(
        figsize=(max(7.0, 1.0 + 0.55 * len(entries)), 1.2 + 2.3 * max(len(names), 1)), layout="constrained"
    )
    axes = fig.subplots(max(len(names), 1), 1, sharex=True, squeeze=False)[:, 0]
    series: list[tuple[str, str]] = list(
        dict.fromkeys((str(e.get("scenario") or ""), str(e.get("target_kind") or "")) for e in entries)
    )
    for ax, metric in zip(axes, names):
        scale, label = _scale(metric)
        for si, key in enumerate(series):
            pts = [
                (x, float(e["metrics"][metric]) * scale, bool(e.get("passed")))
                for x, e in enumerate(entries)
                if (str(e.get("scenario") or ""), str(e.get("target_kind") or "")) == key
                and (e.get("metrics") or {}).get(metric) is not None
            ]
            if not pts:
                continue
            colour = SERIES_COLOURS[si % len(SERIES_COLOURS)]
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "o-",
                ms=4,
                color=colour,
                label=f"{key[0]} / {key[1]}",
            )
            bad = [p for p in pts if not p[2]]
            if bad:
                ax.plot(
                    [p[0] for p in bad], [p[1] for p in bad], "x", ms=9, color="#e53935", gid="failed-run"
                )
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if not names:
        axes[0].text(0.5, 0.5, "no indexed metrics", transform=axes[0].transAxes, ha="center", color="grey")
    axes[-1].set_xticks(range(len(entries)), labels=[run_label(e) for e in entries], fontsize=7, rotation=45)
    fig.suptitle(title)
    return fig
