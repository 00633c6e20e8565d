"""The compatibility matrix: initiators (rows) x checks (columns), green passed / red failed / grey skipped.

`matrix_figure` is pure (summary initiators in, Figure out; no pyplot state); `matrix_markdown` is the same
table as Markdown for report.md and matrix.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

STATUS_VALUE = {"skipped": 0, "passed": 1, "failed": 2}
STATUS_COLOUR = ("#c8c8c8", "#4caf50", "#e53935")
STATUS_MARK = {"passed": "pass", "failed": "FAIL", "skipped": "n/a"}


def check_names(initiators: Sequence[Mapping[str, Any]]) -> list[str]:
    """Check names in first-seen order across all initiators."""
    names: list[str] = []
    for ini in initiators:
        for c in ini["checks"]:
            if c["name"] not in names:
                names.append(c["name"])
    return names


def row_label(ini: Mapping[str, Any]) -> str:
    release = f" ({ini['release']})" if ini.get("release") else ""
    return f"{ini['name']}: {ini['kind']}{release}"


def status_grid(initiators: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], list[list[str]]]:
    cols = check_names(initiators)
    rows = [row_label(i) for i in initiators]
    grid = []
    for ini in initiators:
        by_name = {c["name"]: c["status"] for c in ini["checks"]}
        grid.append([by_name.get(c, "skipped") for c in cols])
    return rows, cols, grid


def matrix_figure(initiators: Sequence[Mapping[str, Any]], title: str = "compatibility matrix") -> Figure:
    rows, cols, grid = status_grid(initiators)
    fig = Figure(figsize=(1.2 + 1.1 * max(len(cols), 1), 1.0 + 0.5 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    values = [[STATUS_VALUE[s] for s in r] for r in grid] or [[0]]
    ax.imshow(values, cmap=ListedColormap(STATUS_COLOUR), vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    for y, r in enumerate(grid):
        for x, s in enumerate(r):
            ax.text(x, y, STATUS_MARK[s], ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks([x - 0.5 for x in range(1, len(cols))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.set_title(title)
    return fig


def matrix_markdown(initiators: Sequence[Mapping[str, Any]]) -> str:
    rows, cols, grid = status_grid(initiators)
    lines = ["| initiator | " + " | ".join(cols) + " | result |", "|---" * (len(cols) + 2) + "|"]
    for ini, label, r in zip(initiators, rows, grid, strict=True):
        verdict = "**passed**" if ini["passed"] else "**FAILED**"
        lines.append(f"| {label} | " + " | ".join(STATUS_MARK[s] for s in r) + f" | {verdict} |")
    return "\n".join(lines) + "\n"
