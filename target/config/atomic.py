"""Durable, atomic file replacement: readers see the old file or the new one, never a torn mix, and after
`write_atomic` returns the new content survives a crash (temp file, fsync, rename, fsync the directory).

Used for saved configurations and persistent-reservation (APTPL) state.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

#: new files hold secrets (CHAP) or reservation keys: owner-only unless told otherwise
DEFAULT_MODE = 0o600


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically and durably.

    The temp file lives in the same directory (rename is only atomic within a filesystem). `mode`: the new
    file's permissions; None keeps an existing file's permissions, or uses 0600 for a new file.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = DEFAULT_MODE
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_directory(directory)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename/creation in `directory` durable (POSIX: the directory entry needs its own fsync)."""
    dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
