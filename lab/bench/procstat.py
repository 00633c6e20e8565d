"""Target CPU time and memory from /proc.

A target is started as the leader of a new session (``start_new_session=True``), so "the target" is every
process whose session id is the leader's pid: tgtd's threads are already summed in its /proc/PID/stat, and
worker processes a target may fork are added. CPU = utime + stime (+ cutime + cstime of the leader, which holds
reaped children's time), in seconds. Peak RSS = the sum of VmHWM over those processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class StatFields:
    pid: int
    ppid: int
    session: int
    utime: int
    stime: int
    cutime: int
    cstime: int


def parse_stat(text: str) -> StatFields:
    """Fields of one /proc/PID/stat line (the command name may hold spaces and parentheses)."""
    pid = int(text.split(" ", 1)[0])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3]
    return StatFields(
        pid=pid,
        ppid=int(rest[1]),
        session=int(rest[3]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
    )


def parse_status_kib(text: str, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM, VmRSS), in KiB; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def session_pids(leader: int) -> list[int]:
    """The leader and every live process in its session."""
    pids = [leader]
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        text = _read(entry / "stat")
        if text is None:
            continue
        try:
            if parse_stat(text).session == leader:
                pids.append(int(entry.name))
        except (ValueError, IndexError):
            continue
    return pids


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    rss_peak_kib: int
    rss_kib: int
    processes: int


def usage(leader: int) -> Usage:
    """CPU seconds so far, peak and current RSS of the target whose session leader is `leader`."""
    ticks = 0
    hwm = rss = count = 0
    for pid in session_pids(leader):
        stat = _read(PROC / str(pid) / "stat")
        status = _read(PROC / str(pid) / "status")
        if stat is None or status is None:
            continue
        f = parse_stat(stat)
        ticks += f.utime + f.stime + (f.cutime + f.cstime if pid == leader else 0)
        hwm += parse_status_kib(status, "VmHWM")
        rss += parse_status_kib(status, "VmRSS")
        count += 1
    return Usage(cpu_s=ticks / CLK_TCK, rss_peak_kib=hwm, rss_kib=rss, processes=count)
