"""Running a command on a lab node: a container (`docker exec` through the SDK) or a VM (ssh).

Every call is bounded: the command runs under coreutils `timeout` on the node, and the controller side has
its own deadline. Output is captured (stdout and stderr merged) and truncated to `MAX_OUTPUT` bytes.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Protocol

MAX_OUTPUT = 256 * 1024


@dataclass(frozen=True)
class Result:
    rc: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Executor(Protocol):
    name: str

    def run(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        """Run a shell command line (sh -c) on the node."""
        ...


def _bounded(cmd: str, timeout: float) -> list[str]:
    return ["timeout", "-k", "5", str(int(max(timeout, 1))), "sh", "-c", cmd]


@dataclass
class DockerExec:
    """A container, by name; uses the docker CLI (needs `-i` for stdin: `docker exec` drops it otherwise)."""

    name: str
    docker: str = "docker"

    def run(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        argv = [
            self.docker,
            "exec",
            *(["-i"] if stdin is not None else []),
            self.name,
            *_bounded(cmd, timeout),
        ]
        return _run(argv, timeout + 15, stdin)


@dataclass
class SshExec:
    """A VM (or real host) over ssh, as Ansible reaches it."""

    name: str
    host: str
    port: int
    key: str
    user: str = "root"

    def argv(self, remote: list[str]) -> list[str]:
        return [
            "ssh",
            "-i", self.key,
            "-p", str(self.port),
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10",
            f"{self.user}@{self.host}",
            shlex.join(remote),
        ]  # fmt: skip

    def run(self, cmd: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        return _run(self.argv(_bounded(cmd, timeout)), timeout + 20, stdin)


def _run(argv: list[str], deadline: float, stdin: bytes | None) -> Result:
    t0 = time.monotonic()
    kwargs: dict[str, Any] = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    try:
        cp = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=deadline, check=False, **kwargs
        )
        out = cp.stdout[-MAX_OUTPUT:].decode("utf-8", "replace")
        return Result(cp.returncode, out, round(time.monotonic() - t0, 3))
    except subprocess.TimeoutExpired:
        return Result(
            124, f"timed out after {deadline:.0f} s: {shlex.join(argv)}", round(time.monotonic() - t0, 3)
        )
    except OSError as e:
        return Result(127, f"{type(e).__name__}: {e}", round(time.monotonic() - t0, 3))
