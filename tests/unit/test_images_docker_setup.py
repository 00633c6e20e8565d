"""ensure_docker: idempotent, installs only what is missing, waits bounded, reports the engine's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.images import docker_setup as D


def _fake(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, have: set[str], ok_after: int | None
) -> dict[str, list[object]]:
    calls: dict[str, list[object]] = {"apt": [], "start": [], "ok": []}
    monkeypatch.setattr(D.shutil, "which", lambda cmd: f"/usr/bin/{cmd}" if cmd in have else None)
    monkeypatch.setattr(D, "apt_install", lambda pkgs, log=print: calls["apt"].append(list(pkgs)))

    def ok(timeout_s: float = 20.0) -> bool:
        calls["ok"].append(timeout_s)
        return ok_after is not None and len(calls["ok"]) > ok_after

    monkeypatch.setattr(D, "docker_ok", ok)
    monkeypatch.setattr(D, "_dockerd_running", lambda: False)
    log = tmp_path / "dockerd.log"
    log.write_text("line1\nfailed to start daemon: boom\n")
    monkeypatch.setenv("SANLAB_DOCKERD_LOG", str(log))

    def start(log_fn: object = print) -> Path:
        calls["start"].append(True)
        return log

    monkeypatch.setattr(D, "start_dockerd", start)
    monkeypatch.setattr(D.time, "sleep", lambda s: None)
    return calls


def test_returns_at_once_when_engine_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _fake(monkeypatch, tmp_path, have={"docker", "dockerd", "mmdebstrap"}, ok_after=0)
    D.ensure_docker(log=lambda m: None)
    assert calls["apt"] == [] and calls["start"] == [] and len(calls["ok"]) == 1


def test_installs_missing_packages_and_starts_dockerd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake(monkeypatch, tmp_path, have={"docker"}, ok_after=3)
    msgs: list[str] = []
    D.ensure_docker(log=msgs.append)
    assert calls["apt"] == [["docker.io", "mmdebstrap"]]
    assert calls["start"] == [True]
    assert "setup: docker engine ready" in msgs


def test_bounded_wait_reports_dockerd_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake(monkeypatch, tmp_path, have={"docker", "dockerd", "mmdebstrap"}, ok_after=None)
    with pytest.raises(D.DockerSetupError, match="boom") as ei:
        D.ensure_docker(log=lambda m: None, wait_s=0.01)
    assert "docker info still fails" in str(ei.value)


def test_setup_script_is_posix_sh_and_idempotent_shape() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "setup-docker.sh"
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n") and "set -eu" in text
    assert "docker info >/dev/null 2>&1 && exit 0" in text  # nothing to do when the engine answers
    assert "apt-get update" in text and "docker.io" in text and "mmdebstrap" in text
    assert script.stat().st_mode & 0o111
