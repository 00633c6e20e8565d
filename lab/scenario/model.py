"""A scenario file: a topology (a file next to it, or inline) and the drill to run on it.

name: compat-matrix
description: ...
topology: compat-matrix.topology.yml     # or a mapping: an inline topology
drill: compat                            # the drill's checks (lab.scenario.runner.DRILLS)
timeouts: {bring_up_s: 3600, run_s: 1800}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lab.topology.load import TopologyError, load_topology, parse_topology
from lab.topology.model import Topology
from target.config.native import json_path

DRILL_NAMES = ("compat",)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "topology", "drill"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,40}$"},
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
    },
}


@dataclass
class Scenario:
    name: str
    topology: Topology
    drill: str
    description: str = ""
    bring_up_s: int = 3600
    run_s: int = 1800
    source: str = ""


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TopologyError([f"(file): not valid YAML: {e}"], source=str(p)) from e
    if not isinstance(data, dict):
        raise TopologyError(["(top level): a scenario is a mapping (name, topology, drill)"], source=str(p))
    errors = [
        f"{json_path(e.absolute_path) or '(top level)'}: {e.message}"
        for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(data)
    ]
    if errors:
        raise TopologyError(sorted(errors), source=str(p))
    topo_ref = data["topology"]
    try:
        topo = load_topology(p.parent / topo_ref) if isinstance(topo_ref, str) else parse_topology(topo_ref)
    except TopologyError as e:
        raise TopologyError(
            [f"topology.{m}" if isinstance(topo_ref, dict) else m for m in e.errors],
            source=e.source or str(p),
        ) from None
    t = data.get("timeouts", {})
    return Scenario(
        data["name"],
        topo,
        data["drill"],
        data.get("description", ""),
        t.get("bring_up_s", 3600),
        t.get("run_s", 1800),
        str(p),
    )
