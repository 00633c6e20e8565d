"""Where the lab keeps downloaded and built artefacts (kernels, initramfs images)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    """$SANLAB_CACHE, default ~/.cache/sanlab (created on demand)."""
    root = Path(os.environ.get("SANLAB_CACHE") or Path.home() / ".cache" / "sanlab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_once(dest: Path, build: Callable[[Path], None]) -> Path:
    """Return `dest`, building it first with `build(tmpdir)` if missing.

    The build runs in a fresh temporary directory beside `dest` that is renamed into place only when `build`
    returns, so an interrupted build never leaves a half-made cache entry. If a parallel builder won the race,
    its result is kept and ours discarded.
    """
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        build(tmp)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
