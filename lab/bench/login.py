"""A minimal, self-contained iSCSI login for the scale measurement (RFC 7143 11.12/11.13, 6.2).

Independent of the target's own PDU codec on purpose (the measuring tool must not share code with what it
measures): it builds Login Request BHSs with struct, reads Login Responses, goes security -> operational ->
full feature phase with AuthMethod=None and answers keys the target offers by accepting them. The session is
then held open (no commands) until closed. Every read is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass

BHS = 48
LOGIN_REQUEST = 0x03
LOGIN_RESPONSE = 0x23
IMMEDIATE = 0x40
TRANSIT = 0x80
MAX_STEPS = 8
MAX_DATA = 65536
OPERATIONAL_KEYS: tuple[tuple[str, str], ...] = (
    ("HeaderDigest", "None"),
    ("DataDigest", "None"),
    ("MaxConnections", "1"),
    ("InitialR2T", "Yes"),
    ("ImmediateData", "Yes"),
    ("MaxRecvDataSegmentLength", "262144"),
    ("MaxBurstLength", "262144"),
    ("FirstBurstLength", "65536"),
    ("DefaultTime2Wait", "2"),
    ("DefaultTime2Retain", "0"),
    ("MaxOutstandingR2T", "1"),
    ("DataPDUInOrder", "Yes"),
    ("DataSequenceInOrder", "Yes"),
    ("ErrorRecoveryLevel", "0"),
)
#: keys a target declares without expecting an answer
DECLARATIONS = frozenset({"TargetAlias", "TargetPortalGroupTag", "TargetAddress", "MaxRecvDataSegmentLength"})


class LoginError(RuntimeError):
    pass


def encode_text(pairs: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def parse_text(data: bytes) -> list[tuple[str, str]]:
    out = []
    for item in data.split(b"\0"):
        if item:
            key, _, value = item.decode(errors="replace").partition("=")
            out.append((key, value))
    return out


def login_request(
    *, isid: int, itt: int, cmdsn: int, exp_statsn: int, csg: int, nsg: int, transit: bool, data: bytes
) -> bytes:
    flags = (TRANSIT if transit else 0) | (csg & 3) << 2 | (nsg & 3)
    head = struct.pack(
        ">BBBBI6sHIHHII16x",
        IMMEDIATE | LOGIN_REQUEST,
        flags,
        0,  # version-max
        0,  # version-min
        len(data),  # TotalAHSLength 0 in the top byte, DataSegmentLength below
        isid.to_bytes(6, "big"),
        0,  # TSIH: a new session
        itt,
        0,  # CID
        0,
        cmdsn,
        exp_statsn,
    )
    return head + data + b"\0" * (-len(data) % 4)


@dataclass(frozen=True)
class LoginResponse:
    transit: bool
    csg: int
    nsg: int
    tsih: int
    statsn: int
    exp_cmdsn: int
    status_class: int
    status_detail: int
    data: bytes


def parse_login_response(bhs: bytes, data: bytes) -> LoginResponse:
    if len(bhs) != BHS or bhs[0] & 0x3F != LOGIN_RESPONSE:
        raise LoginError(f"expected a Login Response, got opcode 0x{bhs[0] & 0x3F:02x}")
    flags = bhs[1]
    return LoginResponse(
        transit=bool(flags & TRANSIT),
        csg=(flags >> 2) & 3,
        nsg=flags & 3,
        tsih=struct.unpack_from(">H", bhs, 14)[0],
        statsn=struct.unpack_from(">I", bhs, 24)[0],
        exp_cmdsn=struct.unpack_from(">I", bhs, 28)[0],
        status_class=bhs[36],
        status_detail=bhs[37],
        data=data,
    )


async def _read_response(reader: asyncio.StreamReader, timeout: float) -> LoginResponse:
    bhs = await asyncio.wait_for(reader.readexactly(BHS), timeout)
    ahs = bhs[4] * 4
    dlen = int.from_bytes(bhs[5:8], "big")
    if dlen > MAX_DATA:
        raise LoginError(f"login response data segment of {dlen} bytes")
    body = await asyncio.wait_for(reader.readexactly(ahs + dlen + (-dlen % 4)), timeout)
    return parse_login_response(bhs, body[ahs : ahs + dlen])


@dataclass
class Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tsih: int

    def abort(self) -> None:
        self.writer.transport.abort()


async def login(
    host: str,
    port: int,
    target: str,
    initiator: str,
    isid: int,
    timeout: float = 10.0,
    sock: socket.socket | None = None,
) -> Session:
    """Open a normal session to `target` and return it in full feature phase (over `sock` when given,
    an already connected socket, instead of connecting to host:port)."""
    connect = asyncio.open_connection(sock=sock) if sock is not None else asyncio.open_connection(host, port)
    reader, writer = await asyncio.wait_for(connect, timeout)
    try:
        cmdsn = exp_statsn = 0
        itt = 1
        pairs = [
            ("InitiatorName", initiator),
            ("SessionType", "Normal"),
            ("TargetName", target),
            ("AuthMethod", "None"),
        ]
        csg, nsg = 0, 1
        answered: set[str] = set()
        for _step in range(MAX_STEPS):
            if csg == 1 and not answered:
                pairs = [*pairs, *OPERATIONAL_KEYS]
                answered = {k for k, _ in OPERATIONAL_KEYS}
            writer.write(
                login_request(
                    isid=isid,
                    itt=itt,
                    cmdsn=cmdsn,
                    exp_statsn=exp_statsn,
                    csg=csg,
                    nsg=nsg,
                    transit=True,
                    data=encode_text(pairs),
                )
            )
            await writer.drain()
            resp = await _read_response(reader, timeout)
            if resp.status_class != 0:
                raise LoginError(f"login rejected: class {resp.status_class} detail {resp.status_detail}")
            exp_statsn = (resp.statsn + 1) & 0xFFFFFFFF
            cmdsn = resp.exp_cmdsn
            if resp.transit and resp.nsg == 3:
                return Session(reader, writer, resp.tsih)
            if resp.transit and resp.nsg == 1:
                csg, nsg = 1, 3
                pairs = []
                continue
            # the target offered keys of its own (or wants another step): accept what it said
            pairs = []
            for key, value in parse_text(resp.data):
                if key not in answered and key not in DECLARATIONS:
                    answered.add(key)
                    pairs.append((key, value))
        raise LoginError(f"login did not reach full feature phase in {MAX_STEPS} steps")
    except BaseException:
        writer.transport.abort()
        raise


async def close_all(sessions: list[Session]) -> None:
    for s in sessions:
        s.abort()
    for s in sessions:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s.writer.wait_closed(), 2)
