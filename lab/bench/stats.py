"""From raw samples (one per measurement) to figures, goals and the flat ``bench`` metrics (pure).

Definitions (they go into bench.md):
- throughput of a sample = the load generator's own I/Os / seconds (IOPS) and bytes / seconds (MB/s, 10^6);
- per workload and target: median, min and max over rounds;
- ratio = sanlab / tgtd per round (the two measured back to back in that round), then median [min-max]
  over rounds; a round where either side failed is left out;
- target CPU s/GB = target CPU seconds (utime+stime of every process in the target's session) summed over the
  workload's samples / bytes moved (10^9); CPU s per 10k I/Os likewise;
- peak RSS = VmHWM at the end (summed over the target's processes);
- loopback fraction = median 128 KiB read MB/s / median iperf3 loopback MB/s (one TCP stream).
Goals (issue 7): QD32, median of >= 3 rounds: 128 KiB read and write >= 1.0x tgtd; 4 KiB read and write
>= 0.8x tgtd. Each QD32 workload with that size and operation is a goal (qemu-img and iscsi-perf alike).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.bench.workloads import Workload

MB = 1e6
GB = 1e9
GOAL_MIN_ROUNDS = 3
#: (op, bs, qd) -> minimum ratio to tgtd
GOALS: dict[tuple[str, int, int], float] = {
    ("read", 128 * 1024, 32): 1.0,
    ("write", 128 * 1024, 32): 1.0,
    ("read", 4096, 32): 0.8,
    ("write", 4096, 32): 0.8,
}


@dataclass
class Sample:
    workload: str
    target: str
    round: int
    ok: bool
    iops: float = 0.0
    bytes_per_s: float = 0.0
    ios: int = 0
    bytes: int = 0
    seconds: float = 0.0  # the load generator's measure
    wall_s: float = 0.0
    cpu_s: float = 0.0  # target CPU seconds during the measurement
    rss_peak_kib: int = 0
    load1: float = 0.0
    command: str = ""
    error: str = ""

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


@dataclass
class TargetFigures:
    iops: Spread | None
    mb_s: Spread | None
    cpu_s_per_gb: float | None
    cpu_s_per_10k_io: float | None
    rss_peak_mib: float | None
    samples: int
    failures: int
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "iops": self.iops.as_dict() if self.iops else None,
            "mb_s": self.mb_s.as_dict() if self.mb_s else None,
            "cpu_s_per_gb": self.cpu_s_per_gb,
            "cpu_s_per_10k_io": self.cpu_s_per_10k_io,
            "rss_peak_mib": self.rss_peak_mib,
            "samples": self.samples,
            "failures": self.failures,
            "errors": self.errors[:5],
        }


def target_figures(samples: Sequence[Sample]) -> TargetFigures:
    good = [s for s in samples if s.ok]
    total_bytes = sum(s.bytes for s in good)
    total_ios = sum(s.ios for s in good)
    cpu = sum(s.cpu_s for s in good)
    rss = max((s.rss_peak_kib for s in samples), default=0)
    return TargetFigures(
        iops=Spread.of([s.iops for s in good]),
        mb_s=Spread.of([s.bytes_per_s / MB for s in good]),
        cpu_s_per_gb=cpu / (total_bytes / GB) if total_bytes else None,
        cpu_s_per_10k_io=cpu / (total_ios / 1e4) if total_ios else None,
        rss_peak_mib=rss / 1024 if rss else None,
        samples=len(samples),
        failures=sum(1 for s in samples if not s.ok),
        errors=[s.error for s in samples if not s.ok],
    )


def paired_ratios(samples: Sequence[Sample], a: str = "sanlab", b: str = "tgtd") -> list[float]:
    """a/b throughput per round where both sides of the round succeeded."""
    by_round: dict[int, dict[str, Sample]] = {}
    for s in samples:
        by_round.setdefault(s.round, {})[s.target] = s
    out = []
    for r in sorted(by_round):
        pair = by_round[r]
        sa, sb = pair.get(a), pair.get(b)
        if sa and sb and sa.ok and sb.ok and sb.bytes_per_s > 0:
            out.append(sa.bytes_per_s / sb.bytes_per_s)
    return out


@dataclass
class WorkloadFigures:
    workload: Workload
    targets: dict[str, TargetFigures]
    ratio: Spread | None

    def as_dict(self) -> dict[str, Any]:
        w = self.workload
        return {
            "name": w.name,
            "tool": w.tool,
            "op": w.op,
            "bs": w.bs,
            "qd": w.qd,
            "targets": {k: v.as_dict() for k, v in self.targets.items()},
            "ratio": self.ratio.as_dict() if self.ratio else None,
        }


def workload_figures(workloads: Sequence[Workload], samples: Sequence[Sample]) -> list[WorkloadFigures]:
    out = []
    for w in workloads:
        mine = [s for s in samples if s.workload == w.name]
        kinds = sorted({s.target for s in mine}, key=lambda k: (k != "sanlab", k))
        figs = {k: target_figures([s for s in mine if s.target == k]) for k in kinds}
        out.append(WorkloadFigures(w, figs, Spread.of(paired_ratios(mine))))
    return out


def goals(figures: Sequence[WorkloadFigures], rounds: int) -> list[dict[str, Any]]:
    """One entry per QD32 workload the issue sets a ratio for: status passed/failed/skipped with detail."""
    out = []
    for f in figures:
        w = f.workload
        need = GOALS.get((w.op, w.bs, w.qd))
        if need is None:
            continue
        entry: dict[str, Any] = {
            "name": f"{w.name} >= {need:.1f}x tgtd",
            "workload": w.name,
            "min_ratio": need,
        }
        if f.ratio is None:
            entry.update(status="skipped", value=None, detail="no paired sanlab/tgtd rounds")
        elif f.ratio.n < GOAL_MIN_ROUNDS or rounds < GOAL_MIN_ROUNDS:
            entry.update(
                status="skipped",
                value=f.ratio.median,
                detail=f"median {f.ratio.median:.2f}x over {f.ratio.n} round(s); the goal needs >= {GOAL_MIN_ROUNDS}",
            )
        else:
            ok = f.ratio.median >= need
            entry.update(
                status="passed" if ok else "failed",
                value=f.ratio.median,
                detail=f"median {f.ratio.median:.2f}x [{f.ratio.min:.2f}-{f.ratio.max:.2f}] over {f.ratio.n} rounds",
            )
        out.append(entry)
    return out


def loopback_fractions(figures: Sequence[WorkloadFigures], loopback_mb_s: float | None) -> dict[str, float]:
    """name.target -> median 128 KiB read MB/s / loopback MB/s."""
    if not loopback_mb_s:
        return {}
    out = {}
    for f in figures:
        if f.workload.op == "read" and f.workload.bs == 128 * 1024:
            for kind, t in f.targets.items():
                if t.mb_s:
                    out[f"{f.workload.name}.{kind}"] = t.mb_s.median / loopback_mb_s
    return out


def flat_metrics(
    figures: Sequence[WorkloadFigures], loopback_mb_s: float | None, scale: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """The ``bench`` dict for the regression index: metric name -> number.

    Names end in a unit that says which way is better: ``_iops``, ``_mb_s``, ``_ratio``, ``_fraction``,
    ``_logins_per_s`` (higher is better); ``_cpu_s_per_gb``, ``_cpu_s_per_10k_io``, ``_rss_mib``,
    ``_kib_per_session``, ``_kib_per_lun``, ``_start_s`` (lower is better). Scale figures come in as
    ``<kind>.<figure>`` and go out as ``scale.<kind>.<figure>``."""
    m: dict[str, float] = {}
    for f in figures:
        n = f.workload.name
        for kind, t in f.targets.items():
            if t.iops:
                m[f"{n}.{kind}_iops"] = round(t.iops.median, 1)
            if t.mb_s:
                m[f"{n}.{kind}_mb_s"] = round(t.mb_s.median, 2)
            if t.cpu_s_per_gb is not None:
                m[f"{n}.{kind}_cpu_s_per_gb"] = round(t.cpu_s_per_gb, 4)
            if t.cpu_s_per_10k_io is not None:
                m[f"{n}.{kind}_cpu_s_per_10k_io"] = round(t.cpu_s_per_10k_io, 4)
        if f.ratio:
            m[f"{n}.sanlab_tgtd_ratio"] = round(f.ratio.median, 4)
    rss: dict[str, float] = {}
    for f in figures:
        for kind, t in f.targets.items():
            if t.rss_peak_mib:
                rss[kind] = max(rss.get(kind, 0.0), t.rss_peak_mib)
    for kind, v in rss.items():
        m[f"{kind}.peak_rss_mib"] = round(v, 1)
    if loopback_mb_s:
        m["loopback.iperf3_mb_s"] = round(loopback_mb_s, 1)
        for name, frac in loopback_fractions(figures, loopback_mb_s).items():
            m[f"{name}_loopback_fraction"] = round(frac, 4)
    for key, value in (scale or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            m[f"scale.{key}"] = float(value)
    return m
