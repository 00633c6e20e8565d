"""Scale: one target with many LUNs and many concurrent sessions (issue 7: 1,000 LUNs, 100 sessions).

For each target kind: start it with ONE LUN and read its RSS; start it again with N LUNs (sparse 1 MiB files)
and read the time to accept connections and the RSS; then log S sessions in one after another (held open, each
with its own initiator name and ISID, by the independent login in lab.bench.login) and read the RSS again.
Figures: start time, login rate (logins/s, sequential), RSS per session = (RSS after - before logins) / S,
RSS per LUN = (RSS with N LUNs - RSS with one) / (N - 1). RSS is VmRSS summed over the target's processes,
read after a short settle.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from lab.bench import procstat, targets
from lab.bench.login import LoginError, Session, close_all, login

LUN_FILE_SIZE = 1024 * 1024
SETTLE_S = 0.5
LOGIN_BUDGET_S = 300.0


def make_files(directory: Path, count: int, size: int = LUN_FILE_SIZE) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        p = directory / f"lun{i:04d}.img"
        with open(p, "wb") as f:
            f.truncate(size)
        files.append(p)
    return files


async def _logins(t: targets.BenchTarget, sessions: int) -> tuple[list[Session], float, list[str]]:
    held: list[Session] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = time.monotonic() + LOGIN_BUDGET_S
    for i in range(sessions):
        if time.monotonic() > deadline:
            errors.append(f"login budget of {LOGIN_BUDGET_S:.0f} s spent after {i} sessions")
            break
        try:
            held.append(
                await login(
                    t.host, t.port, t.iqn, f"iqn.2026-11.org.example.bench:host{i}", 0x23D000000000 + i
                )
            )
        except (TimeoutError, LoginError, OSError, asyncio.IncompleteReadError) as e:
            errors.append(f"session {i}: {e!r}")
    return held, time.perf_counter() - started, errors


def _rss_kib(pid: int) -> int:
    time.sleep(SETTLE_S)
    return procstat.usage(pid).rss_kib


def measure(kind: str, luns: int, sessions: int, workdir: Path) -> dict[str, Any]:
    """The scale figures for one target kind (a dict of name -> number, plus `errors`)."""
    one = make_files(workdir / "one", 1)
    many = make_files(workdir / "many", luns)
    out: dict[str, Any] = {"luns": luns, "sessions": sessions}
    with targets.start(kind, one, LUN_FILE_SIZE, workdir / "t1") as t:
        rss_one = _rss_kib(t.pid)
    started = time.perf_counter()
    with targets.start(kind, many, LUN_FILE_SIZE, workdir / "tn") as t:
        out["start_s"] = round(time.perf_counter() - started, 3)
        rss_luns = _rss_kib(t.pid)

        async def run() -> tuple[int, float, list[str], int]:
            held, elapsed, errors = await _logins(t, sessions)
            rss_after = _rss_kib(t.pid)
            await close_all(held)
            return len(held), elapsed, errors, rss_after

        ok, elapsed, errors, rss_sessions = asyncio.run(run())
    out.update(
        sessions_logged_in=ok,
        login_s=round(elapsed, 3),
        logins_per_s=round(ok / elapsed, 1) if elapsed > 0 and ok else 0.0,
        one_lun_rss_mib=round(rss_one / 1024, 1),
        luns_rss_mib=round(rss_luns / 1024, 1),
        sessions_rss_mib=round(rss_sessions / 1024, 1),
        kib_per_lun=round((rss_luns - rss_one) / max(1, luns - 1), 2),
        kib_per_session=round((rss_sessions - rss_luns) / max(1, ok), 2),
        errors=errors[:10],
    )
    return out


def flat(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """kind.figure -> number, for the summary's ``bench`` metrics (scale.<kind>.<figure>)."""
    keep = ("start_s", "logins_per_s", "kib_per_lun", "kib_per_session", "sessions_rss_mib")
    return {f"{kind}.{k}": float(v[k]) for kind, v in results.items() for k in keep if k in v}
