"""write_atomic: whole old file or whole new file, durable, no temp litter, permissions kept."""

import os
import stat

import pytest

from target.config import atomic
from target.config.atomic import write_atomic


def test_creates_a_new_file_owner_only(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, b'{"a": 1}')
    assert path.read_bytes() == b'{"a": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]


def test_replaces_and_keeps_existing_permissions(tmp_path):
    path = tmp_path / "saveconfig.json"
    path.write_bytes(b"old contents that are longer")
    path.chmod(0o640)
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_explicit_mode(tmp_path):
    path = tmp_path / "x"
    write_atomic(path, b"", mode=0o644)
    assert path.read_bytes() == b""
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    path = tmp_path / "aptpl"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["aptpl"]


def test_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    write_atomic(tmp_path / "f", b"data")
    assert synced == [False, True]  # the file first, then its directory entry


def test_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "such" / "dir" / "f", b"x")


def test_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic("rel.json", b"1")
    assert (tmp_path / "rel.json").read_bytes() == b"1"
