"""Stall and recovery bars: max_stall_s and recovered_90_s per (drill, initiator), one bar per target kind
side by side (e.g. sanlab next to tgt). Pure: rows in, Figure out.

rows: ``[{drill, initiator, target_kind, max_stall_s, recovered_90_s}]``; several rows for the same
(drill, initiator, target_kind) (several faults) are reduced to their maximum. A missing value draws no bar
and is written "n/a" (recovered_90_s: "never" when a stall was measured but throughput never came back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

METRICS = (("max_stall_s", "longest I/O stall (s)"), ("recovered_90_s", "back to 90% throughput (s)"))
KIND_COLOURS = ("#1e88e5", "#fb8c00", "#43a047", "#8e24aa", "#6d4c41")


def bar_table(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[tuple[str, str]], list[str], dict[tuple[str, str, str, str], float | None]]:
    """(groups (drill, initiator), target kinds, {(drill, initiator, kind, metric): max value or None})."""
    groups: list[tuple[str, str]] = []
    kinds: list[str] = []
    values: dict[tuple[str, str, str, str], float | None] = {}
    for r in rows:
        g = (str(r.get("drill") or ""), str(r.get("initiator") or ""))
        k = str(r.get("target_kind") or "sanlab")
        if g not in groups:
            groups.append(g)
        if k not in kinds:
            kinds.append(k)
        for metric, _ in METRICS:
            key = (*g, k, metric)
            v = r.get(metric)
            old = values.get(key)
            if v is None:
                values.setdefault(key, None)
            else:
                values[key] = float(v) if old is None else max(old, float(v))
    return groups, kinds, values


def stall_bars_figure(rows: Sequence[Mapping[str, Any]], title: str = "stalls and recovery") -> Figure:
    groups, kinds, values = bar_table(rows)
    fig = Figure(figsize=(max(6.0, 2.0 + 1.3 * len(groups) * max(len(kinds), 1)), 4.2), layout="constrained")
    axes = fig.subplots(1, len(METRICS), squeeze=False)[0]
    width = 0.8 / max(len(kinds), 1)
    labels = [f"{d}\n{i}" if d else i for d, i in groups]
    for ax, (metric, label) in zip(axes, METRICS):
        for j, kind in enumerate(kinds):
            xs, hs, missing = [], [], []
            for gi, g in enumerate(groups):
                x = gi - 0.4 + width * (j + 0.5)
                key = (*g, kind, metric)
                if key not in values:
                    continue
                v = values[key]
                if v is None:
                    stalled = values.get((*g, kind, "max_stall_s")) is not None
                    missing.append((x, "never" if metric == "recovered_90_s" and stalled else "n/a"))
                else:
                    xs.append(x)
                    hs.append(v)
            bars = ax.bar(
                xs, hs, width=width * 0.95, color=KIND_COLOURS[j % len(KIND_COLOURS)], label=kind, gid=metric
            )
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
            for x, text in missing:
                ax.text(x, 0, text, ha="center", va="bottom", fontsize=8, fontweight="bold", color="#e53935")
        ax.set_xticks(range(len(groups)), labels=labels, fontsize=8)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(metric, fontsize=9)
        if kinds:
            ax.legend(title="target", fontsize=7, title_fontsize=7)
    if not groups:
        axes[0].text(0.5, 0.5, "no faults", transform=axes[0].transAxes, ha="center", color="grey")
    fig.suptitle(title)
    return fig
