"""Task management over loopback: a LUN reset or target reset issued by one session aborts the commands of
OTHER sessions that are still waiting for Data-Out on the reset LU (SAM-5 7.10; TAS decides what they see)."""

from __future__ import annotations

import asyncio
import os

import pytest
from iscsi_initiator import Initiator
from loopback_target import free_port, login, running, simple_config

from target.pdu.lun import encode_lun
from target.pdu.pdus import R2T, DataOut, NopIn, NopOut, Pdu, ScsiCommand, ScsiResponse, TmfFunction

HOST = "127.0.0.1"
WRITE10_8 = bytes([0x2A, 0, 0, 0, 0, 0x40, 0, 0, 8, 0])  # LBA 64, 8 blocks


async def start_write(ini: Initiator, lun: int = 0) -> tuple[int, R2T]:
    """A WRITE(10) of 4 KiB without immediate data: the target answers with an R2T and waits for Data-Out."""
    itt = next(ini.itt)
    await ini.send(
        ScsiCommand(
            itt=itt,
            cmdsn=ini._next_cmdsn(),
            exp_statsn=ini.exp_statsn,
            cdb=WRITE10_8.ljust(16, b"\0"),
            expected_data_length=4096,
            lun=encode_lun(lun),
            write=True,
            final=True,
        )
    )
    r2t = await ini.expect(R2T)
    assert r2t.itt == itt and r2t.desired_length == 4096
    return itt, r2t


async def until_nop(ini: Initiator) -> list[Pdu]:
    """PDUs that arrive before the answer to a NOP-Out ping."""
    itt = next(ini.itt)
    await ini.send(NopOut(itt=itt, cmdsn=ini.cmdsn, exp_statsn=ini.exp_statsn, immediate=True))
    seen: list[Pdu] = []
    while True:
        pdu = await ini.recv(3.0)
        if isinstance(pdu, NopIn) and pdu.itt == itt:
            return seen
        seen.append(pdu)


async def send_late_data(ini: Initiator, itt: int, r2t: R2T) -> None:
    await ini.send(
        DataOut(
            itt=itt, ttt=r2t.ttt, exp_statsn=ini.exp_statsn, datasn=0, buffer_offset=0, final=True,
            data=b"L" * 4096,
        )
    )  # fmt: skip


async def healthy_after_reset(ini: Initiator) -> None:
    # the reset leaves a unit attention for every nexus (SAM-5 6.3.3), then the LU works
    r = await ini.read(0, 1)
    if r.status == 0x02:
        assert r.sense[2] & 0x0F == 0x06  # UNIT ATTENTION
        r = await ini.read(0, 1)
    assert r.status == 0
    data = os.urandom(4096)
    assert (await ini.write(64, data)).status == 0
    assert (await ini.read(64, 8)).data == data


@pytest.mark.parametrize(
    ("function", "tas"),
    [
        (TmfFunction.LOGICAL_UNIT_RESET, 1),
        (TmfFunction.LOGICAL_UNIT_RESET, 0),
        (TmfFunction.TARGET_WARM_RESET, 1),
        (TmfFunction.CLEAR_TASK_SET, 1),
    ],
)
def test_reset_aborts_other_sessions_writes_waiting_for_data_out(function: TmfFunction, tas: int) -> None:
    async def main() -> None:
        port = free_port()
        cfg = simple_config(port)
        cfg.storage_objects[0].attributes["emulate_tas"] = tas
        async with running(cfg) as server:
            issuer = await login(HOST, port, isid=0x23D000000001, keys={"ImmediateData": "No"})
            other = await login(HOST, port, isid=0x23D000000002, keys={"ImmediateData": "No"})
            own_itt, _ = await start_write(issuer)
            other_itt, other_r2t = await start_write(other)
            assert await issuer.tmf(function, lun=0) == 0
            # the issuing session's own waiting write is aborted silently (RFC 7143 11.5.1)
            assert [p for p in await until_nop(issuer) if getattr(p, "itt", None) == own_itt] == []
            seen = await until_nop(other)
            if tas:
                (resp,) = seen
                assert isinstance(resp, ScsiResponse)
                assert resp.itt == other_itt and resp.status == 0x40  # TASK ABORTED
            else:
                assert seen == []  # TAS=0: the task just ends
            # the transport forgot the task: late Data-Out for it is dropped without an answer
            await send_late_data(other, other_itt, other_r2t)
            assert await until_nop(other) == []
            for s in server.rt.sessions:
                assert not s.closed and all(not c.tasks for c in s.connections.values())
                assert s.buffered == 0
            await healthy_after_reset(other)
            await healthy_after_reset(issuer)
            for ini in (issuer, other):
                await ini.logout()
                await ini.close()

    asyncio.run(main())


def test_lun_reset_leaves_other_lus_waiting_writes_alone() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port, luns=2)):
            issuer = await login(HOST, port, isid=0x23D000000001, keys={"ImmediateData": "No"})
            other = await login(HOST, port, isid=0x23D000000002, keys={"ImmediateData": "No"})
            itt, r2t = await start_write(other, lun=1)
            assert await issuer.tmf(TmfFunction.LOGICAL_UNIT_RESET, lun=0) == 0
            assert await until_nop(other) == []
            await other.send(
                DataOut(itt=itt, ttt=r2t.ttt, exp_statsn=other.exp_statsn, datasn=0, buffer_offset=0,
                        lun=encode_lun(1), final=True, data=b"K" * 4096)
            )  # fmt: skip
            resp = await other.expect(ScsiResponse)
            assert resp.itt == itt and resp.status == 0
            r = await other.read(64, 8, lun=1)
            assert r.status == 0 and r.data == b"K" * 4096
            for ini in (issuer, other):
                await ini.logout()
                await ini.close()

    asyncio.run(main())
