"""An in-process sanlab target for the ALUA / persistent reservation VM tests: the test drives ALUA state changes
through `Runtime.set_alua_state` (the call the management API makes) while a Linux guest does I/O.

The target runs `target.server.serve` on its own event loop in a thread; `call()` runs a coroutine there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from target.config.model import (
    AluaGroupConfig,
    Config,
    LunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)
from target.runtime import Runtime, build_runtime

IQN = "iqn.2026-11.org.example.sanlab:alua"
SO = "fileio/disk0"


def two_portal_config(
    backing: Path, size: int, portals: list[tuple[str, int]], groups: list[AluaGroupConfig]
) -> Config:
    """One fileio LU exported through one TPG per portal (tags 1, 2, ...), demo mode (no ACLs, writable); the
    LUN of TPG n names group n-1 of `groups`."""
    so = StorageObjectConfig(
        plugin="fileio", name="disk0", dev=str(backing), size=size, write_back=False, alua_groups=groups
    )
    tpgs = []
    for i, (ip, port) in enumerate(portals):
        tpgs.append(
            TpgConfig(
                tag=i + 1,
                portals=[PortalConfig(ip=ip, port=port)],
                luns=[LunConfig(index=0, storage_object=SO, alua_tg_pt_gp=groups[i].name if groups else "")],
                attributes={
                    "generate_node_acls": 1,
                    "demo_mode_write_protect": 0,
                    "authentication": 0,
                    "cache_dynamic_acls": 1,
                },
            )
        )
    return Config(
        storage_objects=[so], targets=[TargetConfig(wwn=IQN, tpgs=tpgs)], state_dir=str(backing.parent)
    )


class InProcessTarget:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rt: Runtime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sanlab-target", daemon=True)
        self._error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from target.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        self.rt = build_runtime(self.config)
        task = asyncio.create_task(serve(self.config, ready=ready, stop=self._stop, runtime=self.rt))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        self._ready.set()
        await task
        self.rt.close()

    def start(self) -> InProcessTarget:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"target did not start: {self._error!r}")
        return self

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        assert self._loop is not None
        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def set_state(self, group: str, state: str) -> dict[str, Any]:
        assert self.rt is not None
        return dict(self.call(self.rt.set_alua_state(SO, group, state)))

    def swap(self, states: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Set several groups' states in one step of the target's event loop (no command runs in between, so
        an initiator never sees a half-done swap; with trans_delay_ms=0 set_state does not suspend). Returns
        the groups (states, counters) as they were just before the swap, read in that same step."""
        assert self.rt is not None
        rt = self.rt

        async def all_at_once() -> list[dict[str, Any]]:
            before = rt.alua_groups(SO)
            for group, state in states.items():
                await rt.set_alua_state(SO, group, state)
            return before

        return {g["name"]: g for g in self.call(all_at_once())}

    def groups(self) -> dict[str, dict[str, Any]]:
        assert self.rt is not None
        rt = self.rt

        async def snap() -> list[dict[str, Any]]:
            return rt.alua_groups(SO)

        return {g["name"]: g for g in self.call(snap())}

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def __enter__(self) -> InProcessTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
