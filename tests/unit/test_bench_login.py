"""lab.bench.login: the scale measurement's own Login PDUs, cross-checked against the target's PDU codec, and a
whole login against an in-memory stand-in for a target (asyncio streams over a socketpair, no network)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lab.bench import login as bl
from target.pdu import codec
from target.pdu.framing import PduReader
from target.pdu.pdus import LoginRequest, LoginResponse
from target.pdu.text import encode_text, parse_text


def _decode(data: bytes) -> LoginRequest:
    reader = PduReader(max_data_segment_length=65536)
    reader.feed(data)
    raw = reader.next_pdu()
    assert raw is not None and reader.at_boundary
    pdu = codec.decode_pdu(raw)
    assert isinstance(pdu, LoginRequest)
    return pdu


def test_login_request_decodes_with_the_target_codec() -> None:
    pairs = [("InitiatorName", "iqn.2026-11.org.example:h1"), ("AuthMethod", "None")]
    wire = bl.login_request(
        isid=0x23D000000007,
        itt=5,
        cmdsn=9,
        exp_statsn=3,
        csg=0,
        nsg=1,
        transit=True,
        data=bl.encode_text(pairs),
    )
    assert len(wire) % 4 == 0
    pdu = _decode(wire)
    assert (pdu.isid, pdu.itt, pdu.cmdsn, pdu.exp_statsn) == (0x23D000000007, 5, 9, 3)
    assert (pdu.csg, pdu.nsg, pdu.transit, pdu.tsih, pdu.cid) == (0, 1, True, 0, 0)
    assert parse_text(pdu.data) == pairs


def test_login_response_parses_what_the_target_codec_encodes() -> None:
    resp = LoginResponse(
        itt=1,
        isid=0x23D000000001,
        tsih=77,
        statsn=41,
        exp_cmdsn=2,
        max_cmdsn=33,
        csg=1,
        nsg=3,
        transit=True,
        status_class=0,
        status_detail=0,
        data=encode_text([("HeaderDigest", "None")]),
    )
    wire = codec.encode_pdu_bytes(resp)
    dlen = int.from_bytes(wire[5:8], "big")
    got = bl.parse_login_response(wire[:48], wire[48 : 48 + dlen])
    assert (got.transit, got.csg, got.nsg, got.tsih, got.statsn, got.exp_cmdsn) == (True, 1, 3, 77, 41, 2)
    assert bl.parse_text(got.data) == [("HeaderDigest", "None")]


def test_text_round_trip() -> None:
    pairs = [("A", "1"), ("TargetName", "iqn.x:y"), ("Empty", "")]
    assert bl.parse_text(bl.encode_text(pairs)) == pairs


def _response(
    itt: int, statsn: int, csg: int, nsg: int, transit: bool, pairs: list[tuple[str, str]], cls: int = 0
) -> bytes:
    return codec.encode_pdu_bytes(
        LoginResponse(
            itt=itt,
            isid=0x23D000000001,
            tsih=5 if nsg == 3 and transit else 0,
            statsn=statsn,
            exp_cmdsn=1,
            max_cmdsn=32,
            csg=csg,
            nsg=nsg,
            transit=transit,
            status_class=cls,
            status_detail=0,
            data=encode_text(pairs),
        )
    )


async def _fake_target(sock: socket.socket, script: list[bytes], seen: list[LoginRequest]) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    framer = PduReader(max_data_segment_length=65536)
    for answer in script:
        while (raw := framer.next_pdu()) is None:
            framer.feed(await asyncio.wait_for(reader.read(65536), 5))
        pdu = codec.decode_pdu(raw)
        assert isinstance(pdu, LoginRequest)
        seen.append(pdu)
        writer.write(answer)
        await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()


def _run_login(script: list[bytes]) -> tuple[bl.Session | Exception, list[LoginRequest]]:
    async def main() -> tuple[bl.Session | Exception, list[LoginRequest]]:
        a, b = socket.socketpair()
        seen: list[LoginRequest] = []
        server = asyncio.create_task(_fake_target(b, script, seen))
        try:
            result: bl.Session | Exception = await bl.login(
                "unused", 0, "iqn.t:1", "iqn.i:1", 0x23D000000001, 5, sock=a
            )
        except Exception as e:
            result = e
        await asyncio.wait_for(server, 5)
        if isinstance(result, bl.Session):
            result.abort()
        return result, seen

    return asyncio.run(main())


def test_login_walks_security_operational_and_answers_offers() -> None:
    script = [
        _response(1, 0, 0, 1, True, [("AuthMethod", "None"), ("TargetPortalGroupTag", "1")]),
        # the target offers a key of its own and does not transit yet
        _response(1, 1, 1, 3, False, [("HeaderDigest", "None"), ("TargetAlias", "t"), ("IFMarker", "No")]),
        _response(1, 2, 1, 3, True, []),
    ]
    result, seen = _run_login(script)
    assert isinstance(result, bl.Session) and result.tsih == 5
    assert [(p.csg, p.nsg) for p in seen] == [(0, 1), (1, 3), (1, 3)]
    first = dict(parse_text(seen[0].data))
    assert first["TargetName"] == "iqn.t:1" and first["SessionType"] == "Normal"
    assert "HeaderDigest" in dict(parse_text(seen[1].data))
    assert parse_text(seen[2].data) == [("IFMarker", "No")]  # only the offer is answered
    assert seen[1].exp_statsn == 1 and seen[2].exp_statsn == 2


def test_login_failure_status_raises() -> None:
    result, _ = _run_login([_response(1, 0, 0, 1, False, [], cls=2)])
    assert isinstance(result, bl.LoginError)
    with pytest.raises(bl.LoginError):
        raise result
