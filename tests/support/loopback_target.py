"""Helpers for loopback tests: a real `target.server` on 127.0.0.1 / ::1 with ramdisk LUNs, in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from iscsi_initiator import Initiator

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
from target.server import TargetServer, serve

IQN = "iqn.2024-01.org.sanlab:loop"
INITIATOR = "iqn.2024-01.org.sanlab:test-initiator"


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
async def running(config: Config) -> AsyncIterator[TargetServer]:
    """Serve `config` in this loop until the block ends (then a graceful shutdown)."""
    ready, stop = asyncio.Event(), asyncio.Event()
    out: list[TargetServer] = []
    task = asyncio.create_task(
        serve(config, ready=ready, stop=stop, server_out=out, runtime=build_runtime(config))
    )
    try:
        await asyncio.wait_for(ready.wait(), 5)
    except BaseException:
        task.cancel()
        raise
    try:
        yield out[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


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
