"""A real server on 127.0.0.1 with a ramdisk LUN, driven by the test initiator over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from iscsi_initiator import Initiator, InitiatorError

from lab.netutil import free_port
from target.config.model import (
    Config,
    LunConfig,
    PortalConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)
from target.pdu.pdus import LogoutResponseCode, Reject, RejectReason, TmfFunction
from target.runtime import Runtime, build_runtime
from target.server import TargetServer, serve

IQN = "iqn.2024-01.org.sanlab:loop"


def make_config(port: int) -> Config:
    return Config(
        storage_objects=[StorageObjectConfig(plugin="ramdisk", name="r0", size=8 * 1024 * 1024)],
        targets=[
            TargetConfig(
                wwn=IQN,
                tpgs=[
                    TpgConfig(
                        tag=1,
                        portals=[PortalConfig("127.0.0.1", port)],
                        luns=[LunConfig(0, "ramdisk/r0")],
                        attributes={
                            "generate_node_acls": 1,
                            "demo_mode_write_protect": 0,
                            "authentication": 0,
                        },
                    )
                ],
            )
        ],
        settings={"nopin_interval_s": 30, "shutdown_grace_s": "0.5"},
    )


def build(config: Config) -> Runtime:
    return build_runtime(config)


@contextlib.asynccontextmanager
async def running_server() -> AsyncIterator[tuple[int, TargetServer]]:
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    out: list[TargetServer] = []
    cfg = make_config(port)
    task = asyncio.create_task(serve(cfg, ready=ready, stop=stop, server_out=out, runtime=build(cfg)))
    await asyncio.wait_for(ready.wait(), 5)
    try:
        yield port, out[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def logged_in(port: int, isid: int = 0x23D000000001) -> Initiator:
    ini = Initiator(isid=isid)
    await ini.connect("127.0.0.1", port)
    await ini.login(IQN)
    return ini


def test_login_write_read_logout() -> None:
    async def main() -> None:
        async with running_server() as (port, _server):
            ini = await logged_in(port)
            data = os.urandom(64 * 1024)
            w = await ini.write(16, data)
            assert w.status == 0
            r = await ini.read(16, len(data) // 512)
            assert r.status == 0 and r.data == data
            nop = await ini.nop(b"ping")
            assert bytes(nop.data) == b"ping"
            lo = await ini.logout()
            assert lo.response == LogoutResponseCode.CLOSED
            await ini.close()

    asyncio.run(main())


def test_unsolicited_data_and_large_write() -> None:
    async def main() -> None:
        async with running_server() as (port, _server):
            ini = Initiator()
            await ini.connect("127.0.0.1", port)
            await ini.login(IQN, keys={"InitialR2T": "No", "MaxRecvDataSegmentLength": "8192"})
            data = os.urandom(1024 * 1024)
            w = await ini.write(0, data)
            assert w.status == 0
            r = await ini.read(0, len(data) // 512)
            assert r.data == data
            assert len(r.datains) >= len(data) // 262144
            await ini.logout()
            await ini.close()

    asyncio.run(main())


def test_two_sessions_abrupt_disconnect_does_not_disturb_other() -> None:
    async def main() -> None:
        async with running_server() as (port, server):
            a = await logged_in(port, isid=0x23D000000001)
            b = await logged_in(port, isid=0x23D000000002)
            assert len(server.rt.sessions) == 2
            await a.write(0, b"A" * 4096)
            a.abort()
            await asyncio.sleep(0.2)
            assert len(server.rt.sessions) == 1
            await b.write(8, b"B" * 4096)
            r = await b.read(0, 16)
            assert r.data == b"A" * 4096 + b"B" * 4096
            await b.logout()
            await b.close()

    asyncio.run(main())


def test_malformed_pdu_gets_reject_and_target_keeps_serving() -> None:
    async def main() -> None:
        async with running_server() as (port, _server):
            ini = await logged_in(port)
            bad = bytearray(48)
            bad[0] = 0x1D  # no such initiator opcode
            bad[16:20] = b"\x00\x00\x00\x63"
            await ini.send_raw(bytes(bad))
            rej = await ini.expect(Reject)
            assert rej.reason in (RejectReason.COMMAND_NOT_SUPPORTED, RejectReason.PROTOCOL_ERROR)
            assert bytes(rej.data[:48]) == bytes(bad)
            r = await ini.read(0, 1)
            assert r.status == 0 and len(r.data) == 512
            await ini.logout()
            await ini.close()

    asyncio.run(main())


def test_session_reinstatement_and_sendtargets() -> None:
    async def main() -> None:
        async with running_server() as (port, server):
            a = await logged_in(port)
            targets = await a.text([("SendTargets", "")])
            assert ("TargetName", IQN) in targets
            b = await logged_in(port)  # same ISID, TSIH 0: reinstates
            await asyncio.sleep(0.1)
            assert len(server.rt.sessions) == 1
            with pytest.raises((ConnectionError, InitiatorError, asyncio.TimeoutError)):
                await a.nop()
            assert (await b.read(0, 1)).status == 0
            await b.logout()
            await b.close()

    asyncio.run(main())


def test_shutdown_sends_async_logout_request() -> None:
    async def main() -> None:
        port = free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        cfg = make_config(port)
        task = asyncio.create_task(serve(cfg, ready=ready, stop=stop, runtime=build(cfg)))
        await ready.wait()
        ini = await logged_in(port)
        stop.set()
        from target.pdu.pdus import AsyncEvent, AsyncMessage

        msg = await ini.expect(AsyncMessage)
        assert msg.async_event == AsyncEvent.LOGOUT_REQUEST
        resp = await ini.logout()
        assert resp.response == LogoutResponseCode.CLOSED
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_abort_task_on_unknown_and_tmf_on_unmapped_lun() -> None:
    async def main() -> None:
        async with running_server() as (port, _server):
            ini = await logged_in(port)
            assert await ini.tmf(TmfFunction.ABORT_TASK, rtt=0x777, ref_cmdsn=(ini.cmdsn + 100)) == 1
            assert await ini.tmf(TmfFunction.LOGICAL_UNIT_RESET, lun=5) == 2
            assert await ini.tmf(TmfFunction.LOGICAL_UNIT_RESET, lun=0) == 0
            assert await ini.tmf(99) == 5
            await ini.logout()
            await ini.close()

    asyncio.run(main())
