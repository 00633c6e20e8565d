"""Benchmark workloads: what one measurement runs (load generator, operation, block size, queue depth).

A workload is named ``<tool>-<op>-<bs>-qd<qd>``, e.g. ``qemu-read-4k-qd32`` or ``iscsiperf-read-128k-qd1``:

- ``qemu``: ``qemu-img bench`` over qemu's libiscsi block driver (C; reads and writes);
- ``iscsiperf``: libiscsi's ``iscsi-perf`` (C; reads only, time-limited).

Sizes accept ``k``/``m``/``g`` suffixes (binary: 4k = 4096). A scenario file (``scenarios/bench-*.yml``) lists
workloads as mappings ``{tool, op, bs, qd}`` under ``bench.workloads`` with optional ``rounds``, ``seconds``,
``lun_size`` and ``iperf3``; command-line options override the file.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TOOLS = ("qemu", "iscsiperf")
OPS = ("read", "write")
#: which operations each load generator can do
TOOL_OPS: dict[str, tuple[str, ...]] = {"qemu": ("read", "write"), "iscsiperf": ("read",)}
MAX_QD = 256
MAX_BS = 16 * 1024 * 1024
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_NAME_RE = re.compile(r"^(qemu|iscsiperf)-(read|write)-(\d+[kmg]?)-qd(\d+)$")


class WorkloadError(ValueError):
    """A workload, size or scenario file that cannot be used; the message says which and why."""


def parse_size(text: str | int) -> int:
    """``4k`` -> 4096, ``1GiB`` -> 1073741824, ``512`` -> 512 (binary units)."""
    if isinstance(text, int):
        if text <= 0:
            raise WorkloadError(f"size must be positive: {text}")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise WorkloadError(f"not a size: {text!r} (e.g. 4k, 128k, 1g)")
    value = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise WorkloadError(f"size must be positive: {text!r}")
    return value


def format_size(n: int) -> str:
    """4096 -> ``4k``; 1048576 -> ``1m``; odd sizes stay in bytes."""
    for suffix, unit in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


@dataclass(frozen=True, order=True)
class Workload:
    tool: str
    op: str
    bs: int
    qd: int

    def __post_init__(self) -> None:
        if self.tool not in TOOLS:
            raise WorkloadError(f"unknown load generator {self.tool!r}; one of {', '.join(TOOLS)}")
        if self.op not in TOOL_OPS[self.tool]:
            raise WorkloadError(f"{self.tool} cannot {self.op}; it does {', '.join(TOOL_OPS[self.tool])}")
        if not 512 <= self.bs <= MAX_BS or self.bs % 512:
            raise WorkloadError(f"block size {self.bs} must be a multiple of 512 in 512..{MAX_BS}")
        if not 1 <= self.qd <= MAX_QD:
            raise WorkloadError(f"queue depth {self.qd} must be in 1..{MAX_QD}")

    @property
    def name(self) -> str:
        return f"{self.tool}-{self.op}-{format_size(self.bs)}-qd{self.qd}"

    @classmethod
    def from_name(cls, name: str) -> Workload:
        m = _NAME_RE.match(name.strip().lower())
        if not m:
            raise WorkloadError(
                f"bad workload name {name!r} (e.g. qemu-read-4k-qd32, iscsiperf-read-128k-qd1)"
            )
        return cls(m.group(1), m.group(2), parse_size(m.group(3)), int(m.group(4)))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Workload:
        unknown = set(raw) - {"tool", "op", "bs", "qd"}
        if unknown:
            raise WorkloadError(f"unknown workload keys {sorted(unknown)} in {dict(raw)}")
        try:
            tool = str(raw["tool"]).replace("qemu-img", "qemu").replace("iscsi-perf", "iscsiperf")
            return cls(tool, str(raw["op"]), parse_size(raw["bs"]), int(raw["qd"]))
        except KeyError as e:
            raise WorkloadError(f"workload {dict(raw)} lacks {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, WorkloadError):
                raise
            raise WorkloadError(f"workload {dict(raw)}: {e}") from None


def standard_workloads() -> list[Workload]:
    """The full set: 4 KiB and 128 KiB, read and write (qemu-img) and read (iscsi-perf), QD 1 and 32."""
    out: list[Workload] = []
    for qd in (32, 1):
        for bs in (4096, 128 * 1024):
            out.append(Workload("qemu", "read", bs, qd))
            out.append(Workload("qemu", "write", bs, qd))
            out.append(Workload("iscsiperf", "read", bs, qd))
    return out


def select(workloads: Sequence[Workload], patterns: Iterable[str] | None) -> list[Workload]:
    """Workloads whose name matches any of the comma-separated glob `patterns` (``*qd32``, ``qemu-*-4k-*``);
    a pattern without a glob character matches as a substring. None or empty: all."""
    pats = [p.strip().lower() for chunk in (patterns or []) for p in chunk.split(",") if p.strip()]
    if not pats:
        return list(workloads)
    chosen = [
        w
        for w in workloads
        if any(fnmatch.fnmatch(w.name, p) if any(c in p for c in "*?[") else p in w.name for p in pats)
    ]
    if not chosen:
        raise WorkloadError(
            f"no workload matches {', '.join(pats)}; known: {', '.join(w.name for w in workloads)}"
        )
    return chosen


@dataclass(frozen=True)
class BenchScenario:
    name: str
    description: str
    workloads: tuple[Workload, ...]
    rounds: int | None = None
    seconds: float | None = None
    lun_size: int | None = None
    iperf3: bool = True


def load_scenario(path: str | Path) -> BenchScenario:
    """Read a ``scenarios/bench-*.yml`` file (``drill: bench``)."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise WorkloadError(f"{p}: {e}") from None
    if not isinstance(doc, dict):
        raise WorkloadError(f"{p}: not a mapping")
    if doc.get("drill", "bench") != "bench":
        raise WorkloadError(f"{p}: drill is {doc.get('drill')!r}, not bench")
    bench = doc.get("bench")
    if not isinstance(bench, dict):
        raise WorkloadError(f"{p}: needs a `bench:` mapping")
    unknown = set(bench) - {"workloads", "rounds", "seconds", "lun_size", "iperf3"}
    if unknown:
        raise WorkloadError(f"{p}: unknown keys under bench: {sorted(unknown)}")
    raw = bench.get("workloads")
    if not isinstance(raw, list) or not raw:
        raise WorkloadError(f"{p}: bench.workloads must be a non-empty list")
    workloads: list[Workload] = []
    for i, item in enumerate(raw):
        try:
            w = Workload.from_name(item) if isinstance(item, str) else Workload.from_mapping(item)
        except WorkloadError as e:
            raise WorkloadError(f"{p}: bench.workloads[{i}]: {e}") from None
        if w not in workloads:
            workloads.append(w)
    rounds = bench.get("rounds")
    seconds = bench.get("seconds")
    if rounds is not None and (not isinstance(rounds, int) or not 1 <= rounds <= 50):
        raise WorkloadError(f"{p}: bench.rounds must be an integer in 1..50")
    if seconds is not None and (not isinstance(seconds, (int, float)) or not 0.5 <= seconds <= 120):
        raise WorkloadError(f"{p}: bench.seconds must be a number in 0.5..120")
    lun_size = parse_size(bench["lun_size"]) if "lun_size" in bench else None
    name = str(doc.get("name") or p.stem.removesuffix(".yml"))
    return BenchScenario(
        name=name,
        description=str(doc.get("description", "")),
        workloads=tuple(workloads),
        rounds=rounds,
        seconds=float(seconds) if seconds is not None else None,
        lun_size=lun_size,
        iperf3=bool(bench.get("iperf3", True)),
    )
