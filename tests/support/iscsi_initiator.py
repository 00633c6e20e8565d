"""A small asyncio iSCSI initiator for tests, built on the project's PDU codec.

Not a general initiator: one connection, commands issued one at a time (but raw PDUs can be sent for
negative tests). Login (optionally with CHAP), SCSI commands with or without immediate data, Data-Out on
R2T, unsolicited Data-Out when InitialR2T=No, TMF, NOP-Out, SendTargets, logout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from target.pdu import codec
from target.pdu.framing import PduReader
from target.pdu.lun import encode_lun
from target.pdu.pdus import (
    R2T,
    RESERVED_TAG,
    AsyncMessage,
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutReason,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Pdu,
    Reject,
    ScsiCommand,
    ScsiResponse,
    TaskMgmtRequest,
    TaskMgmtResponse,
    TextRequest,
    TextResponse,
)
from target.pdu.text import encode_text, parse_text


class InitiatorError(Exception):
    pass


@dataclass
class ScsiReply:
    status: int
    data: bytes = b""
    sense: bytes = b""
    residual: int = 0
    overflow: bool = False
    underflow: bool = False
    response: int = 0
    r2ts: list[R2T] = field(default_factory=list)
    datains: list[DataIn] = field(default_factory=list)


DEFAULT_KEYS = {
    "HeaderDigest": "None",
    "DataDigest": "None",
    "MaxConnections": "1",
    "InitialR2T": "Yes",
    "ImmediateData": "Yes",
    "MaxRecvDataSegmentLength": "262144",
    "MaxBurstLength": "262144",
    "FirstBurstLength": "65536",
    "DefaultTime2Wait": "2",
    "DefaultTime2Retain": "0",
    "MaxOutstandingR2T": "1",
    "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes",
    "ErrorRecoveryLevel": "0",
}


#: keys a target declares (they need no answer)
_TARGET_DECLARATIONS = frozenset(
    {"TargetAlias", "TargetPortalGroupTag", "TargetAddress", "MaxRecvDataSegmentLength", "TargetName"}
)


class Initiator:
    def __init__(
        self,
        initiator_name: str = "iqn.2024-01.org.sanlab:test-initiator",
        isid: int = 0x23D000000001,
    ) -> None:
        self.initiator_name = initiator_name
        self.isid = isid
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = PduReader(max_data_segment_length=262144)
        self.itt = itertools.count(1)
        self._cmdsn = 0
        #: MC/S: connections joined to a session share the leading connection's CmdSN counter
        self.leader: Initiator | None = None
        self.exp_statsn = 0
        self.tsih = 0
        self.cid = 0
        self.params: dict[str, str] = {}
        self.unsolicited: list[Pdu] = []  # async messages, rejects not tied to a request
        self.header_digest = False
        self.data_digest = False
        self.offered: dict[str, str] = {}  # operational keys this initiator offered in its last login
        self.target_offers: dict[str, str] = {}  # keys the target offered on its own (and we accepted)

    @property
    def cmdsn(self) -> int:
        return self.leader.cmdsn if self.leader is not None else self._cmdsn

    @cmdsn.setter
    def cmdsn(self, value: int) -> None:
        if self.leader is not None:
            self.leader.cmdsn = value
        else:
            self._cmdsn = value

    def join(self) -> Initiator:
        """A second connection object for this session (MC/S): same name and ISID, shared CmdSN. Log it in
        with `login(target, tsih=self.tsih, cid=NEW_CID)`."""
        other = Initiator(self.initiator_name, self.isid)
        other.leader = self
        other.params = dict(self.params)
        other.itt = self.itt  # ITTs are unique per session
        return other

    # ------------------------------------------------------------------ transport

    async def connect(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
            self.writer = None

    def abort(self) -> None:
        """Drop the TCP connection without logout."""
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None

    async def send(self, pdu: Pdu) -> None:
        assert self.writer is not None
        self.writer.writelines(
            codec.encode_pdu(pdu, header_digest=self.header_digest, data_digest=self.data_digest)
        )
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> Pdu:
        """Next PDU from the target (NOP-In pings are answered and skipped)."""
        while True:
            pdu = await self._recv_one(timeout)
            if isinstance(pdu, NopIn) and pdu.itt == RESERVED_TAG:
                await self.send(
                    NopOut(
                        itt=RESERVED_TAG,
                        ttt=pdu.ttt,
                        cmdsn=self.cmdsn,
                        exp_statsn=self.exp_statsn,
                        immediate=True,
                    )
                )
                continue
            return pdu

    async def _recv_one(self, timeout: float) -> Pdu:
        assert self.reader is not None
        while True:
            raw = self.framer.next_pdu()  # a header digest error raises FramingError
            if raw is not None:
                if not raw.data_digest_ok:
                    raise InitiatorError("data digest error in a PDU from the target")
                pdu = codec.decode_pdu(raw)
                statsn = getattr(pdu, "statsn", None)
                counted = not (isinstance(pdu, DataIn) and not pdu.status_present) and not (
                    isinstance(pdu, NopIn) and pdu.itt == RESERVED_TAG
                )
                if statsn is not None and counted:
                    self.exp_statsn = (statsn + 1) & 0xFFFFFFFF
                return pdu
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                raise ConnectionResetError("target closed the connection")
            self.framer.feed(chunk)

    async def expect(self, kind: type, timeout: float = 5.0) -> Any:
        while True:
            pdu = await self.recv(timeout)
            if isinstance(pdu, kind):
                return pdu
            if isinstance(pdu, (AsyncMessage, Reject)):
                self.unsolicited.append(pdu)
                if isinstance(pdu, Reject) and kind is not Reject:
                    raise InitiatorError(f"unexpected Reject reason {pdu.reason}")
                continue
            raise InitiatorError(f"expected {kind.__name__}, got {pdu!r}")

    def _next_cmdsn(self, immediate: bool = False) -> int:
        sn = self.cmdsn
        if not immediate:
            self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        return sn

    # ------------------------------------------------------------------ login

    async def login(
        self,
        target_name: str | None,
        *,
        keys: dict[str, str | None] | None = None,
        chap: tuple[str, str] | None = None,
        mutual_chap: tuple[str, str] | None = None,
        discovery: bool = False,
        tsih: int = 0,
        cid: int = 0,
        answer_offers: bool = True,
    ) -> LoginResponse:
        """Log in; raises InitiatorError on a non-success status. Returns the final Login Response.

        `chap` = (user, secret) the target checks; `mutual_chap` = (target user, target secret) this initiator
        checks (mutual CHAP, RFC 7143 12.1.3). Keys the target offers on its own in the operational stage are
        answered by accepting the target's value (`answer_offers`), as RFC 7143 6.2 requires of a responder.
        """
        self.tsih, self.cid = tsih, cid
        itt = next(self.itt)
        base = [
            ("InitiatorName", self.initiator_name),
            ("SessionType", "Discovery" if discovery else "Normal"),
        ]
        if target_name is not None and not discovery:
            base.append(("TargetName", target_name))
        if chap is not None:
            resp = await self._login_step(itt, 0, 1, False, [*base, ("AuthMethod", "CHAP")])
            resp = await self._login_step(itt, 0, 1, False, [("CHAP_A", "5")])
            got = dict(parse_text(resp.data))
            ident = int(got["CHAP_I"])
            challenge = bytes.fromhex(got["CHAP_C"][2:])
            digest = hashlib.md5(bytes([ident]) + chap[1].encode() + challenge).hexdigest()
            reply = [("CHAP_N", chap[0]), ("CHAP_R", "0x" + digest)]
            my_id, my_challenge = 0, b""
            if mutual_chap is not None:
                my_id = (ident + 1) & 0xFF
                my_challenge = hashlib.sha256(challenge + b"initiator").digest()[:16]
                reply += [("CHAP_I", str(my_id)), ("CHAP_C", "0x" + my_challenge.hex())]
            resp = await self._login_step(itt, 0, 1, True, reply)
            if mutual_chap is not None:
                got = dict(parse_text(resp.data))
                want = hashlib.md5(bytes([my_id]) + mutual_chap[1].encode() + my_challenge).hexdigest()
                if got.get("CHAP_N") != mutual_chap[0] or got.get("CHAP_R", "").lower() != "0x" + want:
                    raise InitiatorError(f"target failed mutual CHAP: {got}")
            base = []
        else:
            base.append(("AuthMethod", "None"))
            resp = await self._login_step(itt, 0, 1, True, base)
            base = []
        if resp.nsg == 3 and resp.transit:
            return resp
        offer = dict(DEFAULT_KEYS)
        if discovery:
            offer = {
                k: v
                for k, v in offer.items()
                if k in ("HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength")
            }
        for key, value in (keys or {}).items():
            if value is None:
                offer.pop(key, None)  # stay silent on this key
            else:
                offer[key] = value
        self.offered = dict(offer)
        resp = await self._login_step(itt, 1, 3, True, [*base, *offer.items()])
        answered: set[str] = set(offer)
        while not (resp.transit and resp.nsg == 3):
            answers: list[tuple[str, str]] = []
            if answer_offers and resp.data:
                for key, value in parse_text(resp.data):
                    if key in answered or key in _TARGET_DECLARATIONS:
                        continue
                    answered.add(key)
                    answers.append((key, value))
            self.target_offers.update(dict(answers))
            resp = await self._login_step(itt, 1, 3, True, answers)
        # digests apply from the first PDU after the final Login Response (RFC 7143 13.1)
        self.header_digest = self.framer.header_digest = self.params.get("HeaderDigest") == "CRC32C"
        self.data_digest = self.framer.data_digest = self.params.get("DataDigest") == "CRC32C"
        return resp

    async def _login_step(
        self, itt: int, csg: int, nsg: int, transit: bool, pairs: list[tuple[str, str]]
    ) -> LoginResponse:
        await self.send(
            LoginRequest(
                itt=itt,
                isid=self.isid,
                tsih=self.tsih,
                cid=self.cid,
                cmdsn=self.cmdsn,
                exp_statsn=self.exp_statsn,
                csg=csg,
                nsg=nsg,
                transit=transit,
                version_max=0,
                version_min=0,
                data=encode_text(pairs),
            )
        )
        resp = await self.expect(LoginResponse)
        if resp.status_class != 0:
            raise InitiatorError(f"login failed: class {resp.status_class} detail {resp.status_detail}")
        self.tsih = resp.tsih
        self.cmdsn = resp.exp_cmdsn
        for key, value in parse_text(resp.data) if resp.data else []:
            if value not in ("Irrelevant", "NotUnderstood", "Reject"):
                self.params[key] = value
        return resp

    @property
    def max_send(self) -> int:
        return int(self.params.get("MaxRecvDataSegmentLength", "8192"))

    def flag(self, key: str) -> bool:
        return self.params.get(key, DEFAULT_KEYS.get(key, "Yes")) == "Yes"

    def number(self, key: str) -> int:
        return int(self.params.get(key, DEFAULT_KEYS[key]))

    # ------------------------------------------------------------------ full feature phase

    async def scsi(
        self,
        cdb: bytes,
        *,
        lun: int = 0,
        read_length: int = 0,
        write_data: bytes = b"",
        immediate_data: bool | None = None,
        use_unsolicited: bool = True,
        timeout: float = 10.0,
    ) -> ScsiReply:
        itt = next(self.itt)
        edtl = len(write_data) if write_data else read_length
        imm_ok = self.flag("ImmediateData") if immediate_data is None else immediate_data
        first = min(self.number("FirstBurstLength"), len(write_data))
        imm = min(first, self.max_send) if (write_data and imm_ok) else 0
        unsolicited = 0
        if write_data and not self.flag("InitialR2T") and use_unsolicited:
            unsolicited = first - imm
        lun_field = encode_lun(lun)
        await self.send(
            ScsiCommand(
                itt=itt,
                cmdsn=self._next_cmdsn(),
                exp_statsn=self.exp_statsn,
                cdb=cdb.ljust(16, b"\0"),
                expected_data_length=edtl,
                lun=lun_field,
                read=read_length > 0,
                write=bool(write_data),
                final=unsolicited == 0,
                bidi_read_length=read_length if (write_data and read_length) else None,
                data=write_data[:imm],
            )
        )
        if unsolicited:
            await self._send_data(itt, RESERVED_TAG, lun_field, write_data, imm, imm + unsolicited)
        reply = ScsiReply(status=-1)
        buf = bytearray()
        while True:
            pdu = await self.expect((R2T, DataIn, ScsiResponse), timeout)  # type: ignore[arg-type]
            if isinstance(pdu, R2T):
                reply.r2ts.append(pdu)
                end = pdu.buffer_offset + pdu.desired_length
                await self._send_data(itt, pdu.ttt, lun_field, write_data, pdu.buffer_offset, end)
            elif isinstance(pdu, DataIn):
                reply.datains.append(pdu)
                if pdu.buffer_offset != len(buf):
                    raise InitiatorError("Data-In offset out of order")
                buf += pdu.data
                if pdu.status_present:
                    reply.status = pdu.status
                    reply.residual, reply.overflow, reply.underflow = (
                        pdu.residual,
                        pdu.overflow,
                        pdu.underflow,
                    )
                    break
            else:
                reply.status = pdu.status
                reply.response = pdu.response
                reply.residual, reply.overflow, reply.underflow = pdu.residual, pdu.overflow, pdu.underflow
                if pdu.data:
                    n = int.from_bytes(bytes(pdu.data[:2]), "big")
                    reply.sense = bytes(pdu.data[2 : 2 + n])
                break
        reply.data = bytes(buf)
        return reply

    async def _send_data(self, itt: int, ttt: int, lun: int, data: bytes, start: int, end: int) -> None:
        datasn = 0
        off = start
        while off < end:
            n = min(self.max_send, end - off)
            await self.send(
                DataOut(
                    itt=itt,
                    ttt=ttt,
                    exp_statsn=self.exp_statsn,
                    datasn=datasn,
                    buffer_offset=off,
                    lun=lun,
                    final=off + n == end,
                    data=data[off : off + n],
                )
            )
            off += n
            datasn += 1

    async def read(self, lba: int, blocks: int, block_size: int = 512, lun: int = 0) -> ScsiReply:
        cdb = bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])
        return await self.scsi(cdb, lun=lun, read_length=blocks * block_size)

    async def write(self, lba: int, data: bytes, block_size: int = 512, lun: int = 0) -> ScsiReply:
        blocks = len(data) // block_size
        cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])
        return await self.scsi(cdb, lun=lun, write_data=data)

    async def nop(self, data: bytes = b"") -> NopIn:
        itt = next(self.itt)
        await self.send(
            NopOut(itt=itt, cmdsn=self.cmdsn, exp_statsn=self.exp_statsn, immediate=True, data=data)
        )
        reply: NopIn = await self.expect(NopIn)
        return reply

    async def tmf(self, function: int, *, lun: int = 0, rtt: int = RESERVED_TAG, ref_cmdsn: int = 0) -> int:
        itt = next(self.itt)
        await self.send(
            TaskMgmtRequest(
                itt=itt,
                cmdsn=self.cmdsn,
                exp_statsn=self.exp_statsn,
                function=function,
                lun=encode_lun(lun),
                rtt=rtt,
                ref_cmdsn=ref_cmdsn,
                immediate=True,
            )
        )
        resp: TaskMgmtResponse = await self.expect(TaskMgmtResponse)
        return resp.response

    async def text(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        itt = next(self.itt)
        data = encode_text(pairs)
        ttt = RESERVED_TAG
        out = bytearray()
        while True:
            await self.send(
                TextRequest(
                    itt=itt, cmdsn=self.cmdsn, exp_statsn=self.exp_statsn, ttt=ttt, immediate=True, data=data
                )
            )
            resp: TextResponse = await self.expect(TextResponse)
            out += resp.data
            if resp.final and not resp.cont:
                break
            ttt, data = resp.ttt, b""
        return parse_text(bytes(out))

    async def logout(self, reason: int = LogoutReason.CLOSE_SESSION) -> LogoutResponse:
        itt = next(self.itt)
        await self.send(
            LogoutRequest(
                itt=itt,
                cmdsn=self.cmdsn,
                exp_statsn=self.exp_statsn,
                reason=reason,
                cid=self.cid,
                immediate=True,
            )
        )
        resp: LogoutResponse = await self.expect(LogoutResponse)
        return resp
