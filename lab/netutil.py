"""Small TCP helpers shared by the lab, the bench and the test harnesses (tests import them from here)."""

from __future__ import annotations

import socket
import subprocess
import time

__all__ = ["free_port", "wait_for_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the kernel's choice); IPv6 when `host` has a colon."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str,
    port: int,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    connect_timeout_s: float = 1.0,
    poll_s: float = 0.1,
) -> bool:
    """True once `host:port` accepts a TCP connection; False after `timeout_s` or as soon as `proc` (when
    given) has exited. Each attempt waits at most `connect_timeout_s`, then `poll_s` between attempts."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=connect_timeout_s):
                return True
        except OSError:
            time.sleep(poll_s)
    return False
