"""The results layout: `results/<scenario>/<run-id>/` with

    summary.json    what happened, validated against SUMMARY_SCHEMA (initiators, checks, phases, `passed`)
    records.jsonl   raw records, one JSON object per line, in the order they were made
    report.md       a short human report (tables)
    report.html     the same, self-contained with its plots inlined (lab.report.html; failover drills)
    *.png, *.md     plots and tables beside them (e.g. matrix.png, matrix.md)
    ansible/        the rendered inventory and playbook logs

`RunDir.create` makes the directory; `record` appends a raw record; `write_summary` refuses a summary that does
not match the schema (so every drill's summary.json has the same shape). Failover drills add `target_kind`,
`faults` (lab.metrics.faults rows), `verify`, `checks` and `workloads`; benchmarks may add `bench`
(name -> number). Every run is also one line of `results/index.jsonl` (lab.report.index).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

SUMMARY = "summary.json"
RECORDS = "records.jsonl"
REPORT = "report.md"
CHECK_STATUSES = ("passed", "failed", "skipped")
_RUN_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}$")
PHASE_NAMES = ("images", "bring-up", "prepare", "run", "workload", "faults", "verify", "tear-down")
_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
_CHECK_STATUS: dict[str, Any] = {"enum": list(CHECK_STATUSES)}

#: one entry of summary["faults"]: lab.metrics.faults.fault_metrics for one (fault, initiator) pair
FAULT_ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "kind", "injected_at_s", "max_stall_s", "recovered_90_s", "io_errors"],
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "initiator": {"type": "string"},
        "injected_at_s": _NUM_OR_NULL,
        "cleared_at_s": _NUM_OR_NULL,
        "injected_ok": {"type": "boolean"},
        "max_stall_s": _NUM_OR_NULL,
        "stall_start_s": _NUM_OR_NULL,
        "stall_end_s": _NUM_OR_NULL,
        "first_io_after_s": _NUM_OR_NULL,
        "recovered_90_s": _NUM_OR_NULL,
        "io_errors": {"type": "integer", "minimum": 0},
        "baseline_bps": _NUM_OR_NULL,
        "baseline_iops": _NUM_OR_NULL,
        "window_end_s": _NUM_OR_NULL,
        "detail": {"type": "string"},
    },
}

SUMMARY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["scenario", "run_id", "started", "duration_s", "passed", "phases", "initiators"],
    "properties": {
        "scenario": {"type": "string", "minLength": 1},
        "run_id": {"type": "string", "pattern": _RUN_ID_RE.pattern},
        "started": {"type": "string"},
        "duration_s": {"type": "number", "minimum": 0},
        "passed": {"type": "boolean"},
        "kept": {"type": "boolean"},
        "phases": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "passed", "seconds"],
                "properties": {
                    "name": {"enum": list(PHASE_NAMES)},
                    "passed": {"type": "boolean"},
                    "seconds": {"type": "number", "minimum": 0},
                    "detail": {"type": "string"},
                },
            },
        },
        "targets": {"type": "array", "items": {"type": "object", "required": ["name", "kind"]}},
        "target_kind": {"type": "string", "description": "the kind every target ran as (sanlab, tgt, ...)"},
        "git_rev": {"type": "string", "description": "git rev-parse --short HEAD (+ -dirty) of the project"},
        "faults": {"type": "array", "items": FAULT_ROW_SCHEMA},
        "verify": {
            "type": "object",
            "required": ["ok"],
            "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
        },
        "checks": {
            "description": "the scenario's declarative checks, evaluated",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status"],
                "anyOf": [{"required": ["name"]}, {"required": ["metric"]}],
                "properties": {
                    "name": {"type": "string"},
                    "metric": {"type": "string"},
                    "status": _CHECK_STATUS,
                    "detail": {"type": "string"},
                    "value": {},
                },
            },
        },
        "workloads": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["initiator", "workload", "ok"],
                "properties": {
                    "initiator": {"type": "string"},
                    "workload": {"type": "string"},
                    "started_at_s": _NUM_OR_NULL,
                    "stopped_at_s": _NUM_OR_NULL,
                    "ok": {"type": "boolean"},
                    "errors": {"type": "integer", "minimum": 0},
                    "verify_ok": {"type": ["boolean", "null"]},
                    "detail": {"type": "string"},
                },
            },
        },
        "bench": {
            "description": "benchmark figures, name -> value (indexed for regression tracking)",
            "type": "object",
            "additionalProperties": {"type": ["number", "null"]},
        },
        "node_checks": {
            "description": "testinfra after bring-up: one entry per node",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["node", "host", "passed", "tests"],
                "properties": {
                    "node": {"type": "string"},
                    "host": {"type": "string"},
                    "role": {"type": "string"},
                    "passed": {"type": "boolean"},
                    "seconds": {"type": "number", "minimum": 0},
                    "tests": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["test", "status"],
                            "properties": {
                                "test": {"type": "string"},
                                "status": {"enum": list(CHECK_STATUSES)},
                                "detail": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
        "initiators": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind", "release", "versions", "checks", "passed"],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string"},
                    "release": {"type": ["string", "null"]},
                    "versions": {"type": "object", "additionalProperties": {"type": "string"}},
                    "passed": {"type": "boolean"},
                    "checks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "status", "detail"],
                            "properties": {
                                "name": {"type": "string"},
                                "status": {"enum": list(CHECK_STATUSES)},
                                "detail": {"type": "string"},
                                "seconds": {"type": "number", "minimum": 0},
                            },
                        },
                    },
                },
            },
        },
    },
}


def new_run_id(now: dt.datetime | None = None) -> str:
    """UTC timestamp plus 4 hex digits: sorts by time, unique across runs started in the same second."""
    t = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{t:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def summary_errors(summary: Mapping[str, Any]) -> list[str]:
    """Every way `summary` departs from SUMMARY_SCHEMA, as 'path: message' (empty list: valid)."""
    validator = jsonschema.Draft202012Validator(SUMMARY_SCHEMA)
    out = []
    for err in sorted(validator.iter_errors(dict(summary)), key=lambda e: list(map(str, e.absolute_path))):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path).lstrip(".")
        out.append(f"{path or '(top level)'}: {err.message}")
    return out


@dataclass
class RunDir:
    path: Path
    scenario: str
    run_id: str

    @classmethod
    def create(cls, root: Path, scenario: str, run_id: str | None = None) -> RunDir:
        rid = run_id or new_run_id()
        if not _RUN_ID_RE.match(rid):
            raise ValueError(f"bad run id {rid!r}")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", scenario):
            raise ValueError(f"bad scenario name {scenario!r}")
        path = Path(root) / scenario / rid
        path.mkdir(parents=True, exist_ok=False)
        return cls(path, scenario, rid)

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one raw record (with wall-clock time `t` and its `kind`) to records.jsonl."""
        rec = {"t": round(time.time(), 3), "kind": kind, **fields}
        with (self.path / RECORDS).open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=False, default=str) + "\n")
        return rec

    def records(self) -> list[dict[str, Any]]:
        p = self.path / RECORDS
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        errors = summary_errors(summary)
        if errors:
            raise ValueError("summary does not match the schema:\n  " + "\n  ".join(errors))
        return self._write(SUMMARY, json.dumps(summary, indent=2) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        return self._write(name, text)

    def _write(self, name: str, text: str) -> Path:
        dest = self.path / name
        tmp = dest.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, dest)
        return dest
