"""lab.bench.workloads: names, sizes, selection and the bench scenario files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.bench.workloads import (
    Workload,
    WorkloadError,
    format_size,
    load_scenario,
    parse_size,
    select,
    standard_workloads,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "value"),
    [("4k", 4096), ("128K", 131072), ("1g", 1024**3), ("1GiB", 1024**3), ("512", 512), ("256m", 256 << 20)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "k", "4x", "-1", "0", "1.5g"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(WorkloadError):
        parse_size(text)


@given(st.integers(min_value=1, max_value=1 << 40))
def test_format_size_round_trips(n: int) -> None:
    assert parse_size(format_size(n)) == n


def test_standard_set_covers_the_issue() -> None:
    names = {w.name for w in standard_workloads()}
    for qd in (1, 32):
        for bs in ("4k", "128k"):
            assert f"qemu-read-{bs}-qd{qd}" in names
            assert f"qemu-write-{bs}-qd{qd}" in names
            assert f"iscsiperf-read-{bs}-qd{qd}" in names
    assert len(names) == 12


@given(st.sampled_from(standard_workloads()))
def test_name_round_trips(w: Workload) -> None:
    assert Workload.from_name(w.name) == w


@pytest.mark.parametrize(
    "name",
    ["qemu-read-4k", "fio-read-4k-qd1", "iscsiperf-write-4k-qd32", "qemu-read-4k-qd0", "qemu-read-1k5-qd1"],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(WorkloadError):
        Workload.from_name(name)


def test_block_size_must_be_sector_multiple() -> None:
    with pytest.raises(WorkloadError, match="multiple of 512"):
        Workload("qemu", "read", 1000, 1)


def test_select_globs_and_substrings() -> None:
    all_w = standard_workloads()
    assert {w.name for w in select(all_w, ["*qd32"])} == {w.name for w in all_w if w.qd == 32}
    assert [w.name for w in select(all_w, ["qemu-read-4k-qd1,iscsiperf-read-128k-qd1"])] == [
        "qemu-read-4k-qd1",
        "iscsiperf-read-128k-qd1",
    ]
    assert {w.op for w in select(all_w, ["write"])} == {"write"}
    assert select(all_w, None) == all_w
    with pytest.raises(WorkloadError, match="no workload matches"):
        select(all_w, ["nothing*"])


@pytest.mark.parametrize("name", ["bench-qd32.yml", "bench-qd1.yml"])
def test_shipped_scenarios_load(name: str) -> None:
    sc = load_scenario(ROOT / "scenarios" / name)
    assert sc.name == name.removesuffix(".yml")
    qd = 32 if "qd32" in name else 1
    assert sc.workloads and all(w.qd == qd for w in sc.workloads)
    assert {w.bs for w in sc.workloads} == {4096, 128 * 1024}
    assert sc.rounds is not None and sc.rounds >= 3


def test_scenario_errors_name_the_problem(tmp_path: Path) -> None:
    p = tmp_path / "bench-x.yml"
    p.write_text(
        "name: x\ndrill: bench\nbench:\n  workloads:\n    - {tool: iscsi-perf, op: write, bs: 4k, qd: 1}\n"
    )
    with pytest.raises(WorkloadError, match=r"workloads\[0\].*cannot write"):
        load_scenario(p)
    p.write_text("name: x\ndrill: failover\nbench: {workloads: [qemu-read-4k-qd1]}\n")
    with pytest.raises(WorkloadError, match="not bench"):
        load_scenario(p)
    p.write_text("name: x\nbench: {workloads: [qemu-read-4k-qd1], rounds: 0}\n")
    with pytest.raises(WorkloadError, match="rounds"):
        load_scenario(p)
    p.write_text("name: x\nbench: {workloads: [qemu-read-4k-qd1], colour: red}\n")
    with pytest.raises(WorkloadError, match="unknown keys"):
        load_scenario(p)
