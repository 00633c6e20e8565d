"""A scenario file: a topology (a file next to it, or inline) and the drill to run on it.

    name: path-failover
    description: ...
    topology: path-failover.topology.yml  # or a mapping: an inline topology
    drill: failover                       # compat | failover (lab.scenario.runner)
    timeouts: {bring_up_s: 1800, run_s: 600}
    # failover drills only:
    duration_s: 90                        # the timeline's length, from the moment every workload runs
    workloads:                            # started before the first fault, stopped at duration_s
      - {kind: probe, initiators: [deb12]}          # kinds: probe, fio, qemu-bench, iscsi-perf
                                                    # initiators: default every one that runs the kind
      - {kind: fio, initiators: [deb12], params: {bs: 64k, rw: randrw}}
    faults:                               # the timeline: at_s counts from the moment every workload runs
      - {kind: cut-path, at_s: 30, duration_s: 30, name: cut-a, params: {...}}
    checks:                               # declarative, evaluated after the run (lab.scenario.checks)
      - {metric: io_errors, max: 0}
      - {metric: verify_ok, equals: true}
      - {metric: max_stall_s, max: 30, fault: cut-a}
    not_applicable:                       # target kinds the drill cannot run on, and why
      tgt: tgtd has no ALUA target port groups to swap

Every problem is reported at once as 'path: message' (like topology files), by raising `TopologyError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lab.topology.load import TopologyError, load_topology, parse_topology
from lab.topology.model import TargetKind, Topology
from target.config.native import json_path, path_sort_key

DRILL_NAMES = ("compat", "failover")
WORKLOAD_KINDS = ("probe", "fio", "qemu-bench", "iscsi-perf")
FAULT_KINDS = (
    "cut-path",
    "flap-path",
    "kill-target",
    "restart-target",
    "partition",
    "bandwidth",
    "netem",
    "alua-swap",
    "pr-preempt",
    "lun-reset",
)
#: metrics a check can name (lab.scenario.checks says how each is computed)
CHECK_METRICS = (
    "io_errors",
    "verify_ok",
    "faults_ok",
    "workloads_ok",
    "max_stall_s",
    "first_io_after_s",
    "recovered_90_s",
)
MAX_DURATION_S = 3600

_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,40}$"}
_NODE_LIST = {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string"}}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "topology", "drill"],
    "properties": {
        "name": _NAME,
        "description": {"type": "string"},
        "topology": {"type": ["string", "object"]},
        "drill": {"enum": list(DRILL_NAMES)},
        "timeouts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "bring_up_s": {"type": "integer", "minimum": 10, "maximum": 14400},
                "run_s": {"type": "integer", "minimum": 10, "maximum": 14400},
            },
        },
        "duration_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S},
        "workloads": {
            "type": "array",
            "maxItems": 32,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind"],
                "properties": {
                    "kind": {"enum": list(WORKLOAD_KINDS)},
                    "initiators": _NODE_LIST,
                    "params": {"type": "object"},
                },
            },
        },
        "faults": {
            "type": "array",
            "maxItems": 64,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "at_s"],
                "properties": {
                    "kind": {"enum": list(FAULT_KINDS)},
                    "name": _NAME,
                    "at_s": {"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
                    "duration_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S},
                    "params": {"type": "object"},
                },
            },
        },
        "checks": {
            "type": "array",
            "maxItems": 64,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["metric"],
                "properties": {
                    "metric": {"enum": list(CHECK_METRICS)},
                    "max": {"type": "number"},
                    "min": {"type": "number"},
                    "equals": {"type": ["boolean", "number"]},
                    "fault": {"type": "string"},
                    "initiator": {"type": "string"},
                },
            },
        },
        "not_applicable": {
            "type": "object",
            "propertyNames": {"enum": [k.value for k in TargetKind]},
            "additionalProperties": {"type": "string", "minLength": 1},
        },
    },
}


@dataclass(frozen=True)
class WorkloadEntry:
    """One `workloads:` entry: a workload kind run on each of `initiators` (lab.workloads.WorkloadSpec)."""

    kind: str
    initiators: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FaultEntry:
    """One `faults:` entry (lab.faults.FaultSpec has the same fields)."""

    kind: str
    at_s: float
    name: str
    duration_s: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckSpec:
    """A declarative check: `metric` compared with max / min / equals, over every fault row (or one fault's,
    one initiator's)."""

    metric: str
    max: float | None = None
    min: float | None = None
    equals: bool | float | None = None
    fault: str | None = None
    initiator: str | None = None

    @property
    def text(self) -> str:
        scope = "".join(f" [{k} {v}]" for k, v in (("fault", self.fault), ("initiator", self.initiator)) if v)
        if self.equals is not None:
            cond = f"== {str(self.equals).lower() if isinstance(self.equals, bool) else self.equals}"
        else:
            cond = " and ".join(
                f"{op} {v:g}" for op, v in (("<=", self.max), (">=", self.min)) if v is not None
            )
        return f"{self.metric} {cond}{scope}"


@dataclass
class Scenario:
    name: str
    topology: Topology
    drill: str
    description: str = ""
    bring_up_s: int = 3600
    run_s: int = 1800
    source: str = ""
    duration_s: float = 0.0
    workloads: list[WorkloadEntry] = field(default_factory=list)
    faults: list[FaultEntry] = field(default_factory=list)
    checks: list[CheckSpec] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)
    #: set by `sanlab run --target-kind`: every target was overridden to this kind
    target_kind_override: str | None = None

    @property
    def target_kind(self) -> str:
        """The kind the drill's targets run as ("sanlab", "tgt"; "mixed" when a topology mixes them)."""
        kinds = {t.kind.value for t in self.topology.targets}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def skip_reason(self) -> str | None:
        """Why this drill does not apply to its targets' kind (None: it does)."""
        return self.not_applicable.get(self.target_kind)


def _fault_param_errors() -> Callable[[str, Mapping[str, Any]], list[str]] | None:
    """lab.faults.validate_params when the faults package is installed (its JSON schema per kind)."""
    try:
        from lab.faults import validate_params  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    fn: Callable[[str, Mapping[str, Any]], list[str]] = validate_params
    return fn


def _workload_api() -> (
    tuple[Callable[[str, Mapping[str, Any]], list[str]], Mapping[str, Sequence[str]]] | None
):
    """(param problems of a workload kind, kinds each initiator kind runs) from lab.workloads, when installed."""
    try:
        from lab.workloads import KINDS_FOR_INITIATOR, WorkloadSpec, spec_problems
    except ImportError:
        return None

    def problems(kind: str, params: Mapping[str, Any]) -> list[str]:
        return list(spec_problems(WorkloadSpec(kind, dict(params))))

    return problems, KINDS_FOR_INITIATOR


def _runs_on(kind: str, topo: Topology, api: Any) -> list[str]:
    """Initiators of the topology that can run a workload kind (every one when lab.workloads is absent)."""
    if api is None:
        return [i.name for i in topo.initiators]
    return [i.name for i in topo.initiators if kind in api[1].get(i.kind.value, ())]


def _schema_errors(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in jsonschema.Draft202012Validator(SCHEMA).iter_errors(dict(doc)):
        parts = list(err.absolute_path)
        inst = err.instance
        if err.validator == "required" and isinstance(inst, dict):
            out += [
                (json_path([*parts, k]), "missing required key") for k in err.validator_value if k not in inst
            ]
        elif err.validator == "additionalProperties" and isinstance(inst, dict):
            known = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
            out += [(json_path([*parts, k]), "unknown key") for k in inst if k not in known]
        else:
            out.append((json_path(parts), err.message))
    return sorted(set(out), key=lambda e: path_sort_key(e[0]))


def _semantic_errors(doc: Mapping[str, Any], topo: Topology) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    failover = doc["drill"] == "failover"
    if not failover:
        for key in ("duration_s", "workloads", "faults", "checks"):
            if key in doc:
                errs.append((key, f"only a failover drill has {key} (this one is {doc['drill']})"))
        return errs
    for key in ("duration_s", "workloads"):
        if key not in doc:
            errs.append((key, "missing required key (a failover drill needs it)"))
    duration = float(doc.get("duration_s", MAX_DURATION_S))
    initiators = {i.name: i for i in topo.initiators}
    api = _workload_api()
    for i, w in enumerate(doc.get("workloads", [])):
        for k, name in enumerate(w.get("initiators", [])):
            if name not in initiators:
                errs.append((f"workloads[{i}].initiators[{k}]", f"no initiator named {name!r}"))
            elif api is not None and w["kind"] not in api[1].get(initiators[name].kind.value, ()):
                errs.append(
                    (
                        f"workloads[{i}].initiators[{k}]",
                        f"a {initiators[name].kind.value} initiator cannot run {w['kind']} "
                        f"(it runs: {', '.join(api[1].get(initiators[name].kind.value, ())) or 'nothing'})",
                    )
                )
        if "initiators" not in w and not _runs_on(w["kind"], topo, api):
            errs.append((f"workloads[{i}]", f"no initiator of the topology can run {w['kind']}"))
        if api is not None:
            errs += [(f"workloads[{i}].params", m) for m in api[0](w["kind"], w.get("params", {}))]
    names: dict[str, int] = {}
    param_errors = _fault_param_errors()
    for i, f in enumerate(doc.get("faults", [])):
        where = f"faults[{i}]"
        name = f.get("name") or f"{f['kind']}-{i + 1}"
        if name in names:
            errs.append((f"{where}.name", f"duplicate fault name {name!r} (first: faults[{names[name]}])"))
        names.setdefault(name, i)
        if f["at_s"] >= duration:
            errs.append(
                (f"{where}.at_s", f"{f['at_s']:g} s is not before the end of the workload ({duration:g} s)")
            )
        elif "duration_s" in f and f["at_s"] + f["duration_s"] > duration:
            errs.append(
                (
                    f"{where}.duration_s",
                    f"the fault would clear at {f['at_s'] + f['duration_s']:g} s, after the workload ends "
                    f"({duration:g} s)",
                )
            )
        if param_errors is not None:
            for m in param_errors(f["kind"], f.get("params", {})):  # "params.x: message"
                sub, _, msg = m.partition(": ")
                errs.append((f"{where}.{sub}", msg) if msg else (where, m))
    for i, c in enumerate(doc.get("checks", [])):
        where = f"checks[{i}]"
        ops = [k for k in ("max", "min", "equals") if k in c]
        if not ops:
            errs.append((where, "a check needs max, min or equals"))
        elif "equals" in c and len(ops) > 1:
            errs.append((where, "equals cannot be combined with max or min"))
        if c["metric"] in ("verify_ok", "faults_ok", "workloads_ok") and ops and ops != ["equals"]:
            errs.append((where, f"{c['metric']} is true or false: use equals"))
        if "fault" in c and c["fault"] not in names:
            errs.append((f"{where}.fault", f"no fault named {c['fault']!r}"))
        if "initiator" in c and c["initiator"] not in initiators:
            errs.append((f"{where}.initiator", f"no initiator named {c['initiator']!r}"))
    return errs


def load_scenario(path: str | Path, *, target_kind: str | None = None) -> Scenario:
    """Read and validate a scenario file. `target_kind` (sanlab run --target-kind) overrides every target's
    kind. Raises TopologyError listing every problem (schema, topology, semantics) or OSError."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TopologyError([f"(file): not valid YAML: {e}"], source=str(p)) from e
    if not isinstance(data, dict):
        raise TopologyError(["(top level): a scenario is a mapping (name, topology, drill)"], source=str(p))
    errors = _schema_errors(data)
    if errors:
        raise TopologyError([f"{w or '(top level)'}: {m}" for w, m in errors], source=str(p))
    topo_ref = data["topology"]
    try:
        topo = load_topology(p.parent / topo_ref) if isinstance(topo_ref, str) else parse_topology(topo_ref)
    except TopologyError as e:
        raise TopologyError(
            [f"topology.{m}" if isinstance(topo_ref, dict) else m for m in e.errors],
            source=e.source or str(p),
        ) from None
    if target_kind is not None:
        topo = topo.with_target_kind(TargetKind(target_kind))
    errors = sorted(_semantic_errors(data, topo), key=lambda e: path_sort_key(e[0]))
    if errors:
        raise TopologyError([f"{w}: {m}" for w, m in errors], source=str(p))
    t = data.get("timeouts", {})
    api = _workload_api()
    return Scenario(
        name=data["name"],
        topology=topo,
        drill=data["drill"],
        description=data.get("description", ""),
        bring_up_s=t.get("bring_up_s", 3600),
        run_s=t.get("run_s", 1800),
        source=str(p),
        duration_s=float(data.get("duration_s", 0.0)),
        workloads=[
            WorkloadEntry(
                w["kind"],
                tuple(w.get("initiators", _runs_on(w["kind"], topo, api))),
                dict(w.get("params", {})),
            )
            for w in data.get("workloads", [])
        ],
        faults=[
            FaultEntry(
                f["kind"],
                float(f["at_s"]),
                f.get("name") or f"{f['kind']}-{i + 1}",
                float(f["duration_s"]) if "duration_s" in f else None,
                dict(f.get("params", {})),
            )
            for i, f in enumerate(data.get("faults", []))
        ],
        checks=[
            CheckSpec(
                c["metric"], c.get("max"), c.get("min"), c.get("equals"), c.get("fault"), c.get("initiator")
            )
            for c in data.get("checks", [])
        ],
        not_applicable=dict(data.get("not_applicable", {})),
        target_kind_override=target_kind,
    )
