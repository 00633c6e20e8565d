"""Robustness over loopback: seeded fuzzing of a real server while a healthy session keeps doing verified I/O;
login time bounds; NOP-In keepalive drops a silent full-feature connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random

import pytest
from iscsi_initiator import Initiator
from loopback_target import free_port, login, running, simple_config

from target.pdu import codec
from target.pdu.framing import PduReader
from target.pdu.pdus import (
    RESERVED_TAG,
    DataOut,
    LoginRequest,
    LoginResponse,
    NopIn,
    NopOut,
    Pdu,
    Reject,
    RejectReason,
    ScsiCommand,
    SnackRequest,
    TextRequest,
    TextResponse,
)

HOST = "127.0.0.1"
READ10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])
SEED = 20261107
ITERATIONS = 300

# --------------------------------------------------------------------------- helpers


class Closed(Exception):
    pass


async def recv_any(ini: Initiator, timeout: float) -> Pdu:
    try:
        return await ini.recv(timeout)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise Closed(str(exc)) from exc


async def probe(ini: Initiator, timeout: float = 3.0) -> list[Pdu]:
    """Ping with a NOP-Out; return the PDUs received before its NOP-In. Raises Closed if the target closed the
    connection, TimeoutError if it did neither."""
    itt = next(ini.itt)
    try:
        await ini.send(NopOut(itt=itt, cmdsn=ini.cmdsn, exp_statsn=ini.exp_statsn, immediate=True, data=b"p"))
    except (ConnectionError, OSError) as exc:
        raise Closed(str(exc)) from exc
    seen: list[Pdu] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError
        pdu = await recv_any(ini, left)
        if isinstance(pdu, NopIn) and pdu.itt == itt:
            return seen
        seen.append(pdu)


async def wait_closed(ini: Initiator, timeout: float = 3.0) -> list[Pdu]:
    """Everything the target sends until it closes the connection."""
    seen: list[Pdu] = []
    with contextlib.suppress(Closed):
        while True:
            seen.append(await recv_any(ini, timeout))
    return seen


def rejects(pdus: list[Pdu]) -> list[Reject]:
    return [p for p in pdus if isinstance(p, Reject)]


def read_cmd(ini: Initiator, cmdsn: int) -> ScsiCommand:
    return ScsiCommand(
        itt=next(ini.itt),
        cmdsn=cmdsn,
        exp_statsn=ini.exp_statsn,
        cdb=READ10.ljust(16, b"\0"),
        expected_data_length=512,
        read=True,
    )


# --------------------------------------------------------------------------- fuzz cases
# Each case gets a fresh throwaway connection and a seeded Random; it asserts the standard's answer where the
# answer is deterministic. Every case ends by dropping its connection.


async def case_random_bytes_before_login(port: int, rng: random.Random, isid: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(rng.randbytes(rng.randint(1, 400)))
    await writer.drain()
    # whatever the answer (a login reject or nothing), the target must not crash; we leave at once
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(4096), 0.05)
    writer.transport.abort()


async def case_random_bytes_in_ffp(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    junk = rng.randbytes(rng.randint(48, 600))
    await ini.send_raw(junk)
    with contextlib.suppress(Closed, TimeoutError):
        await probe(ini, 0.3)  # answered, dropped, or waiting for the rest of a "PDU": all acceptable
    ini.abort()


async def case_corrupted_bhs(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    pdu = read_cmd(ini, ini.cmdsn)
    wire = bytearray(codec.encode_pdu_bytes(pdu))
    for _ in range(rng.randint(1, 4)):
        pos = rng.choice([0, 1, 2, 3, 4, 8, 9, 15, 16, 20, 24, 28, 32, 36, 40, 44, rng.randrange(48)])
        if 5 <= pos <= 7:
            continue  # DataSegmentLength corruption is its own case
        wire[pos] = rng.randrange(256)
    await ini.send_raw(bytes(wire))
    with contextlib.suppress(Closed, TimeoutError):
        await probe(ini, 0.3)
    ini.abort()


async def case_oversize_data_segment(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    bhs = bytearray(codec.encode_pdu_bytes(NopOut(itt=1, cmdsn=ini.cmdsn, exp_statsn=0, immediate=True)))
    bhs[5:8] = rng.randint(262145, 0xFFFFFF).to_bytes(3, "big")  # over our MaxRecvDataSegmentLength
    await ini.send_raw(bytes(bhs[:48]) + rng.randbytes(64))
    # RFC 7143 7.2 / framing: the stream cannot be trusted any more; the target closes the connection
    await wait_closed(ini)
    ini.abort()


async def case_bad_digests(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid, keys={"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"})
    assert ini.header_digest and ini.data_digest
    assert (await probe(ini)) == []  # digests work both ways
    wire = bytearray(
        codec.encode_pdu_bytes(
            NopOut(itt=next(ini.itt), cmdsn=ini.cmdsn, exp_statsn=0, immediate=True, data=b"payload!"),
            header_digest=True,
            data_digest=True,
        )
    )
    if rng.random() < 0.5:
        # data digest error: Reject (Data Digest Error), the PDU is discarded, the connection goes on (7.8)
        wire[-1] ^= 0x5A
        await ini.send_raw(bytes(wire))
        seen = await probe(ini)
        assert [r.reason for r in rejects(seen)] == [RejectReason.DATA_DIGEST_ERROR]
    else:
        # header digest error: the PDU boundaries are lost, the connection is dropped
        wire[48] ^= 0x01
        await ini.send_raw(bytes(wire))
        await wait_closed(ini)
    ini.abort()


async def case_data_out_unknown_ttt(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    await ini.send(
        DataOut(
            itt=rng.choice([0x7777, RESERVED_TAG, rng.randrange(1 << 32)]),
            ttt=rng.randrange(1 << 32),
            exp_statsn=ini.exp_statsn,
            datasn=0,
            buffer_offset=rng.randrange(1 << 20),
            final=True,
            data=rng.randbytes(rng.randint(0, 2048)),
        )
    )
    assert rejects(await probe(ini)) == []  # silently dropped (as LIO)
    ini.abort()


async def case_cmdsn_outside_window(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    far = (ini.cmdsn + rng.choice([1000, 1 << 20, (1 << 31) + 5, -1, -100])) & 0xFFFFFFFF
    await ini.send(read_cmd(ini, far))
    # RFC 7143 4.2.2.1: silently ignored; the connection keeps working
    assert (await probe(ini)) == []
    r = await ini.read(0, 1)
    assert r.status == 0 and len(r.data) == 512
    ini.abort()


async def case_snack_at_erl0(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    await ini.send(SnackRequest(itt=rng.randrange(1 << 32), exp_statsn=ini.exp_statsn, type=rng.randrange(4)))
    seen = await probe(ini)
    assert [r.reason for r in rejects(seen)] == [RejectReason.PROTOCOL_ERROR]
    ini.abort()


async def case_login_in_ffp(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    await ini.send(
        LoginRequest(
            itt=next(ini.itt), isid=isid, tsih=ini.tsih, cid=0, cmdsn=ini.cmdsn, exp_statsn=ini.exp_statsn,
            csg=1, nsg=3, transit=True, data=b"InitiatorName=iqn.2024-01.org.sanlab:x\0",
        )
    )  # fmt: skip
    seen = await probe(ini)
    assert [r.reason for r in rejects(seen)] == [RejectReason.PROTOCOL_ERROR]
    ini.abort()


async def case_endless_text_continuation(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    itt = next(ini.itt)
    ttt = RESERVED_TAG
    chunk = b"X-fill=" + b"z" * (8192 - 8)
    for _ in range(200):
        await ini.send(
            TextRequest(itt=itt, cmdsn=ini.cmdsn, exp_statsn=ini.exp_statsn, ttt=ttt, final=False, cont=True,
                        immediate=True, data=chunk)
        )  # fmt: skip
        pdu = await recv_any(ini, 3.0)
        if isinstance(pdu, Reject):
            assert pdu.reason == RejectReason.PROTOCOL_ERROR
            break
        assert isinstance(pdu, TextResponse) and not pdu.final
        ttt = pdu.ttt
    else:
        pytest.fail("the target accepted an endless text request")
    assert (await probe(ini)) == []
    ini.abort()


async def case_target_opcode(port: int, rng: random.Random, isid: int) -> None:
    ini = await login(HOST, port, isid=isid)
    bhs = bytearray(48)
    bhs[0] = rng.choice([0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3F])
    bhs[1] = 0x80
    bhs[16:20] = rng.randbytes(4)
    await ini.send_raw(bytes(bhs))
    seen = await probe(ini)
    assert len(rejects(seen)) == 1
    ini.abort()


CASES = [
    case_random_bytes_before_login,
    case_random_bytes_in_ffp,
    case_corrupted_bhs,
    case_oversize_data_segment,
    case_bad_digests,
    case_data_out_unknown_ttt,
    case_cmdsn_outside_window,
    case_snack_at_erl0,
    case_login_in_ffp,
    case_endless_text_continuation,
    case_target_opcode,
]


def test_fuzz_while_a_healthy_session_does_verified_io(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="target")

    async def main() -> None:
        port = free_port()
        cfg = simple_config(port, luns=2, settings={"login_timeout_s": "2"})
        async with running(cfg) as server:
            healthy = await login(HOST, port, isid=0x23D0000000AA)
            stop = asyncio.Event()
            done = 0

            async def healthy_io() -> None:
                nonlocal done
                lba = 0
                while not stop.is_set():
                    data = os.urandom(4096 * (1 + done % 4))
                    w = await healthy.write(lba, data, lun=1)
                    assert w.status == 0
                    r = await healthy.read(lba, len(data) // 512, lun=1)
                    assert r.status == 0 and r.data == data
                    lba = (lba + 64) % 2048
                    done += 1
                    await asyncio.sleep(0)

            io_task = asyncio.create_task(healthy_io())
            rng = random.Random(SEED)
            plan = [(i, rng.choice(CASES), rng.randrange(1 << 32)) for i in range(ITERATIONS)]
            sem = asyncio.Semaphore(8)
            completed: list[str] = []

            async def run_case(i: int, case, seed: int) -> None:  # type: ignore[no-untyped-def]
                async with sem:
                    try:
                        await asyncio.wait_for(case(port, random.Random(seed), 0x800000000000 + i), 20)
                        completed.append(case.__name__)
                    except Exception as exc:
                        raise AssertionError(f"iteration {i} {case.__name__} (seed {seed}): {exc!r}") from exc

            assert {case for _, case, _ in plan} == set(CASES)  # the seeded plan covers every case
            results = await asyncio.gather(*(run_case(*p) for p in plan), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            stop.set()
            await io_task  # re-raises if the healthy session ever failed
            assert not failures, failures[:3]
            assert len(completed) == ITERATIONS
            print(f"healthy session: {done} verified write/read pairs during {ITERATIONS} fuzz iterations")
            assert done > 0
            # the server still accepts logins and the healthy session is intact
            fresh = await login(HOST, port, isid=0x23D0000000BB)
            assert (await fresh.read(0, 1)).status == 0
            await fresh.logout()
            await fresh.close()
            assert (await healthy.nop(b"alive")).data == b"alive"
            await healthy.logout()
            await healthy.close()
            await asyncio.sleep(0.2)
            assert len(server.rt.sessions) == 0

    asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors[:5]]


# --------------------------------------------------------------------------- time bounds


async def _read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    out = bytearray()
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            return bytes(out)
        out += chunk


def test_half_open_connection_closed_after_login_timeout() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port, settings={"login_timeout_s": "1"})):
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection(HOST, port)
            t0 = loop.time()
            assert await _read_until_closed(reader) == b""
            assert 0.8 < loop.time() - t0 < 4.0
            writer.close()

    asyncio.run(main())


def test_dribbling_login_closed_at_login_time_bound() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port, settings={"login_timeout_s": "1"})):
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection(HOST, port)
            t0 = loop.time()
            # a valid Login Request with C=1 and a never-ending text, 8 bytes every 50 ms
            pdu = LoginRequest(
                itt=1, isid=0x23D000000077, tsih=0, cid=0, cmdsn=0, exp_statsn=0, csg=1, nsg=3, cont=True,
                data=b"InitiatorName=iqn.2024-01.org.sanlab:drip\0X-junk=" + b"a" * 4000,
            )  # fmt: skip
            wire = codec.encode_pdu_bytes(pdu)
            for i in range(0, len(wire), 8):
                if reader.at_eof() or loop.time() - t0 > 6:
                    break
                try:
                    writer.write(wire[i : i + 8])
                    await writer.drain()
                except (ConnectionError, OSError):
                    break
                await asyncio.sleep(0.05)
            assert await _read_until_closed(reader) == b""
            assert 0.8 < loop.time() - t0 < 6
            writer.close()

    asyncio.run(main())


def test_login_flood_of_continued_pdus_is_bounded() -> None:
    """Endless C=1 Login Requests (each acknowledged) end with Initiator Error at the size bound."""

    async def main() -> None:
        port = free_port()
        async with running(simple_config(port)):
            ini = Initiator(isid=0x23D000000078)
            await ini.connect(HOST, port)
            status = None
            for n in range(200):
                await ini.send(
                    LoginRequest(
                        itt=1, isid=ini.isid, tsih=0, cid=0, cmdsn=0, exp_statsn=ini.exp_statsn, csg=1, nsg=3,
                        cont=True, data=(b"InitiatorName=x\0" if n == 0 else b"") + b"X-a=" + b"b" * 8000,
                    )
                )  # fmt: skip
                try:
                    resp = await ini._recv_one(3.0)
                except ConnectionError:
                    break
                assert isinstance(resp, LoginResponse)
                if resp.status_class != 0:
                    status = (resp.status_class, resp.status_detail)
                    break
            assert status == (2, 0)
            await ini.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- keepalive


def test_idle_connection_that_ignores_nop_in_is_dropped() -> None:
    async def main() -> None:
        port = free_port()
        cfg = simple_config(port, settings={"nopin_interval_s": "0.5", "nopin_timeout_s": "0.5"})
        async with running(cfg) as server:
            mute = await login(HOST, port, isid=0x23D000000101)
            polite = await login(HOST, port, isid=0x23D000000102)
            assert len(server.rt.sessions) == 2
            loop = asyncio.get_running_loop()
            t0 = loop.time()

            async def answer_pings() -> None:
                # recv() answers NOP-In pings itself; no other PDU is expected while idle
                with contextlib.suppress(TimeoutError):
                    pdu = await asyncio.wait_for(polite.recv(timeout=5), 2.5)
                    pytest.fail(f"unexpected {pdu!r}")

            async def ignore_pings() -> list[Pdu]:
                # read raw PDUs without answering: a ping arrives, then the connection is dropped
                assert mute.reader is not None
                framer = PduReader()
                got: list[Pdu] = []
                while True:
                    chunk = await asyncio.wait_for(mute.reader.read(4096), 5)
                    if not chunk:
                        return got
                    framer.feed(chunk)
                    while (raw := framer.next_pdu()) is not None:
                        got.append(codec.decode_pdu(raw))

            pings, _ = await asyncio.gather(ignore_pings(), answer_pings())
            elapsed = loop.time() - t0
            assert pings and all(isinstance(p, NopIn) and p.itt == RESERVED_TAG for p in pings)
            first = pings[0]
            assert isinstance(first, NopIn) and first.ttt != RESERVED_TAG
            assert 0.8 <= elapsed < 4.0
            await asyncio.sleep(0.1)
            assert len(server.rt.sessions) == 1
            # the connection that answered its pings is alive and well
            r = await polite.read(0, 1)
            assert r.status == 0
            await polite.logout()
            await polite.close()

    asyncio.run(main())
