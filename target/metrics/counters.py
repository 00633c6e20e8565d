"""I/O counters kept on the hot path: plain integer attributes and a fixed-bucket latency histogram (no locks,
no allocation per command). Connections and logical units carry one `IoStats` each; session, TPG and target
figures are sums computed when someone asks (a closed connection's counts are folded into `retired`).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

#: latency bucket upper bounds in seconds (storage: 50 us .. 10 s)
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)

COUNTER_FIELDS = (
    "commands",
    "reads",
    "writes",
    "bytes_read",
    "bytes_written",
    "errors",
    "tmf_requests",
    "digest_errors",
)


class IoStats:
    __slots__ = (*COUNTER_FIELDS, "latency_sum", "latency_buckets")

    def __init__(self) -> None:
        self.commands = 0
        self.reads = 0
        self.writes = 0
        self.bytes_read = 0  # Data-In: bytes sent to initiators
        self.bytes_written = 0  # Data-Out: bytes received from initiators
        self.errors = 0  # CHECK CONDITION and other non-GOOD statuses
        self.tmf_requests = 0
        self.digest_errors = 0
        self.latency_sum = 0.0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # last one: +Inf

    def command(self, bytes_read: int, bytes_written: int, error: bool, seconds: float) -> None:
        self.commands += 1
        if bytes_read:
            self.reads += 1
            self.bytes_read += bytes_read
        if bytes_written:
            self.writes += 1
            self.bytes_written += bytes_written
        if error:
            self.errors += 1
        self.latency_sum += seconds
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def add(self, other: IoStats) -> IoStats:
        for name in COUNTER_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency_sum += other.latency_sum
        for i, n in enumerate(other.latency_buckets):
            self.latency_buckets[i] += n
        return self

    @classmethod
    def total(cls, parts: list[IoStats]) -> IoStats:
        out = cls()
        for p in parts:
            out.add(p)
        return out

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs as Prometheus wants them."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.latency_buckets, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {name: getattr(self, name) for name in COUNTER_FIELDS}
        d["latency_seconds_sum"] = round(self.latency_sum, 6)
        d["latency_histogram"] = dict(self.cumulative_buckets())
        return d
