"""The fault interface of failover drills: a spec (one entry of a scenario's `faults:` timeline), the context a
fault acts through (topology, inventory, executors, the docker engine) and the `Fault` base class.

Theory of operation. The runner builds every fault before the workload starts (`make_fault`: parameters are
checked against the kind's JSON schema and the topology, so a typo fails before anything is touched), calls
`inject()` at `at_s` on the drill clock and `clear()` after `duration_s` (or at the end of the workload). Both
are bounded: every command has a timeout, every wait a count. `clear()` is idempotent and safe after an
`inject()` that failed half-way or was never called: it looks at the node's state (is the table there, is the
container on the network) instead of trusting what inject meant to do, so a drill always ends with the lab
restored. Errors raise `FaultError` carrying the failing command's output.

Engine calls (network disconnect/connect, kill, start) go through the docker SDK (`SdkEngine`); commands on
nodes go through `lab.drivers.exec` executors (docker exec for containers, ssh for VMs). Tests swap both.
"""

from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import jsonschema

from lab.drivers.exec import Executor, Result
from lab.inventory import hosts_of, network_name
from lab.topology.model import InitiatorKind, InitiatorNode, TargetKind, TargetNode, Topology
from target.config.native import json_path

#: seconds a single node command may take unless a fault says otherwise
CMD_TIMEOUT_S = 30.0
#: seconds a docker engine call may take
ENGINE_TIMEOUT_S = 60


class FaultError(RuntimeError):
    """A fault could not be built, injected or cleared; `output` is the failing command's output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message + (f": {output.strip()[-2000:]}" if output.strip() else ""))
        self.output = output


@dataclass(frozen=True)
class FaultSpec:
    """One entry of the scenario's `faults:` timeline."""

    kind: str
    at_s: float
    name: str = ""  # default: kind-N (see `default_names`)
    duration_s: float | None = None  # clear after this long (None: instantaneous or until the end)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.kind


class DockerEngine(Protocol):
    """The few docker engine calls faults make (the SDK in the lab, a recorder in tests)."""

    def network_disconnect(self, network: str, container: str) -> None: ...

    def network_connect(self, network: str, container: str, ipv4_address: str) -> None: ...

    def container_networks(self, container: str) -> dict[str, str]:
        """docker network name -> the container's IPv4 address on it."""
        ...

    def kill(self, container: str, signal: str) -> None: ...

    def start(self, container: str) -> None: ...

    def is_running(self, container: str) -> bool: ...


class SdkEngine:
    """`DockerEngine` over the docker SDK (the client is made on first use; every request has a timeout)."""

    def __init__(self, timeout: int = ENGINE_TIMEOUT_S) -> None:
        self.timeout = timeout
        self._client: Any = None

    def _docker(self) -> Any:
        if self._client is None:
            try:
                import docker

                self._client = docker.from_env(timeout=self.timeout)
            except Exception as e:  # the SDK raises DockerException, or ImportError without it
                raise FaultError(f"docker engine unavailable: {type(e).__name__}: {e}") from e
        return self._client

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except FaultError:
            raise
        except Exception as e:  # docker.errors.APIError, NotFound, requests timeouts
            raise FaultError(f"{what}: {type(e).__name__}", str(e)) from e

    def network_disconnect(self, network: str, container: str) -> None:
        d = self._docker()
        self._call(
            f"docker network disconnect {network} {container}",
            lambda: d.networks.get(network).disconnect(container, force=True),
        )

    def network_connect(self, network: str, container: str, ipv4_address: str) -> None:
        d = self._docker()
        self._call(
            f"docker network connect --ip {ipv4_address} {network} {container}",
            lambda: d.networks.get(network).connect(container, ipv4_address=ipv4_address),
        )

    def container_networks(self, container: str) -> dict[str, str]:
        d = self._docker()
        c = self._call(f"docker inspect {container}", lambda: d.containers.get(container))
        nets = (c.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        return {name: str((v or {}).get("IPAddress") or "") for name, v in nets.items()}

    def kill(self, container: str, signal: str) -> None:
        d = self._docker()
        self._call(
            f"docker kill -s {signal} {container}", lambda: d.containers.get(container).kill(signal=signal)
        )

    def start(self, container: str) -> None:
        d = self._docker()
        self._call(f"docker start {container}", lambda: d.containers.get(container).start())

    def is_running(self, container: str) -> bool:
        d = self._docker()
        c = self._call(f"docker inspect {container}", lambda: d.containers.get(container))
        return bool((c.attrs.get("State") or {}).get("Running"))


def _no_log(msg: str) -> None:
    del msg


@dataclass
class FaultContext:
    """What a fault acts through. `container` and `executor` map node names (as in the topology) to the
    node's docker container name and to an Executor (a VM over SSH, a container via docker exec)."""

    topo: Topology
    inventory: dict[str, Any]
    container: Callable[[str], str]
    executor: Callable[[str], Executor]
    log: Callable[[str], None] = _no_log
    engine: DockerEngine = field(default_factory=SdkEngine)


# --------------------------------------------------------------------------------------------- registry

#: kind -> Fault class; filled by `register` (lab.faults imports every family module)
FAULT_KINDS: dict[str, type[Fault]] = {}


def register(cls: type[Fault]) -> type[Fault]:
    FAULT_KINDS[cls.kind] = cls
    return cls


def validate_params(kind: str, params: Mapping[str, Any]) -> list[str]:
    """Messages ("params.count: 500 is greater than the maximum of 200") for params that the kind's schema or
    its own cross-field rules reject; [] when they are fine."""
    cls = FAULT_KINDS.get(kind)
    if cls is None:
        return [f"kind: unknown fault kind {kind!r} (known: {', '.join(sorted(FAULT_KINDS))})"]
    if not isinstance(params, Mapping):
        return ["params: must be a mapping"]
    errors = sorted(
        f"{json_path(['params', *e.absolute_path])}: {e.message}"
        for e in jsonschema.Draft202012Validator(cls.PARAMS).iter_errors(dict(params))
    )
    if not errors:
        errors = [f"params: {m}" for m in cls.check_params(with_defaults(cls, params))]
    return errors


def with_defaults(cls: type[Fault], params: Mapping[str, Any]) -> dict[str, Any]:
    """params with the schema's top-level defaults filled in."""
    out = {k: v["default"] for k, v in (cls.PARAMS.get("properties") or {}).items() if "default" in v}
    out.update(params)
    return out


def default_names(specs: Sequence[FaultSpec]) -> list[str]:
    """The name of each spec: its own, or kind-N (N counts that kind in timeline order, from 1)."""
    seen: dict[str, int] = {}
    out = []
    for s in specs:
        seen[s.kind] = seen.get(s.kind, 0) + 1
        out.append(s.name or f"{s.kind}-{seen[s.kind]}")
    return out


def make_fault(spec: FaultSpec, ctx: FaultContext) -> Fault:
    """The Fault for `spec`; FaultError if the kind is unknown, the params are invalid or name unknown nodes."""
    cls = FAULT_KINDS.get(spec.kind)
    if cls is None:
        raise FaultError(validate_params(spec.kind, spec.params)[0])
    return cls(spec, ctx)


# --------------------------------------------------------------------------------------------- base class


class Fault(ABC):
    """One fault of a drill's timeline. Subclasses set `kind`, `PARAMS` (JSON schema of the params, with
    defaults) and implement `inject` and `clear` (a no-op for instantaneous kinds)."""

    kind: ClassVar[str]
    PARAMS: ClassVar[dict[str, Any]]
    #: True when the fault has nothing to undo (clear() does nothing)
    INSTANTANEOUS: ClassVar[bool] = False

    def __init__(self, spec: FaultSpec, ctx: FaultContext) -> None:
        if spec.kind != self.kind:
            raise FaultError(f"{type(self).__name__} cannot run a {spec.kind!r} fault")
        errors = validate_params(spec.kind, spec.params)
        if errors:
            raise FaultError(f"fault {spec.label}: " + "; ".join(errors))
        self.spec = spec
        self.ctx = ctx
        self.params = with_defaults(type(self), spec.params)
        problems = self.check_topology()
        if problems:
            raise FaultError(f"fault {spec.label}: " + "; ".join(problems))

    @property
    def name(self) -> str:
        return self.spec.label

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        """Cross-field rules the schema cannot say (params have defaults filled in)."""
        del params
        return []

    def check_topology(self) -> list[str]:
        """Problems with the nodes and networks the params name (the topology is `self.ctx.topo`)."""
        return []

    @abstractmethod
    def inject(self) -> str:
        """Apply the fault; returns a detail string; FaultError on failure."""

    def clear(self) -> str:
        """Undo the fault (idempotent, safe after a failed or missing inject)."""
        return "nothing to clear"

    # ---- helpers for subclasses

    def log(self, msg: str) -> None:
        self.ctx.log(f"fault {self.name}: {msg}")

    def run(
        self,
        node: str,
        cmd: str,
        *,
        timeout: float = CMD_TIMEOUT_S,
        stdin: bytes | None = None,
        check: bool = True,
        what: str = "",
    ) -> Result:
        """Run `cmd` on `node`; FaultError with its output when it fails and `check`."""
        res = self.ctx.executor(node).run(cmd, timeout=timeout, stdin=stdin)
        if check and not res.ok:
            raise FaultError(f"{what or cmd} on {node} exited {res.rc}", res.output)
        return res

    def docker_network(self, network: str) -> str:
        return network_name(self.ctx.topo, network)

    def target_node(self, name: str) -> TargetNode:
        return self.ctx.topo.target(name)

    def initiator_node(self, name: str) -> InitiatorNode:
        for i in self.ctx.topo.initiators:
            if i.name == name:
                return i
        raise KeyError(name)

    def target_kind(self, name: str) -> TargetKind:
        """The kind actually deployed (the inventory's, which `--target-kind` overrides), else the topology's."""
        hv = hosts_of(self.ctx.inventory, "targets").get(name, {}) if self.ctx.inventory else {}
        kind = hv.get("iscsi_target_kind")
        return TargetKind(kind) if kind in {k.value for k in TargetKind} else self.target_node(name).kind

    def target_var(self, name: str, key: str, default: str) -> str:
        hv = hosts_of(self.ctx.inventory, "targets").get(name, {}) if self.ctx.inventory else {}
        return str(hv.get(key) or default)

    def wire_lun(self, target: str, lun_index: int) -> int:
        """The LUN number an initiator addresses for the target's LUN index (tgtd keeps LUN 0 for itself)."""
        return lun_index + 1 if self.target_kind(target) is TargetKind.TGT else lun_index


# --------------------------------------------------------------------------------------------- checks


def check_target(topo: Topology, name: Any, what: str = "target") -> list[str]:
    if not isinstance(name, str) or name not in {t.name for t in topo.targets}:
        known = ", ".join(t.name for t in topo.targets)
        return [f"{what}: {name!r} is not a target node of topology {topo.name} (targets: {known})"]
    return []


def check_initiator(
    topo: Topology, name: Any, what: str = "initiator", kinds: Sequence[InitiatorKind] = ()
) -> list[str]:
    found = next((i for i in topo.initiators if i.name == name), None)
    if found is None:
        known = ", ".join(i.name for i in topo.initiators)
        return [f"{what}: {name!r} is not an initiator node of topology {topo.name} (initiators: {known})"]
    if kinds and found.kind not in kinds:
        allowed = " or ".join(k.value for k in kinds)
        return [f"{what}: {name} is a {found.kind.value} initiator; this fault needs {allowed}"]
    return []


def check_node_network(topo: Topology, node: str, network: Any, what: str = "network") -> list[str]:
    try:
        topo.network(network)
    except KeyError:
        known = ", ".join(n.name for n in topo.networks)
        return [f"{what}: {network!r} is not a network of topology {topo.name} (networks: {known})"]
    if network not in topo.node_networks(node):
        return [
            f"{what}: {node} is not on network {network} (it joins {', '.join(topo.node_networks(node))})"
        ]
    return []


# --------------------------------------------------------------------------------------------- parsing

_IP_ADDR_RE = re.compile(r"^\d+:\s+(?P<ifname>[^\s@:]+)(?:@\S+)?\s+inet\s+(?P<addr>[\d.]+)/(?P<plen>\d+)")


def interface_of(ip_o_addr: str, address: str) -> tuple[str, int] | None:
    """(interface, prefix length) that carries `address` in `ip -o -4 addr show` output, or None."""
    for line in ip_o_addr.splitlines():
        m = _IP_ADDR_RE.match(line.strip())
        if m and m["addr"] == address:
            return m["ifname"], int(m["plen"])
    return None


_ROUTE_DEV_RE = re.compile(r"\bdev\s+(\S+)")


def route_device(ip_route_get: str) -> str | None:
    """The `dev` of `ip -o route get ADDR` output."""
    m = _ROUTE_DEV_RE.search(ip_route_get)
    return m[1] if m else None


def q(s: object) -> str:
    return shlex.quote(str(s))


def nft_table_name(prefix: str, *parts: str) -> str:
    """An nft table name (letters, digits, underscore) unique to the fault's node and network."""
    raw = "_".join([prefix, *parts])
    return re.sub(r"[^A-Za-z0-9_]", "_", raw)[:60]
