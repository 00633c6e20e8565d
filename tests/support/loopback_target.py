"""Helpers for loopback tests: a real `target.server` on 127.0.0.1 / ::1 with ramdisk LUNs, in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from iscsi_initiator import Initiator

from lab.netutil import free_port as free_port  # re-exported: the loopback tests import it from here
from target.api.manager import Manager
from target.config.model import (
    AclConfig,
    AuthConfig,
    Config,
    LunConfig,
    MappedLunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)
from target.runtime import build_runtime
from target.server import ManagementOptions, TargetServer, serve

IQN = "iqn.2024-01.org.sanlab:loop"
INITIATOR = "iqn.2024-01.org.sanlab:test-initiator"


def have_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def simple_config(
    port: int,
    *,
    host: str = "127.0.0.1",
    targets: int = 1,
    luns: int = 1,
    lun_size: int = 8 * 1024 * 1024,
    settings: dict[str, int | str] | None = None,
    attributes: dict[str, int | str] | None = None,
    parameters: dict[str, str] | None = None,
    acl: AclConfig | None = None,
    tpg_auth: AuthConfig | None = None,
) -> Config:
    """`targets` targets (IQN, IQN-1, ...), each with `luns` ramdisk LUNs, demo mode unless an ACL is given."""
    sos: list[StorageObjectConfig] = []
    tcs: list[TargetConfig] = []
    for t in range(targets):
        name = IQN if t == 0 else f"{IQN}-{t}"
        lun_cfgs = []
        for n in range(luns):
            so = StorageObjectConfig(plugin="ramdisk", name=f"t{t}l{n}", size=lun_size)
            sos.append(so)
            lun_cfgs.append(LunConfig(n, so.path))
        attrs: dict[str, int | str] = {
            "generate_node_acls": 0 if acl is not None else 1,
            "demo_mode_write_protect": 0,
            "authentication": 0,
        }
        attrs.update(attributes or {})
        acls = []
        if acl is not None:
            acls = [
                AclConfig(
                    node_wwn=acl.node_wwn,
                    auth=acl.auth,
                    mapped_luns=[MappedLunConfig(n, n) for n in range(luns)],
                    attributes=dict(acl.attributes),
                )
            ]
        tcs.append(
            TargetConfig(
                wwn=name,
                tpgs=[
                    TpgConfig(
                        tag=1,
                        portals=[PortalConfig(host, port)],
                        luns=lun_cfgs,
                        node_acls=acls,
                        attributes=attrs,
                        parameters=dict(parameters or {}),
                        auth=tpg_auth or AuthConfig(),
                    )
                ],
            )
        )
    base: dict[str, int | str] = {"nopin_interval_s": 30, "shutdown_grace_s": "0.5"}
    base.update(settings or {})
    return Config(storage_objects=sos, targets=tcs, settings=base)


@contextlib.asynccontextmanager
async def managed(
    config: Config,
    *,
    management: ManagementOptions | None = None,
    ready_timeout_s: float = 5.0,
    stop_timeout_s: float = 15.0,
) -> AsyncIterator[tuple[TargetServer, Manager]]:
    """Serve `config` in this loop (with `management`: its API socket, persistence, ...) until the block ends,
    then shut down gracefully; yields the server and its management `Manager`."""
    ready, stop = asyncio.Event(), asyncio.Event()
    servers: list[TargetServer] = []
    managers: list[Manager] = []
    task = asyncio.create_task(
        serve(
            config,
            ready=ready,
            stop=stop,
            server_out=servers,
            manager_out=managers,
            runtime=build_runtime(config),
            management=management,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), ready_timeout_s)
    except BaseException:
        task.cancel()
        raise
    try:
        yield servers[0], managers[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout_s)


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[TargetServer]:
    """Serve `config` in this loop until the block ends (then a graceful shutdown)."""
    async with managed(config) as (server, _manager):
        yield server


async def login(
    host: str,
    port: int,
    target: str = IQN,
    *,
    isid: int = 0x23D000000001,
    name: str = INITIATOR,
    **kw: object,
) -> Initiator:
    ini = Initiator(initiator_name=name, isid=isid)
    await ini.connect(host, port)
    await ini.login(target, **kw)  # type: ignore[arg-type]
    return ini


async def login_ready(host: str, port: int, target: str = IQN, *, tries: int = 4, **kw: Any) -> Initiator:
    """`login(host, port, target, **kw)`, then TEST UNIT READY until GOOD (at most `tries` times): the power-on /
    nexus unit attentions are read, so the next command sees the LU's real state."""
    ini = await login(host, port, target, **kw)
    for _ in range(tries):
        if (await ini.scsi(bytes(6))).status == 0:
            break
    return ini
