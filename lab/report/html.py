"""A self-contained HTML report of one run: inline CSS, plots inlined as base64 data URIs, every value escaped.

Sections (each only when the summary has it): run header, phases, verification, checks, faults (the per-fault
metrics with their definitions), workloads, initiators (compat matrix), node checks, bench figures, plots.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from lab.metrics.faults import DEFINITIONS
from lab.plots.matrix import STATUS_MARK, status_grid

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.passed,.ok{color:#1b5e20;font-weight:600}.failed,.bad{color:#b71c1c;font-weight:600}.skipped{color:#777}
.meta{color:#555}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.85em}pre{white-space:pre-wrap;font-size:.85em;margin:0}
dl.defs dt{font-weight:600}dl.defs dd{margin:0 0 .4em 1.2em;color:#444}
"""

FAULT_COLUMNS = (
    ("name", "fault"),
    ("kind", "kind"),
    ("initiator", "initiator"),
    ("injected_at_s", "injected at (s)"),
    ("cleared_at_s", "cleared at (s)"),
    ("max_stall_s", "longest stall (s)"),
    ("first_io_after_s", "first I/O after (s)"),
    ("recovered_90_s", "back to 90% (s)"),
    ("io_errors", "I/O errors"),
    ("baseline_bps", "baseline MB/s"),
)


def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, bool):
        return _e(v)
    if isinstance(v, int):
        return _e(v)
    if isinstance(v, float):
        return _e(f"{v:.{digits}f}")
    return _e(v)


def _status(ok: Any, yes: str = "passed", no: str = "FAILED") -> str:
    if ok is None:
        return '<span class="skipped">n/a</span>'
    return f'<span class="{"passed" if ok else "failed"}">{_e(yes if ok else no)}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _detail(v: Any, limit: int = 2000) -> str:
    text = "" if v is None else str(v)
    if len(text) > limit:
        text = "..." + text[-limit:]
    return f"<pre>{_e(text)}</pre>" if "\n" in text else _e(text)


def _fault_cell(row: Mapping[str, Any], key: str) -> str:
    v = row.get(key)
    if key == "baseline_bps":
        return _num(None if v is None else float(v) / 1e6)
    if key == "recovered_90_s" and v is None and row.get("baseline_bps") is not None:
        return '<span class="bad">never</span>'
    if key == "io_errors":
        return f'<span class="{"bad" if v else "ok"}">{_num(v)}</span>'
    if key in ("injected_at_s", "cleared_at_s", "first_io_after_s"):
        return _num(v, 2)
    return _num(v) if isinstance(v, int | float) or v is None else _e(v)


def faults_section(faults: Sequence[Mapping[str, Any]]) -> str:
    rows = [[_fault_cell(f, k) for k, _ in FAULT_COLUMNS] for f in faults]
    defs = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in DEFINITIONS.items())
    return (
        "<h2>Faults</h2>"
        + _table([h for _, h in FAULT_COLUMNS], rows, numeric=range(3, len(FAULT_COLUMNS)))
        + f'<details><summary>definitions</summary><dl class="defs">{defs}</dl></details>'
    )


def _initiators_section(initiators: Sequence[Mapping[str, Any]]) -> str:
    rows, cols, grid = status_grid(initiators)
    out = ["<h2>Initiators</h2>"]
    table_rows = []
    for ini, label, r in zip(initiators, rows, grid):
        cells = [_e(label)]
        cells += [f'<span class="{s}">{_e(STATUS_MARK[s])}</span>' for s in r]
        cells.append(_status(ini.get("passed")))
        table_rows.append(cells)
    out.append(_table(["initiator", *cols, "result"], table_rows))
    vers = []
    for ini in initiators:
        v = ", ".join(f"{k} {val}" for k, val in (ini.get("versions") or {}).items())
        vers.append([_e(ini.get("name")), _e(ini.get("kind")), _e(ini.get("release")), _e(v)])
    out.append(_table(["name", "kind", "release", "versions"], vers))
    failed = [
        [_e(ini.get("name")), _e(c.get("name")), _detail(c.get("detail"), 600)]
        for ini in initiators
        for c in ini.get("checks") or []
        if c.get("status") == "failed"
    ]
    if failed:
        out.append("<h3>Failed checks</h3>" + _table(["initiator", "check", "detail"], failed))
    return "".join(out)


def _figure(name: str, path: Path) -> str:
    p = Path(path)
    if not p.is_file():
        return f'<p class="bad">plot {_e(name)} missing ({_e(p.name)})</p>'
    mime = mimetypes.guess_type(p.name)[0] or "image/png"
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_e(name)}" src="data:{_e(mime)};base64,{data}">'
        f"<figcaption>{_e(name)}</figcaption></figure>"
    )


def render_html(summary: Mapping[str, Any], figures: Mapping[str, Path] | None = None) -> str:
    """The whole report as one HTML string (no external resources)."""
    s = summary
    title = f"{s.get('scenario', '?')}: {'passed' if s.get('passed') else 'FAILED'}"
    meta = [
        f"run <code>{_e(s.get('run_id'))}</code>",
        f"started {_e(s.get('started'))}",
        f"{_num(s.get('duration_s'), 0)} s",
    ]
    if s.get("target_kind"):
        meta.append(f"target {_e(s['target_kind'])}")
    if s.get("git_rev"):
        meta.append(f"revision <code>{_e(s['git_rev'])}</code>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(s.get('scenario', '?'))}: {_status(s.get('passed'))}</h1>",
        f'<p class="meta">{" &middot; ".join(meta)}</p>',
    ]
    phases = s.get("phases") or []
    if phases:
        parts.append("<h2>Phases</h2>")
        parts.append(
            _table(
                ["phase", "result", "s", "detail"],
                [
                    [
                        _e(p.get("name")),
                        _status(p.get("passed"), "done"),
                        _num(p.get("seconds")),
                        _detail(p.get("detail")),
                    ]
                    for p in phases
                ],
                numeric=(2,),
            )
        )
    verify = s.get("verify")
    if isinstance(verify, Mapping):
        parts.append(
            f"<h2>Verification</h2><p>{_status(verify.get('ok'), 'data verified', 'VERIFICATION FAILED')} "
            f"{_detail(verify.get('detail'))}</p>"
        )
    checks = s.get("checks") or []
    if checks:
        parts.append("<h2>Checks</h2>")
        parts.append(
            _table(
                ["check", "status", "value", "detail"],
                [
                    [
                        _e(c.get("name") or c.get("metric")),
                        f'<span class="{_e(c.get("status"))}">{_e(c.get("status"))}</span>',
                        _num(c.get("value"), 2),
                        _detail(c.get("detail")),
                    ]
                    for c in checks
                ],
            )
        )
    if s.get("faults"):
        parts.append(faults_section(s["faults"]))
    workloads = s.get("workloads") or []
    if workloads:
        parts.append("<h2>Workloads</h2>")
        parts.append(
            _table(
                [
                    "initiator",
                    "workload",
                    "result",
                    "errors",
                    "verified",
                    "started (s)",
                    "stopped (s)",
                    "detail",
                ],
                [
                    [
                        _e(w.get("initiator")),
                        _e(w.get("workload")),
                        _status(w.get("ok"), "ok"),
                        _num(w.get("errors")),
                        _status(w.get("verify_ok"), "yes", "NO"),
                        _num(w.get("started_at_s"), 2),
                        _num(w.get("stopped_at_s"), 2),
                        _detail(w.get("detail"), 800),
                    ]
                    for w in workloads
                ],
                numeric=(3, 5, 6),
            )
        )
    if s.get("initiators"):
        parts.append(_initiators_section(s["initiators"]))
    node_checks = s.get("node_checks") or []
    if node_checks:
        rows = []
        for nc in node_checks:
            tests = nc.get("tests") or []
            counts = ", ".join(
                f"{n} {st}"
                for st in ("passed", "failed", "skipped")
                if (n := sum(t.get("status") == st for t in tests))
            )
            rows.append(
                [
                    _e(nc.get("node")),
                    f"<code>{_e(nc.get('host'))}</code>",
                    _status(nc.get("passed")),
                    _e(counts),
                ]
            )
        parts.append("<h2>Node checks (testinfra)</h2>" + _table(["node", "host", "result", "tests"], rows))
    bench = s.get("bench") or {}
    if bench:
        parts.append(
            "<h2>Benchmark</h2>"
            + _table(["figure", "value"], [[_e(k), _num(v, 2)] for k, v in bench.items()], numeric=(1,))
        )
    if figures:
        parts.append("<h2>Plots</h2>")
        parts.extend(_figure(name, path) for name, path in figures.items())
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
