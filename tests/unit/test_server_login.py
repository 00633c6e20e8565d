"""Login-phase edge cases over loopback: malformed Login PDUs, login time bounds."""

from __future__ import annotations

import asyncio

from loopback_target import IQN, free_port, login, running, simple_config

from target.pdu import codec
from target.pdu.framing import PduReader
from target.pdu.pdus import LoginResponse, LoginStatus

ISID = 0x23D000000077


async def _read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    out = bytearray()
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            return bytes(out)
        out += chunk


def test_login_with_t_and_c_bits_gets_initiator_error_then_close() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port)):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = b"InitiatorName=iqn.2024-01.org.sanlab:x\0TargetName=" + IQN.encode() + b"\0"
            bhs = bytearray(48)
            bhs[0] = 0x43  # immediate Login Request
            bhs[1] = 0xC1  # T=1 and C=1 (RFC 7143 11.12.2 forbids), CSG 0, NSG 1
            bhs[5:8] = len(data).to_bytes(3, "big")
            bhs[8:14] = ISID.to_bytes(6, "big")
            bhs[16:20] = (0x1234).to_bytes(4, "big")
            bhs[24:28] = (7).to_bytes(4, "big")
            pad = b"\0" * (-len(data) % 4)
            writer.write(bytes(bhs) + data + pad)
            await writer.drain()
            got = await _read_until_closed(reader)
            framer = PduReader()
            framer.feed(got)
            raw = framer.next_pdu()
            assert raw is not None and framer.next_pdu() is None
            resp = codec.decode_pdu(raw)
            assert isinstance(resp, LoginResponse)
            status = LoginStatus.INITIATOR_ERROR
            assert (resp.status_class, resp.status_detail) == (status.status_class, status.status_detail)
            assert (resp.itt, resp.isid, resp.exp_cmdsn) == (0x1234, ISID, 7)
            writer.close()
            # the server still accepts logins
            ini = await login("127.0.0.1", port)
            assert (await ini.read(0, 1)).status == 0
            await ini.logout()
            await ini.close()

    asyncio.run(main())
