"""Cut a byte stream into PDUs (RFC 7143 section 11.1 PDU structure), sans-I/O.

A PDU on the wire is

    BHS (48) | AHS (TotalAHSLength * 4) | HeaderDigest (4, if negotiated)
    | DataSegment (DataSegmentLength) | padding to 4 bytes | DataDigest (4, if negotiated and data present)

`PduReader.feed()` appends received bytes; `PduReader.next_pdu()` returns one complete `RawPdu` or None.
Parsing is lazy, one PDU per call, so the connection may switch digests or MaxRecvDataSegmentLength right
after the PDU that negotiated them (e.g. the last Login Response): the new values apply from the next PDU.

Everything the peer controls is bounded: the data segment against `max_data_segment_length` (checked as soon
as the BHS is in, before the data arrives), TotalAHSLength against `max_ahs_length` and the bytes held
against `max_buffer`. These, and a header digest mismatch, raise `FramingError`: the stream can no longer be
trusted to be in sync and the connection must be dropped (RFC 7143 7.8: a header digest error leaves the
PDU boundaries unknown). A data digest mismatch is not fatal: the PDU is framed with `data_digest_ok=False`
so the connection can answer with Reject (reason DATA_DIGEST_ERROR) and carry on (7.8.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from target.pdu import digest
from target.pdu.pdus import BHS_LENGTH

__all__ = ["DEFAULT_MAX_AHS_LENGTH", "FramingError", "PduReader", "RawPdu"]

# The longest legitimate AHS area: an extended-CDB AHS for a 260-byte CDB (248 bytes) plus the
# bidirectional read length AHS (8 bytes).
DEFAULT_MAX_AHS_LENGTH = 256
_MIN_DEFAULT_BUFFER = 1 << 20
_COMPACT_THRESHOLD = 1 << 16


class FramingError(Exception):
    """The byte stream is broken or exceeds a limit; the connection must be dropped."""


@dataclass(slots=True)
class RawPdu:
    """One framed PDU: header bytes split into BHS and AHS, the data segment without padding or digest."""

    bhs: bytes
    ahs: bytes
    data: bytes | memoryview
    data_digest_ok: bool = True

    @property
    def opcode(self) -> int:
        """The 6-bit opcode (an `Opcode` value for known opcodes)."""
        return self.bhs[0] & 0x3F

    @property
    def immediate(self) -> bool:
        return bool(self.bhs[0] & 0x40)

    @property
    def final(self) -> bool:
        return bool(self.bhs[1] & 0x80)

    @property
    def itt(self) -> int:
        """Initiator Task Tag (bytes 16-19), handy for answering a PDU that failed to decode."""
        return int.from_bytes(self.bhs[16:20], "big")

    @property
    def data_segment_length(self) -> int:
        return int.from_bytes(self.bhs[5:8], "big")


class PduReader:
    """Incremental PDU framer with bounded buffering."""

    def __init__(
        self,
        max_data_segment_length: int = 8192,
        header_digest: bool = False,
        data_digest: bool = False,
        max_buffer: int | None = None,
        max_ahs_length: int = DEFAULT_MAX_AHS_LENGTH,
    ) -> None:
        self.max_data_segment_length = max_data_segment_length
        self.header_digest = header_digest
        self.data_digest = data_digest
        self.max_buffer = max_buffer
        self.max_ahs_length = max_ahs_length
        self._buf = bytearray()
        self._pos = 0
        # Layout of the PDU at _pos once its header has been checked: (header_length, ahs_length,
        # data_length, total_length, data_digest_present). Fixed at that point, so changing the attributes
        # above mid-PDU only affects the next PDU.
        self._pending: tuple[int, int, int, int, bool] | None = None
        self._broken: FramingError | None = None

    # ------------------------------------------------------------------ state

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as PDUs."""
        return len(self._buf) - self._pos

    @property
    def at_boundary(self) -> bool:
        """True when no partial PDU is buffered (a clean place for the peer to close the connection)."""
        return self.buffered == 0

    def buffer_limit(self) -> int:
        """The effective bound on buffered bytes (`max_buffer`, or derived from the current PDU limits)."""
        if self.max_buffer is not None:
            return self.max_buffer
        largest_pdu = BHS_LENGTH + self.max_ahs_length + 4 + self.max_data_segment_length + 3 + 4
        return max(_MIN_DEFAULT_BUFFER, 2 * largest_pdu)

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes. Raises FramingError when the buffer bound would be exceeded."""
        if self._broken is not None:
            raise self._broken
        if not data:
            return
        if self.buffered + len(data) > self.buffer_limit():
            self._fail(
                f"receive buffer limit exceeded: {self.buffered} buffered + {len(data)} new "
                f"> {self.buffer_limit()} bytes"
            )
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_pdu(self) -> RawPdu | None:
        """The next complete PDU, or None if more bytes are needed."""
        if self._broken is not None:
            raise self._broken
        pending = self._pending
        if pending is None:
            pending = self._parse_header()
            if pending is None:
                return None
        header_len, ahs_len, data_len, total, has_data_digest = pending
        pos = self._pos
        buf = self._buf
        if len(buf) - pos < total:
            return None
        self._pending = None
        bhs_end = pos + BHS_LENGTH
        bhs = bytes(buf[pos:bhs_end])
        ahs = bytes(buf[bhs_end : bhs_end + ahs_len]) if ahs_len else b""
        data_start = pos + header_len
        data_ok = True
        data: bytes = b""
        if data_len:
            view = memoryview(buf)
            try:
                data = view[data_start : data_start + data_len].tobytes()
                if has_data_digest:
                    # 13.1: the data digest covers the data segment and its padding.
                    padded_end = data_start + data_len + (-data_len & 3)
                    data_ok = digest.check_digest(
                        view[padded_end : padded_end + 4], view[data_start:padded_end]
                    )
            finally:
                view.release()
        self._pos = pos + total
        self._compact()
        return RawPdu(bhs=bhs, ahs=ahs, data=data, data_digest_ok=data_ok)

    def pdus(self) -> list[RawPdu]:
        """All complete PDUs currently buffered, in order (same bounds and errors as next_pdu)."""
        out: list[RawPdu] = []
        while (pdu := self.next_pdu()) is not None:
            out.append(pdu)
        return out

    # ------------------------------------------------------------------ internals

    def _parse_header(self) -> tuple[int, int, int, int, bool] | None:
        pos = self._pos
        buf = self._buf
        if len(buf) - pos < BHS_LENGTH:
            return None
        ahs_len = buf[pos + 4] * 4
        data_len = int.from_bytes(buf[pos + 5 : pos + 8], "big")
        if ahs_len > self.max_ahs_length:
            self._fail(f"TotalAHSLength of {ahs_len} bytes exceeds {self.max_ahs_length}")
        if data_len > self.max_data_segment_length:
            # The peer ignored our MaxRecvDataSegmentLength (12.12); we cannot safely buffer the segment.
            self._fail(
                f"DataSegmentLength {data_len} exceeds MaxRecvDataSegmentLength {self.max_data_segment_length}"
            )
        header_len = BHS_LENGTH + ahs_len
        if self.header_digest:
            if len(buf) - pos < header_len + 4:
                return None
            view = memoryview(buf)
            try:
                ok = digest.check_digest(
                    view[pos + header_len : pos + header_len + 4], view[pos : pos + header_len]
                )
            finally:
                view.release()
            if not ok:
                self._fail("header digest mismatch")
            header_len += 4
        has_data_digest = self.data_digest and data_len > 0
        total = header_len + data_len + (-data_len & 3) + (4 if has_data_digest else 0)
        pending = (header_len, ahs_len, data_len, total, has_data_digest)
        self._pending = pending
        return pending

    def _compact(self) -> None:
        pos = self._pos
        if pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif pos > _COMPACT_THRESHOLD and pos * 2 > len(self._buf):
            del self._buf[:pos]
            self._pos = 0

    def _fail(self, message: str) -> NoReturn:
        self._broken = FramingError(message)
        raise self._broken
