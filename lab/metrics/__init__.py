"""Drill metrics: pure functions from records (probes, throughput windows, faults) to per-fault figures."""

from lab.metrics.faults import (
    DEFINITIONS,
    count_io_errors,
    fault_metrics,
    primary_throughput,
    summarize_faults,
)

__all__ = ["DEFINITIONS", "count_io_errors", "fault_metrics", "primary_throughput", "summarize_faults"]
