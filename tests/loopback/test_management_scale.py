"""Scale: 1,000 LUNs and 100 sessions on one target. Measures (and prints) the API's list (the whole tree and
the sessions over the Unix socket) and single changes (add a LUN, remove it, resize, re-apply the whole
config with one difference). Only a generous sanity bound is asserted; the figures go in the report."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from iscsi_initiator import Initiator
from loopback_target import IQN, free_port, managed, simple_config

from target.config.diff import flatten, unflatten
from target.server import ManagementOptions

LUNS = 1000
SESSIONS = 100
SANITY_S = 5.0  # generous: the figures are what matters


async def timed(coro: object) -> tuple[float, object]:
    t = time.perf_counter()
    result = await coro  # type: ignore[misc]
    return time.perf_counter() - t, result


def test_thousand_luns_hundred_sessions(tmp_path: Path) -> None:
    async def main() -> dict[str, float]:
        port = free_port()
        cfg = simple_config(port, luns=LUNS, lun_size=64 * 1024)
        cfg.settings["nopin_interval_s"] = 300
        sock = tmp_path / "scale.sock"
        figures: dict[str, float] = {}
        t0 = time.perf_counter()
        async with managed(
            cfg, management=ManagementOptions(socket_path=str(sock)), ready_timeout_s=60, stop_timeout_s=60
        ) as (_server, mgr):
            figures["start target with 1000 LUNs (s)"] = time.perf_counter() - t0
            inis = []
            t = time.perf_counter()
            for i in range(SESSIONS):
                ini = Initiator(initiator_name=f"iqn.2024-01.org.sanlab:host{i}", isid=0x23D000000000 + i)
                await ini.connect("127.0.0.1", port)
                await ini.login(IQN)
                inis.append(ini)
            figures["100 logins (s)"] = time.perf_counter() - t
            conn = aiohttp.UnixConnector(path=str(sock))
            async with aiohttp.ClientSession(connector=conn) as http:

                async def get(path: str) -> object:
                    async with http.get(f"http://localhost{path}") as r:
                        assert r.status == 200
                        return await r.json()

                async def post(path: str, body: dict[str, object]) -> dict[str, object]:
                    async with http.post(f"http://localhost{path}", json=body) as r:
                        data = await r.json()
                        assert r.status == 200, data
                        return data  # type: ignore[no-any-return]

                dt, _tree = await timed(get("/v1/tree"))
                figures["API list: whole tree, 1000 LUNs (ms)"] = dt * 1000
                dt, sess = await timed(get("/v1/sessions"))
                assert len(sess["sessions"]) == SESSIONS  # type: ignore[index]
                figures["API list: 100 sessions (ms)"] = dt * 1000
                dt, _ = await timed(get("/v1/stats"))
                figures["API stats JSON (ms)"] = dt * 1000
                async with http.get("http://localhost/metrics") as r:
                    t = time.perf_counter()
                    await r.read()
                t = time.perf_counter()
                async with http.get("http://localhost/metrics") as r:
                    await r.read()
                figures["Prometheus /metrics scrape (ms)"] = (time.perf_counter() - t) * 1000
                dt, rep = await timed(
                    post("/v1/create", {"path": "/backstores/ramdisk/new", "properties": {"size": 65536}})
                )
                figures["API change: add storage object (ms)"] = dt * 1000
                dt, rep = await timed(
                    post(
                        "/v1/create",
                        {
                            "path": f"/iscsi/{IQN}/tpg1/luns/lun{LUNS}",
                            "properties": {"storage_object": "ramdisk/new"},
                        },
                    )
                )
                # every demo-mode nexus gets the UA on each of its LUNs (as LIO does)
                assert rep["unit_attentions"] == SESSIONS * (LUNS + 1)
                figures["API change: add LUN, 100 sessions remapped + UA (ms)"] = dt * 1000
                dt, rep = await timed(
                    post("/v1/set", {"path": "/backstores/ramdisk/new", "properties": {"size": 131072}})
                )
                figures["API change: resize (ms)"] = dt * 1000
                dt, rep = await timed(post("/v1/delete", {"path": f"/iscsi/{IQN}/tpg1/luns/lun{LUNS}"}))
                figures["API change: remove LUN (ms)"] = dt * 1000
                desired = unflatten(flatten(mgr.config))
                desired.targets[0].tpgs[0].attributes["default_cmdsn_depth"] = 32
                from target.config.native import dump_config

                dt, rep = await timed(post("/v1/apply", {"config": dump_config(desired)}))
                assert rep["changes"] == [f"~ /iscsi/{IQN}/tpg1 (attributes)"]
                figures["API apply: whole 1001-LUN document, one difference (ms)"] = dt * 1000
            for ini in inis:
                ini.abort()
        return figures

    figures = asyncio.run(main())
    print("\nmanagement at scale (1000 LUNs, 100 sessions):")
    for name, value in figures.items():
        print(f"  {name}: {value:.1f}")
    for name, value in figures.items():
        if "(ms)" in name:
            assert value / 1000 < SANITY_S, name
