"""bench.md (Markdown table), bench.png (grouped bars with spread) and the console table (pure renderers).

The chart has two panels: throughput relative to tgtd's median (tgtd = 1.0, with its own min-max spread;
sanlab = the paired ratio median with its min-max) and the goal lines; and absolute IOPS (log scale) per target
with min-max error bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from rich.table import Table

from lab.bench.stats import GOALS, Spread, TargetFigures, WorkloadFigures

COLOURS = {"sanlab": "#1f77b4", "tgtd": "#ff7f0e"}


def _rate(t: TargetFigures | None) -> str:
    if t is None or t.iops is None or t.mb_s is None:
        return "failed" if t is not None and t.failures else "-"
    return f"{t.iops.median:,.0f} IOPS, {t.mb_s.median:,.1f} MB/s"


def _ratio(r: Spread | None) -> str:
    if r is None:
        return "-"
    return f"{r.median:.2f}x [{r.min:.2f}-{r.max:.2f}] (n={r.n})"


def _num(v: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _pair(figs: WorkloadFigures, attr: str, fmt: str) -> str:
    parts = []
    for kind in ("sanlab", "tgtd"):
        t = figs.targets.get(kind)
        if t is not None:
            parts.append(_num(getattr(t, attr), fmt))
    return " / ".join(parts) if parts else "-"


def _load(load: Mapping[str, float]) -> str:
    return f"{load['min']:.2f}-{load['max']:.2f}" if load else "-"


COLUMNS = (
    "workload",
    "sanlab",
    "tgtd",
    "ratio median [min-max]",
    "CPU s/GB (sanlab / tgtd)",
    "CPU s/10k IO (sanlab / tgtd)",
    "peak RSS MiB (sanlab / tgtd)",
)


def rows(figures: Sequence[WorkloadFigures]) -> list[list[str]]:
    out = []
    for f in figures:
        out.append(
            [
                f.workload.name,
                _rate(f.targets.get("sanlab")),
                _rate(f.targets.get("tgtd")),
                _ratio(f.ratio),
                _pair(f, "cpu_s_per_gb", "{:.2f}"),
                _pair(f, "cpu_s_per_10k_io", "{:.3f}"),
                _pair(f, "rss_peak_mib", "{:.0f}"),
            ]
        )
    return out


def markdown(summary: Mapping[str, Any], figures: Sequence[WorkloadFigures]) -> str:
    detail = summary.get("bench_detail", {})
    cfg = detail.get("config", {})
    lines = [
        f"# sanlab bench {summary.get('run_id', '')}",
        "",
        f"- rounds: {cfg.get('rounds')}, seconds per measurement: {cfg.get('seconds')}, "
        f"order: {cfg.get('order', 'alternating')}",
        f"- LUN: {cfg.get('lun', '')}",
        f"- load average (1 min) during the measurements: {_load(detail.get('load1', {}))}"
        f" on {detail.get('cpu_count', '?')} CPUs",
    ]
    loop = detail.get("loopback")
    if loop and loop.get("mb_s"):
        s = loop["mb_s"]
        lines.append(
            f"- loopback limit (iperf3, one stream): {s['median']:,.0f} MB/s [{s['min']:,.0f}-{s['max']:,.0f}]"
        )
    elif loop and loop.get("error"):
        lines.append(f"- loopback limit: not measured ({loop['error']})")
    for name, frac in sorted(detail.get("loopback_fraction", {}).items()):
        lines.append(f"- {name}: {frac:.0%} of the loopback limit")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows(figures):
        lines.append("| " + " | ".join(row) + " |")
    goals = summary.get("goals") or []
    if goals:
        lines += ["", "## Goals (issue 7)", "", "| goal | status | detail |", "|---|---|---|"]
        for g in goals:
            lines.append(f"| {g['name']} | {g['status']} | {g['detail']} |")
    scale = detail.get("scale")
    if scale:
        lines += ["", "## Scale", "", "| figure | value |", "|---|---|"]
        for k, v in scale.items():
            lines.append(f"| {k} | {v:,.2f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines.append("")
    return "\n".join(lines)


def console_table(figures: Sequence[WorkloadFigures], title: str = "sanlab vs tgtd") -> Table:
    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for row in rows(figures):
        table.add_row(*row)
    return table


def chart(figures: Sequence[WorkloadFigures], title: str = "sanlab vs tgtd") -> Figure:
    """Grouped bars: relative to tgtd (top) and absolute IOPS, log scale (bottom); min-max as error bars."""
    fig = Figure(figsize=(max(8.0, 1.1 * len(figures) + 3), 8.0), layout="constrained")
    rel, ab = fig.subplots(2, 1)
    names = [f.workload.name for f in figures]
    xs = list(range(len(figures)))
    width = 0.38
    for i, kind in enumerate(("sanlab", "tgtd")):
        offs = [x + (i - 0.5) * width for x in xs]
        rel_v, rel_lo, rel_hi, ab_v, ab_lo, ab_hi = [], [], [], [], [], []
        for f in figures:
            t = f.targets.get(kind)
            ref = f.targets.get("tgtd")
            if kind == "sanlab":
                r = f.ratio
            elif t is not None and t.mb_s is not None and t.mb_s.median > 0:
                m = t.mb_s
                r = Spread(1.0, m.min / m.median, m.max / m.median, m.n)
            else:
                r = None
            if ref is None and kind == "sanlab":
                r = None
            rel_v.append(r.median if r else 0.0)
            rel_lo.append(r.median - r.min if r else 0.0)
            rel_hi.append(r.max - r.median if r else 0.0)
            s = t.iops if t else None
            ab_v.append(s.median if s else 0.0)
            ab_lo.append(s.median - s.min if s else 0.0)
            ab_hi.append(s.max - s.median if s else 0.0)
        rel.bar(offs, rel_v, width, yerr=[rel_lo, rel_hi], capsize=3, color=COLOURS[kind], label=kind)
        ab.bar(offs, ab_v, width, yerr=[ab_lo, ab_hi], capsize=3, color=COLOURS[kind], label=kind)
    for x, f in zip(xs, figures, strict=True):
        need = GOALS.get((f.workload.op, f.workload.bs, f.workload.qd))
        if need is not None:
            rel.hlines(need, x - width, x + width, colors="red", linestyles="dashed", linewidth=1.2)
    rel.set_ylabel("throughput / tgtd median")
    rel.set_title(f"{title}: relative to tgtd; red dashes: goal")
    ab.set_ylabel("IOPS (log)")
    if any(f.targets for f in figures):
        ab.set_yscale("log", nonpositive="clip")
    ab.set_title("absolute IOPS, median with min-max")
    for ax in (rel, ab):
        ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return fig
