"""Persist Through Power Loss (SPC-4 5.13.5): with APTPL active, the registrations and the reservation of a
logical unit are written to `<state_dir>/pr/<LU serial>.json` before the PERSISTENT RESERVE OUT command
completes, atomically and durably (target.config.atomic.write_atomic: temp file, fsync, rename, fsync the
directory), creating the directory as needed (LIO's APTPL fails when its directory is missing). When APTPL is
turned off the file is removed. At LU creation the file is loaded, so the state survives a restart and a crash.

A file that exists but cannot be read or understood (I/O error, not JSON, too large, another format) is
`AptplCorrupt` from `read()`; the caller (target.scsi.pr.state) then moves it aside with `set_aside()` to
`<serial>.json.corrupt-<UTC time>` - kept for the operator, never deleted - and establishes the lost persistent
reservation condition (SPC-4 5.13.5.3).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from target.config.atomic import fsync_directory, write_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: an APTPL file larger than this is not ours (MAX_REGISTRATIONS entries fit comfortably)
MAX_FILE_BYTES = 16 * 1024 * 1024
#: how many names `set_aside` tries when files set aside in the same second already exist
MAX_ASIDE_NAMES = 100


class AptplError(Exception):
    """The state could not be made durable (the command fails with INSUFFICIENT REGISTRATION RESOURCES)."""


class AptplCorrupt(Exception):
    """An APTPL file exists but cannot be read or understood."""


def _safe(serial: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", serial).strip(".")
    return name or "lu"


class AptplStore:
    """The APTPL file of one logical unit."""

    def __init__(self, state_dir: str | os.PathLike[str], serial: str) -> None:
        self.directory = Path(state_dir) / "pr"
        self.path = self.directory / f"{_safe(serial)}.json"
        self.serial = serial

    def save(self, state: dict[str, Any]) -> None:
        doc = {"version": FORMAT_VERSION, "serial": self.serial, **state}
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(self.path, data)
        except OSError as exc:
            raise AptplError(f"cannot write {self.path}: {exc}") from exc

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AptplError(f"cannot remove {self.path}: {exc}") from exc
        with contextlib.suppress(OSError):
            fsync_directory(self.directory)

    def read(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no file; raises `AptplCorrupt` when the file exists but cannot be
        read or is not an APTPL file of this format."""
        try:
            size = self.path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None  # no file (a path component that is no directory holds none either)
        except OSError as exc:
            raise AptplCorrupt(f"cannot stat {self.path}: {exc}") from exc
        if size > MAX_FILE_BYTES:
            raise AptplCorrupt(f"{self.path} has {size} bytes (more than {MAX_FILE_BYTES})")
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AptplCorrupt(f"cannot read {self.path}: {exc}") from exc
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise AptplCorrupt(f"{self.path} is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise AptplCorrupt(f"{self.path}: not an APTPL document")
        if doc.get("version") != FORMAT_VERSION:
            raise AptplCorrupt(f"{self.path}: unknown APTPL format version {doc.get('version')!r}")
        return doc

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (a malformed file is logged and ignored; the LU's attach
        uses `read` to tell the two apart)."""
        try:
            return self.read()
        except AptplCorrupt as exc:
            log.error("unreadable APTPL file ignored: %s", exc)
            return None

    def set_aside(self) -> Path | None:
        """Rename the file to `<name>.corrupt-<UTC time>[-n]` beside it (never overwriting one set aside before);
        the new path, or None when it could not be renamed (logged)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for n in range(MAX_ASIDE_NAMES):
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
            if aside.exists() or aside.is_symlink():
                continue
            try:
                self.path.rename(aside)
            except OSError as exc:
                log.error("%s: cannot set the APTPL file aside: %s", self.path, exc)
                return None
            with contextlib.suppress(OSError):
                fsync_directory(self.directory)
            return aside
        log.error("%s: cannot set the APTPL file aside: %d names taken", self.path, MAX_ASIDE_NAMES)
        return None
