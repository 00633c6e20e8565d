"""Glue for the runner: a failover run's records.jsonl + summary -> fault rows, PNG plots and report.html.

rows = fault_rows(records, workload_end_s)            # summary["faults"]
figures = drill_figures(run_dir, summary, records)    # timeline.png, stalls.png (+ matrix.png if present)
write_html_report(run_dir, summary, figures)          # report.html
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.metrics.faults import summarize_faults
from lab.plots.stalls import stall_bars_figure
from lab.plots.timeline import timeline_figure
from lab.report.html import render_html


def records_of(records: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("kind") == kind]


def fault_rows(
    records: Sequence[Mapping[str, Any]], workload_end_s: float | Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """summarize_faults over a run's records; the workload end defaults to each initiator's workload
    ``stopped_at_s`` (or the last probe/throughput time seen)."""
    probes, tp = records_of(records, "probe"), records_of(records, "throughput")
    if workload_end_s is None:
        ends: dict[str, float] = {}
        for w in records_of(records, "workload"):
            if w.get("stopped_at_s") is not None:
                ini = str(w.get("initiator") or "")
                ends[ini] = max(ends.get(ini, 0.0), float(w["stopped_at_s"]))
        last = max((float(r["t"]) for r in [*probes, *tp] if r.get("t") is not None), default=0.0)
        workload_end_s = ends or last
    return summarize_faults(records_of(records, "fault"), probes, tp, workload_end_s)


def drill_figures(
    run_dir: Path, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]], *, dpi: int = 110
) -> dict[str, Path]:
    """Write timeline.png and stalls.png into run_dir; return {caption: path} (matrix.png too when present)."""
    run_dir = Path(run_dir)
    name = str(summary.get("scenario") or "drill")
    kind = str(summary.get("target_kind") or "sanlab")
    rows = list(summary.get("faults") or [])
    figures: dict[str, Path] = {}
    fig = timeline_figure(
        records_of(records, "probe"),
        records_of(records, "throughput"),
        records_of(records, "fault"),
        rows,
        title=f"{name} ({kind}): throughput, probe latency, faults",
    )
    fig.savefig(run_dir / "timeline.png", dpi=dpi)
    figures["timeline: throughput and probe latency per initiator"] = run_dir / "timeline.png"
    if rows:
        bars = [
            {
                "drill": name,
                "initiator": r.get("initiator"),
                "target_kind": kind,
                "max_stall_s": r.get("max_stall_s"),
                "recovered_90_s": r.get("recovered_90_s"),
            }
            for r in rows
        ]
        stall_bars_figure(bars, title=f"{name} ({kind}): stalls and recovery").savefig(
            run_dir / "stalls.png", dpi=dpi
        )
        figures["longest stall and time back to 90% per initiator"] = run_dir / "stalls.png"
    if (run_dir / "matrix.png").is_file():
        figures["compatibility matrix"] = run_dir / "matrix.png"
    return figures


def write_html_report(run_dir: Path, summary: Mapping[str, Any], figures: Mapping[str, Path]) -> Path:
    dest = Path(run_dir) / "report.html"
    tmp = dest.with_name(".report.html.tmp")
    tmp.write_text(render_html(summary, figures), encoding="utf-8")
    os.replace(tmp, dest)
    return dest
