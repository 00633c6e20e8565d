"""Target node faults: kill the target's container, restart the target process inside it.

The target runs detached inside its container (playbooks/roles/iscsi_target: `sanlab target serve` with its pid
in /run/sanlab-target.pid, or `tgtd -f` found with pgrep). A restart starts it again with the command line it
had (read from /proc/PID/cmdline before stopping it; the role's command when that is unknown) and waits,
bounded, until every portal accepts TCP connections. tgtd forgets its targets when it stops, so after starting
it the role's `tgt-admin --update ALL -f` loads them again from /etc/tgt/conf.d.

Timeline: with `duration_s` the target stays down for that long (inject stops it, clear starts it again);
without, restart-target restarts at once and kill-target leaves the node down unless `restart: true`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, ClassVar

from lab.faults.base import (
    CMD_TIMEOUT_S,
    Fault,
    FaultContext,
    FaultError,
    FaultSpec,
    check_target,
    q,
    register,
)
from lab.topology.model import TargetKind

PID_FILE = "/run/sanlab-target.pid"
TGTD_LOG = "/var/log/tgtd.log"
#: tenths of a second a stopped target gets to exit before SIGKILL
STOP_WAIT_TENTHS = 100

_WAIT_PORTALS = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
left = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[2:]]
while left and time.monotonic() < deadline:
    for hp in list(left):
        try:
            socket.create_connection(hp, timeout=1).close()
            left.remove(hp)
        except OSError:
            pass
    if left:
        time.sleep(0.2)
print("waiting-for " + " ".join(f"{h}:{p}" for h, p in left) if left else "portals-up")
sys.exit(1 if left else 0)
"""


def parse_stop_output(out: str) -> dict[str, Any]:
    """Fields of the stop script's output: pid, argv (list), escalated, running (after)."""
    info: dict[str, Any] = {"pid": "", "argv": [], "escalated": False, "stopped": False, "was_running": True}
    for line in out.splitlines():
        if line.startswith("pid="):
            info["pid"] = line[4:].strip()
        elif line.startswith("cmdline="):
            info["argv"] = [a for a in line[8:].split("\x1f") if a]
        elif line.strip() == "escalated":
            info["escalated"] = True
        elif line.strip() == "stopped":
            info["stopped"] = True
        elif line.strip() == "not-running":
            info["was_running"] = False
            info["stopped"] = True
    return info


@dataclass
class TargetProcess:
    """The target process inside one target node's container (sanlab or tgtd)."""

    fault: Fault
    node: str
    kind: TargetKind

    def default_argv(self) -> list[str]:
        bin_ = self.fault.target_var(self.node, "iscsi_target_sanlab_bin", "sanlab")
        cfg = self.fault.target_var(self.node, "iscsi_target_config_dir", "/etc/sanlab")
        return [bin_, "target", "serve", "--config", f"{cfg}/config.json"]

    def log_file(self) -> str:
        if self.kind is TargetKind.TGT:
            return TGTD_LOG
        return self.fault.target_var(self.node, "iscsi_target_log", "/var/log/sanlab-target.log")

    def find_pids_cmd(self) -> str:
        if self.kind is TargetKind.TGT:
            return "pids=$(pgrep -x tgtd | tr '\\n' ' ')"
        # the pid file; else the process by its command line ("[t]" keeps pgrep from matching this shell)
        return (
            f'pids=$(cat {PID_FILE} 2>/dev/null); if [ -z "$pids" ] || ! kill -0 $pids 2>/dev/null; then '
            "pids=$(pgrep -f '[t]arget serve' | tr '\\n' ' '); fi"
        )

    def stop_cmd(self, signal: str) -> str:
        return (
            f"{self.find_pids_cmd()}\n"
            'if [ -z "$pids" ]; then echo not-running; exit 0; fi\n'
            "first=${pids%% *}\n"
            'echo "pid=$pids"\n'
            "echo \"cmdline=$(tr '\\000' '\\037' </proc/$first/cmdline)\"\n"
            f"kill -s {signal} $pids\n"
            "alive() { for p in $pids; do kill -0 $p 2>/dev/null && return 0; done; return 1; }\n"
            f"i=0; while alive && [ $i -lt {STOP_WAIT_TENTHS} ]; do sleep 0.1; i=$((i + 1)); done\n"
            "if alive; then kill -s KILL $pids 2>/dev/null; echo escalated; sleep 0.5; fi\n"
            "if alive; then echo still-running; exit 1; fi\n"
            "echo stopped\n"
        )

    def running_cmd(self) -> str:
        return f'{self.find_pids_cmd()}\n[ -n "$pids" ] && echo running || echo down\n'

    def start_cmd(self, argv: list[str]) -> str:
        log = q(self.log_file())
        if self.kind is TargetKind.TGT:
            return (
                f"setsid nohup tgtd -f >>{log} 2>&1 </dev/null &\n"
                "i=0; while [ $i -lt 50 ]; do "
                "tgtadm --lld iscsi --mode sys --op show >/dev/null 2>&1 && break; sleep 0.2; i=$((i + 1)); done\n"
                "tgt-admin --update ALL -f && echo started\n"
            )
        return (
            "cd /\n"
            f"setsid nohup {shlex.join(argv or self.default_argv())} >>{log} 2>&1 </dev/null &\n"
            f"echo $! > {PID_FILE}; echo started $!\n"
        )

    def portals(self) -> list[str]:
        topo = self.fault.ctx.topo
        t = topo.target(self.node)
        return [f"{topo.address(t.name, n)}:{t.port}" for n in t.portals]

    def wait_cmd(self, wait_s: float) -> str:
        return shlex.join(["python3", "-c", _WAIT_PORTALS, f"{wait_s:g}", *self.portals()])

    # ---- operations (each bounded)

    def stop(self, signal: str) -> dict[str, Any]:
        res = self.fault.run(
            self.node, self.stop_cmd(signal), timeout=STOP_WAIT_TENTHS / 10 + 20, check=False
        )
        info = parse_stop_output(res.output)
        if not res.ok or not info["stopped"]:
            raise FaultError(f"stopping the {self.kind.value} target on {self.node} failed", res.output)
        return info

    def running(self) -> bool:
        out = self.fault.run(self.node, self.running_cmd(), what="looking for the target process").output
        return "running" in out.split()

    def start(self, argv: list[str]) -> str:
        res = self.fault.run(
            self.node, self.start_cmd(argv), timeout=CMD_TIMEOUT_S, what="starting the target"
        )
        return res.output.strip().splitlines()[-1] if res.output.strip() else "started"

    def wait_portals(self, wait_s: float) -> None:
        self.fault.run(self.node, self.wait_cmd(wait_s), timeout=wait_s + 15, what="waiting for the portals")

    def ensure_running(self, argv: list[str], wait_s: float) -> str:
        if self.running():
            self.wait_portals(wait_s)
            return f"{self.kind.value} target on {self.node} running"
        started = self.start(argv)
        self.wait_portals(wait_s)
        return f"{self.kind.value} target on {self.node} {started}; portals up"


_TARGET: dict[str, Any] = {"type": "string", "minLength": 1}
_WAIT: dict[str, Any] = {"type": "number", "minimum": 1, "maximum": 600, "default": 60}


class _TargetFault(Fault):
    """A fault on one target node's process (params.target): its TargetProcess and the argv to restart it."""

    def __init__(self, spec: FaultSpec, ctx: FaultContext) -> None:
        super().__init__(spec, ctx)
        node = self.params["target"]
        self.proc = TargetProcess(self, node, self.target_kind(node))
        self.argv: list[str] = []

    def check_topology(self) -> list[str]:
        return check_target(self.ctx.topo, self.params["target"])


@register
class KillTarget(_TargetFault):
    """`docker kill` of the target node's container (the node dies with every session on it). clear():
    nothing, unless `restart: true`: then `docker start` and the target process started again."""

    kind: ClassVar[str] = "kill-target"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target"],
        "properties": {
            "target": _TARGET,
            "signal": {"enum": ["KILL", "TERM"], "default": "KILL"},
            "restart": {"type": "boolean", "default": False},
            "wait_s": _WAIT,
        },
    }

    def inject(self) -> str:
        node = self.params["target"]
        container = self.ctx.container(node)
        if self.params["restart"] and self.proc.kind is TargetKind.SANLAB:
            # the command line, for starting it again the same way (best effort: the role's otherwise)
            res = self.ctx.executor(node).run(
                f"{self.proc.find_pids_cmd()}; first=${{pids%% *}}; "
                "[ -n \"$first\" ] && echo \"cmdline=$(tr '\\000' '\\037' </proc/$first/cmdline)\"",
                timeout=10,
            )
            self.argv = parse_stop_output(res.output)["argv"]
        self.ctx.engine.kill(container, self.params["signal"])
        return f"docker kill -s {self.params['signal']} {container}"

    def clear(self) -> str:
        if not self.params["restart"]:
            return f"{self.params['target']} left down (restart: false)"
        container = self.ctx.container(self.params["target"])
        started = ""
        if not self.ctx.engine.is_running(container):
            self.ctx.engine.start(container)
            started = f"docker start {container}; "
        return started + self.proc.ensure_running(self.argv, float(self.params["wait_s"]))


@register
class RestartTarget(_TargetFault):
    """Stop the target process inside its container (SIGTERM or SIGKILL; SIGKILL after 10 s if it lingers)
    and start it again with the same command; waits until every portal accepts connections. With
    `duration_s` the process stays down until clear()."""

    kind: ClassVar[str] = "restart-target"
    PARAMS: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target"],
        "properties": {
            "target": _TARGET,
            "signal": {"enum": ["KILL", "TERM"], "default": "TERM"},
            "wait_s": _WAIT,
        },
    }

    def inject(self) -> str:
        info = self.proc.stop(self.params["signal"])
        if not info["was_running"]:
            raise FaultError(f"no {self.proc.kind.value} target process runs on {self.params['target']}")
        self.argv = info["argv"]
        stopped = f"{self.proc.kind.value} pid {info['pid']} stopped with SIG{self.params['signal']}" + (
            " (escalated to SIGKILL)" if info["escalated"] else ""
        )
        if self.spec.duration_s is not None:
            return stopped + f"; down for {self.spec.duration_s:g} s"
        started = self.proc.start(self.argv)
        self.proc.wait_portals(float(self.params["wait_s"]))
        return f"{stopped}; {started}; portals up"

    def clear(self) -> str:
        return self.proc.ensure_running(self.argv, float(self.params["wait_s"]))
