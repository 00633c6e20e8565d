import base64
import json
import re
from html.parser import HTMLParser

from lab.report.drill import drill_figures, fault_rows, write_html_report
from lab.report.html import render_html
from lab.results import summary_errors


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.srcs += [v for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


def _records():
    recs = []
    for i in range(300):
        t = i / 10
        if not 10.0 < t < 14.0:
            recs.append({"kind": "probe", "initiator": "vm1", "t": t, "ok": True, "lat_s": 0.003, "err": ""})
    for s in range(1, 31):
        b = 0 if 10 < s <= 15 else 50_000_000
        recs.append(
            {
                "kind": "throughput",
                "initiator": "vm1",
                "t": float(s),
                "window_s": 1.0,
                "bytes": b,
                "ios": b // 4096,
                "errors": 0,
                "source": "fio",
            }
        )
    recs.append(
        {
            "kind": "fault",
            "name": "cut <a>",
            "fault": "cut-path",
            "injected_at_s": 10.05,
            "cleared_at_s": 20.0,
            "ok": True,
            "detail": "nft drop",
        }
    )
    recs.append(
        {
            "kind": "workload",
            "initiator": "vm1",
            "workload": "fio",
            "started_at_s": 0.0,
            "stopped_at_s": 30.0,
            "ok": True,
            "errors": 0,
            "verify_ok": True,
            "detail": "",
        }
    )
    return recs


def _summary(rows):
    return {
        "scenario": "path-failover",
        "run_id": "20261124T010000Z-abcd",
        "started": "2026-11-24T01:00:00+00:00",
        "duration_s": 200.0,
        "passed": False,
        "target_kind": "tgt",
        "git_rev": "abc1234-dirty",
        "phases": [
            {"name": "workload", "passed": True, "seconds": 30.0, "detail": "fio <ok> & probe"},
            {
                "name": "verify",
                "passed": False,
                "seconds": 0.1,
                "detail": "line1\nline2 <script>alert(1)</script>",
            },
        ],
        "initiators": [
            {
                "name": "vm1",
                "kind": "linux-vm",
                "release": "debian12",
                "versions": {"open-iscsi": "2.1"},
                "passed": False,
                "checks": [
                    {"name": "login", "status": "passed", "detail": ""},
                    {"name": "write", "status": "failed", "detail": "EIO <x>"},
                ],
            }
        ],
        "faults": rows,
        "verify": {"ok": False, "detail": "fio verify: bad block at 4096"},
        "checks": [
            {"name": "io_errors max 0", "metric": "io_errors", "status": "failed", "value": 3, "detail": ">0"}
        ],
        "workloads": [{"initiator": "vm1", "workload": "fio", "ok": True, "errors": 0, "verify_ok": False}],
        "bench": {"read_iops": 20000.0},
    }


def test_drill_report_end_to_end(tmp_path):
    recs = _records()
    rows = fault_rows(recs)
    assert len(rows) == 1 and rows[0]["max_stall_s"] == 4.0 and rows[0]["window_end_s"] == 30.0
    s = _summary(rows)
    assert summary_errors(s) == []
    figures = drill_figures(tmp_path, s, recs, dpi=50)
    assert sorted(p.name for p in figures.values()) == ["stalls.png", "timeline.png"]
    html = write_html_report(tmp_path, s, figures).read_text()
    parser = _Collect()
    parser.feed(html)
    # self-contained: every resource is a data URI, two PNGs inlined
    assert parser.srcs and all(src.startswith("data:") for src in parser.srcs)
    pngs = [src for src in parser.srcs if src.startswith("data:image/png;base64,")]
    assert len(pngs) == 2
    assert base64.b64decode(pngs[0].split(",", 1)[1])[:4] == b"\x89PNG"
    # escaped: no injected tags, the text survives
    assert "script" not in parser.tags and "<script>" not in html
    text = "".join(parser.text)
    assert "<script>alert(1)</script>" in text and "cut <a>" in text and "EIO <x>" in text
    # the tables carry the metrics, checks, verification, versions and bench figures
    for needle in (
        "longest stall (s)",
        "4.0",
        "back to 90% (s)",
        "io_errors max 0",
        "VERIFICATION FAILED",
        "open-iscsi 2.1",
        "read_iops",
        "abc1234-dirty",
        "definitions",
    ):
        assert needle in text, needle
    assert re.search(r"<td class=\"num\">50\.0</td>", html)  # baseline MB/s


def test_render_minimal_and_missing_figure(tmp_path):
    s = {"scenario": "quickstart", "run_id": "r", "passed": True, "phases": [], "initiators": []}
    html = render_html(s, {"matrix": tmp_path / "nope.png"})
    assert "plot matrix missing" in html and html.startswith("<!DOCTYPE html>")
    assert "<h2>Faults</h2>" not in html
    rows = fault_rows(
        [{"kind": "fault", "name": "k", "fault": "kill-target", "injected_at_s": None, "ok": False}]
    )
    assert json.loads(json.dumps(rows))[0]["max_stall_s"] is None
