"""Structured logs: command lines carry the session (initiator, ISID, TSIH) and the ITT; logins, logouts and
session closes at INFO with the negotiated parameters; protocol errors at WARNING; no per-PDU INFO lines."""

from __future__ import annotations

import asyncio
import logging

import pytest
from loopback_target import INITIATOR, free_port, login, running, simple_config

from target.pdu.pdus import Reject

HOST = "127.0.0.1"
ISID = 0x23D000000321


def test_session_identity_and_itt_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="target")
    marks: dict[str, int] = {}

    async def main() -> None:
        port = free_port()
        async with running(simple_config(port, parameters={"MaxBurstLength": "131072"})):
            ini = await login(HOST, port, isid=ISID, keys={"MaxBurstLength": None})
            marks["io_start"] = len(caplog.records)
            for n in range(20):
                assert (await ini.write(n * 8, bytes([n]) * 4096)).status == 0
                assert (await ini.read(n * 8, 8)).status == 0
            marks["io_end"] = len(caplog.records)
            bad = bytearray(48)
            bad[0], bad[1] = 0x3F, 0x80  # a target opcode from the initiator
            bad[16:20] = (0xABCD0123).to_bytes(4, "big")
            await ini.send_raw(bytes(bad))
            await ini.expect(Reject)
            await ini.logout()
            await ini.close()
            await asyncio.sleep(0.05)

    asyncio.run(main())
    records = caplog.records

    logins = [r for r in records if r.name == "target.server" and "login from" in r.getMessage()]
    (lg,) = logins
    assert lg.levelno == logging.INFO
    assert (lg.iscsi_initiator, lg.iscsi_isid, lg.iscsi_tsih) == (INITIATOR, ISID, lg.iscsi_tsih)  # type: ignore[attr-defined]
    params = lg.iscsi_params  # type: ignore[attr-defined]
    assert params["MaxBurstLength"] == "131072" and params["InitialR2T"] == "Yes"
    assert "MaxBurstLength=131072" in lg.getMessage() and f"isid=0x{ISID:012x}" in lg.getMessage()

    # every line about a command names the session and the ITT, in the text and as attributes
    about_commands = [r for r in records if hasattr(r, "iscsi_itt")]
    assert any("execute" in r.getMessage() for r in about_commands)
    for r in about_commands:
        assert getattr(r, "iscsi_initiator", None) == INITIATOR and getattr(r, "iscsi_isid", None) == ISID
        assert f"itt=0x{getattr(r, 'iscsi_itt', -1):08x}" in r.getMessage()
        assert f"tsih={r.iscsi_tsih}" in r.getMessage()  # type: ignore[attr-defined]

    # no per-PDU INFO logging during I/O
    io = records[marks["io_start"] : marks["io_end"]]
    assert io and all(r.levelno < logging.INFO for r in io)

    # the protocol error: WARNING with session and ITT
    (warn,) = [r for r in records if r.levelno == logging.WARNING]
    assert warn.iscsi_itt == 0xABCD0123 and warn.iscsi_isid == ISID  # type: ignore[attr-defined]

    # logout and session close at INFO
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert any("logout request: CLOSE_SESSION" in m for m in infos)
    assert any("session" in m and "closed: logout" in m for m in infos)
