"""Persist Through Power Loss (SPC-4 5.13.5): with APTPL active, the registrations and the reservation of a
logical unit are written to `<state_dir>/pr/<LU serial>.json` before the PERSISTENT RESERVE OUT command
completes, atomically and durably (target.config.atomic.write_atomic: temp file, fsync, rename, fsync the
directory), creating the directory as needed (LIO's APTPL fails when its directory is missing). When APTPL is
turned off the file is removed. At LU creation the file is loaded, so the state survives a restart and a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from target.config.atomic import fsync_directory, write_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: an APTPL file larger than this is not ours (MAX_REGISTRATIONS entries fit comfortably)
MAX_FILE_BYTES = 16 * 1024 * 1024


class AptplError(Exception):
    """The state could not be made durable (the command fails with INSUFFICIENT REGISTRATION RESOURCES)."""


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

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (a malformed file is logged and ignored)."""
        try:
            if self.path.stat().st_size > MAX_FILE_BYTES:
                log.error("%s: APTPL file too large; ignored", self.path)
                return None
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("%s: unreadable APTPL file ignored: %s", self.path, exc)
            return None
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            log.error("%s: unknown APTPL file format; ignored", self.path)
            return None
        return doc
