"""Shared fixtures for tests that run real initiators against a target process.

Target kind: `--target-kind sanlab|tgtd` or env SANLAB_TARGET_KIND (default sanlab, our target). tgtd is the
reference target the harness was proven against.

Fixtures:
- `target_kind`: the chosen kind.
- `free_tcp_port`: `free_tcp_port(host="127.0.0.1") -> int`.
- `start_iscsi_target`: `start_iscsi_target(spec, kind=None) -> RunningTarget`; the process runs until the test
  ends; its log is attached to the test report when the test fails.
- `tgtd`: the same, always tgtd.
- `lab_address`: a 198.18.0.0/15 address on this host that qemu user-network guests reach (skips if it
  cannot be set up).
- `report_figure`: `report_figure(title, {name: value})`; printed in the terminal summary (no -s needed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from target_process import TARGET_KINDS, RunningTarget, TargetSpec, free_port, start_target

from lab.vm.labnet import LabNetUnavailable, lab_host_address

_LOGS_ATTR = "_sanlab_process_logs"
_FIGURES_KEY = pytest.StashKey[list[tuple[str, str, dict[str, object]]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target-kind",
        choices=TARGET_KINDS,
        default=os.environ.get("SANLAB_TARGET_KIND", "sanlab"),
        help="which iSCSI target the initiator tests run against (env SANLAB_TARGET_KIND; default sanlab)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES_KEY] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for name, path in getattr(item, _LOGS_ATTR, []):
            try:
                text = Path(path).read_text(errors="replace")
            except OSError as exc:
                text = f"(cannot read {path}: {exc})"
            rep.sections.append((f"{name} ({path})", text[-30000:]))


def attach_log(node: pytest.Item, name: str, path: Path) -> None:
    """Show `path` in the report of `node` if it fails."""
    logs = getattr(node, _LOGS_ATTR, [])
    logs.append((name, str(path)))
    setattr(node, _LOGS_ATTR, logs)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    figures = config.stash.get(_FIGURES_KEY, [])
    if not figures:
        return
    terminalreporter.section("sanlab figures")
    for nodeid, title, values in figures:
        body = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{title} [{nodeid}]: {body}")


@pytest.fixture
def report_figure(request: pytest.FixtureRequest) -> Callable[[str, dict[str, object]], None]:
    def record(title: str, values: dict[str, object]) -> None:
        request.config.stash[_FIGURES_KEY].append((request.node.nodeid, title, dict(values)))

    return record


@pytest.fixture(scope="session")
def target_kind(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--target-kind"))


@pytest.fixture
def free_tcp_port() -> Callable[..., int]:
    return free_port


def _target_starter(
    request: pytest.FixtureRequest, tmp_path: Path, default_kind: str
) -> Iterator[Callable[..., RunningTarget]]:
    with ExitStack() as stack:
        count = 0

        def start(spec: TargetSpec, kind: str | None = None) -> RunningTarget:
            nonlocal count
            count += 1
            kind = kind or default_kind
            workdir = tmp_path / f"target{count}-{kind}"
            workdir.mkdir(parents=True, exist_ok=True)
            log = workdir / ("tgtd.log" if kind == "tgtd" else "sanlab-target.log")
            attach_log(request.node, f"{kind} target log", log)
            return stack.enter_context(start_target(kind, spec, workdir))

        yield start


@pytest.fixture
def start_iscsi_target(
    request: pytest.FixtureRequest, tmp_path: Path, target_kind: str
) -> Iterator[Callable[..., RunningTarget]]:
    yield from _target_starter(request, tmp_path, target_kind)


@pytest.fixture
def tgtd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., RunningTarget]]:
    yield from _target_starter(request, tmp_path, "tgtd")


@pytest.fixture(scope="session")
def lab_address() -> Iterator[str]:
    try:
        with lab_host_address() as address:
            yield address
    except LabNetUnavailable as exc:
        pytest.skip(f"no lab address for VM guests: {exc}")
