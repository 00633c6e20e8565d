"""The asyncio edge of the target: listeners, one task per connection, timers, graceful shutdown.

This is the only module that touches sockets and the event loop. Per connection:

    login phase   bytes -> PduReader -> LoginRequest -> LoginMachine -> Login Responses   (login_timeout bound)
    attach        LoginResult -> Session (new / reinstated / joined) + Connection (sans-I/O)
    full feature  bytes -> PduReader -> Connection.receive_raw -> events:
                    SendPdu           -> codec.encode_pdu segments -> transport.writelines (vectored)
                    ExecuteCommand    -> task: Dispatcher.execute -> Connection.command_complete/aborted
                    RunTaskManagement -> task: tmf.perform -> Connection.tmf_complete
                    ParamsChanged     -> PduReader limit update
                    CloseConnection   -> flush, close the socket

A ticker (once a second, faster for short keepalive settings) drives the NOP-In keepalive of every connection. On SIGINT/SIGTERM (`run`) or when
`stop` is set (`serve`), listeners close, every session gets an Async Message asking for logout, and after a
short grace period the remaining connections are closed. An exception in one connection is logged and ends
only that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

from target.config.model import Config
from target.iscsi import tmf
from target.iscsi.connection import (
    CloseConnection,
    Connection,
    ConnectionSettings,
    DirectIo,
    ExecuteCommand,
    ParamsChanged,
    RunTaskManagement,
    SendPdu,
    SendWire,
)
from target.iscsi.discovery import send_targets
from target.iscsi.login import LoginKind, LoginMachine, LoginResult
from target.iscsi.negotiation import TextNegotiator, target_settings
from target.iscsi.session import Session
from target.iscsi.task import limits_from_params
from target.metrics.counters import IoStats
from target.pdu import codec
from target.pdu.framing import FramingError, PduReader
from target.pdu.pdus import Opcode
from target.runtime import Runtime, build_runtime
from target.scsi.command import LunAccess, ScsiResult, ScsiStatus

log = logging.getLogger("target.server")

LOGIN_SEGMENT = 8192  # data segment bound during login (RFC 7143 13.12)
READ_CHUNK = 256 * 1024
#: receive buffer of the full feature phase: one receive takes as much as the framer may hold, so QD32 x
#: 128 KiB writes arrive in few callbacks (and their R2Ts/responses leave in few sends). It starts at
#: FFP_RECEIVE_BUFFER_INITIAL and doubles each time a receive fills it (memory per idle session stays small).
FFP_RECEIVE_BUFFER = 1024 * 1024
FFP_RECEIVE_BUFFER_INITIAL = 16 * 1024
#: event batches one pump drains before it yields to the loop (bounds the work per callback)
_PUMP_ROUNDS = 64
WRITE_HIGH_WATER = 4 * 1024 * 1024
# sense for an unexpected internal failure: HARDWARE ERROR / INTERNAL TARGET FAILURE (44h/00h)
_INTERNAL_FAILURE = bytes([0x70, 0, 0x04, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x44, 0x00, 0, 0, 0, 0])

try:  # the TaskAborted exception of the SCSI layer (a task that must get no response)
    from target.scsi.task_set import TaskAborted
except ImportError:  # pragma: no cover - during parallel development

    class TaskAborted(Exception):  # type: ignore[no-redef]
        pass


class _Resume:
    """Awaitable that carries on a coroutine already stepped once by hand (`TargetServer._run_eager`): it
    hands the value the coroutine yielded (a future, or None for a bare yield) to the task driving it, then
    forwards every resumption, exception (cancellation) included, to the coroutine."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, None, None]:
        coro = self._coro
        yielded = self._first
        self._first = None
        while True:
            try:
                yield yielded
            except BaseException as exc:  # cancellation (or anything thrown in): forward to the coroutine
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                yielded = coro.send(None)
            except StopIteration:
                return


def _maybe_await(value: Any) -> None:
    """Call-and-forget for hooks that may be sync or async (nexus_created / nexus_gone)."""
    if inspect.isawaitable(value):
        task = asyncio.ensure_future(value)
        task.add_done_callback(_log_task_error)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


def describe_params(result: LoginResult) -> dict[str, str]:
    """The negotiated values worth a line in the log (and a structured `iscsi_params` record attribute)."""
    sp, cp = result.session_params, result.connection_params
    out = {
        "TargetName": result.target_name or "-",
        "AuthMethod": result.auth_method + (" (mutual)" if result.mutual_chap else ""),
        "HeaderDigest": "CRC32C" if cp.header_digest else "None",
        "DataDigest": "CRC32C" if cp.data_digest else "None",
        "MaxRecvDataSegmentLength": str(cp.max_recv_data_segment_length),
        "MaxXmitDataSegmentLength": str(cp.max_xmit_data_segment_length),
    }
    if not result.discovery:
        out.update(
            {
                "MaxConnections": str(sp.max_connections),
                "InitialR2T": "Yes" if sp.initial_r2t else "No",
                "ImmediateData": "Yes" if sp.immediate_data else "No",
                "FirstBurstLength": str(sp.first_burst_length),
                "MaxBurstLength": str(sp.max_burst_length),
                "MaxOutstandingR2T": str(sp.max_outstanding_r2t),
                "ErrorRecoveryLevel": str(sp.error_recovery_level),
                "CmdSNDepth": str(result.cmdsn_depth),
            }
        )
    return out


class _Link:
    """Edge state of one connection in the full feature phase."""

    def __init__(self, conn: Connection, writer: asyncio.StreamWriter, framer: PduReader) -> None:
        self.conn = conn
        self.writer = writer
        self.framer = framer
        self.header_digest = False
        self.data_digest = False
        self.pump_scheduled = False
        self.closing = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.local: tuple[str, int] = ("", 0)
        self.peer: tuple[str, int] | None = None
        self.stats = IoStats()


class _FfpProtocol(asyncio.BufferedProtocol):
    """Full-feature-phase receive side of one connection (replaces the StreamReaderProtocol after login).

    The kernel copies into one preallocated buffer (`get_buffer` / `buffer_updated`, i.e. recv_into), the
    bytes go to the framer and the complete PDUs run at once. Write flow control and connection loss are
    forwarded to the original protocol, so `StreamWriter.drain()` keeps working. Reading pauses while more
    than WRITE_HIGH_WATER bytes of responses wait to be sent (an initiator that does not read its responses
    cannot make the target buffer without bound)."""

    def __init__(
        self, server: TargetServer, link: _Link, stream_protocol: Any, done: asyncio.Future[None]
    ) -> None:
        self._server = server
        self._link = link
        self._stream = stream_protocol
        self._done = done
        # small at first (an idle session costs little), doubled while receives fill it, up to FFP_RECEIVE_BUFFER
        self._view = memoryview(bytearray(FFP_RECEIVE_BUFFER_INITIAL))
        self._paused = False

    def get_buffer(self, sizehint: int) -> memoryview:
        # never more than the framer may buffer next to the partial PDU it holds (its bound is >= 1 MiB and
        # >= two of the largest PDUs, so the room is at least one PDU)
        framer = self._link.framer
        room = framer.buffer_limit() - framer.buffered
        return self._view if room >= len(self._view) else self._view[: max(room, 4096)]

    def buffer_updated(self, nbytes: int) -> None:
        view = self._view
        self.feed(view[:nbytes])  # the framer copies: the buffer is free again
        if nbytes == len(view) < FFP_RECEIVE_BUFFER:
            self._view = memoryview(bytearray(min(2 * nbytes, FFP_RECEIVE_BUFFER)))

    def feed(self, data: bytes | memoryview) -> None:
        link = self._link
        if self._done.done():
            return
        try:
            link.framer.feed(data)
        except FramingError as exc:
            link.conn.log.with_logger(log).warning("framing error: %s", exc)
            link.conn.close(f"framing error: {exc}")
        self._server._receive(link, self._done)
        if self._done.done() or self._paused:
            return
        transport = cast(asyncio.Transport, link.writer.transport)
        if transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            self._paused = True
            transport.pause_reading()
            task = asyncio.ensure_future(self._resume_after_drain())
            link.tasks.add(task)
            task.add_done_callback(link.tasks.discard)

    async def _resume_after_drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._link.writer.drain()
        self._paused = False
        transport = cast(asyncio.Transport, self._link.writer.transport)
        if not self._done.done() and not transport.is_closing():
            transport.resume_reading()

    def eof_received(self) -> bool | None:
        if not self._done.done():
            self._done.set_result(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream.connection_lost(exc)
        if not self._done.done():
            self._done.set_result(None)

    def pause_writing(self) -> None:
        self._stream.pause_writing()

    def resume_writing(self) -> None:
        self._stream.resume_writing()


class TargetServer:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._servers: list[asyncio.AbstractServer] = []
        self._listeners: dict[tuple[str, int], asyncio.AbstractServer] = {}
        #: counts of connections that have ended, per (target, tpg tag) (metrics)
        self.retired: dict[tuple[str, int], IoStats] = {}
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.addresses: list[tuple[str, int]] = []

    @property
    def config(self) -> Config:
        return self.rt.config

    # ------------------------------------------------------------------------------ listeners

    async def start(self) -> None:
        for ip, port in self.rt.portals():
            await self.open_listener(ip, port)
        self._ticker = asyncio.create_task(self._tick_loop())

    def listening(self) -> list[tuple[str, int]]:
        """The portal addresses (as configured) this server listens on."""
        return list(self._listeners)

    async def open_listener(self, ip: str, port: int) -> None:
        """Listen on a portal address (live: the management API adds portals through this)."""
        if (ip, port) in self._listeners:
            return
        host: str | None = ip
        family = socket.AF_UNSPEC
        if ip in ("0.0.0.0", "::", ""):
            # a wildcard portal listens on every address (both families for "::")
            host = None if ip in ("::", "") else "0.0.0.0"
            family = socket.AF_UNSPEC if host is None else socket.AF_INET
        server = await asyncio.start_server(
            self._on_client, host=host, port=port, family=family, reuse_address=True, limit=READ_CHUNK
        )
        self._servers.append(server)
        self._listeners[(ip, port)] = server
        for sock in server.sockets:
            addr = sock.getsockname()
            self.addresses.append((addr[0], addr[1]))
            log.info("listening on %s port %d", addr[0], addr[1])

    async def close_listener(self, ip: str, port: int) -> None:
        """Stop accepting on a portal address (existing connections are the management API's business)."""
        server = self._listeners.pop((ip, port), None)
        if server is None:
            return
        server.close()
        if server in self._servers:
            self._servers.remove(server)
        for sock in getattr(server, "sockets", ()):
            addr = sock.getsockname()
            with contextlib.suppress(ValueError):
                self.addresses.remove((addr[0], addr[1]))
        log.info("stopped listening on %s port %d", ip, port)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)

    def config_changed(self) -> None:
        """The management API swapped the runtime's Config (logins read it through `self.config`)."""

    def session_locals(self) -> dict[int, list[tuple[str, int]]]:
        """id(session) -> the local (portal) addresses its connections came in through."""
        out: dict[int, list[tuple[str, int]]] = {}
        for link in self._links:
            out.setdefault(id(link.conn.session), []).append(link.local)
        return out

    def links(self) -> list[_Link]:
        return list(self._links)

    async def close(self, *, grace: float | None = None) -> None:
        """Graceful shutdown: stop listening, ask every initiator to log out, then close what remains."""
        for server in self._servers:
            server.close()
        sessions = list(self.rt.sessions)
        for s in sessions:
            s.request_logout()
        for link in list(self._links):
            self._pump(link)
        wait = self.rt.shutdown_grace if grace is None else grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while len(self.rt.sessions) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for s in list(self.rt.sessions):
            s.close("target shutdown")
        for link in list(self._links):
            self._pump(link)
            link.writer.close()
        if self._ticker is not None:
            self._ticker.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)
        for h in handlers:
            h.cancel()

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # tick often enough for the configured keepalive (at most once a second, at least every 50 ms)
        timers = [t for t in (self.rt.nopin_interval, self.rt.nopin_timeout) if t > 0]
        period = max(0.05, min([1.0, *(t / 4 for t in timers)]))
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for link in list(self._links):
                try:
                    link.conn.tick(now)
                    self._pump(link)
                except Exception:
                    link.conn.log.with_logger(log).exception("timer failed")

    # ------------------------------------------------------------------------------ one connection

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.warning("connection from %s ended: %s", peer, exc)
        except Exception:
            log.exception("connection from %s failed", peer)
        finally:
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sockname = writer.get_extra_info("sockname")
        peername = writer.get_extra_info("peername")
        local = (str(sockname[0]), int(sockname[1]))
        peer = (str(peername[0]), int(peername[1])) if peername else None
        framer = PduReader(max_data_segment_length=LOGIN_SEGMENT)
        machine = LoginMachine(self.config, local, self.rt.sessions, initiator_address=peer)
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout = self.rt.login_timeout
        try:
            # the whole login is bounded in time (LIO login_timeout): a silent or dribbling peer is dropped
            async with asyncio.timeout(timeout) as deadline:

                def tpg_known() -> None:
                    # once the TPG is known its own login_timeout attribute applies (if configured)
                    nonlocal timeout
                    if machine.tpg is not None and "login_timeout" in machine.tpg.attributes:
                        timeout = float(machine.timeout_s)
                        deadline.reschedule(started + timeout)

                result = await self._login(reader, writer, framer, machine, peer, tpg_known)
        except TimeoutError:
            log.warning("login from %s timed out after %ss, closing", peer, timeout)
            return
        except FramingError as exc:
            log.warning("login from %s: framing error: %s, closing", peer, exc)
            return
        if result is None:
            return
        conn = self._attach(result, local)
        link = _Link(conn, writer, framer)
        link.local, link.peer = local, peer
        cp = result.connection_params
        link.header_digest, link.data_digest = cp.header_digest, cp.data_digest
        framer.header_digest, framer.data_digest = cp.header_digest, cp.data_digest
        framer.max_data_segment_length = cp.max_recv_data_segment_length
        self._links.add(link)
        conn.wakeup = lambda: self._schedule_pump(link)
        conn.direct = self._direct_io(link)
        conn.wire_digests = (link.header_digest, link.data_digest)
        negotiated = describe_params(result)
        conn.log.with_logger(log).info(
            "%s login from %s (%s): %s; %s",
            result.session_type.value,
            peer,
            result.initiator_alias or "no alias",
            result.kind.value,
            " ".join(f"{k}={v}" for k, v in negotiated.items()),
            extra={"params": negotiated},
        )
        try:
            await self._full_feature(reader, link)
        finally:
            self._links.discard(link)
            conn.close("connection lost")
            self._pump(link)
            self._retire(link)

    def _retire(self, link: _Link) -> None:
        """Fold an ended connection's counters into its session and its TPG (metrics stay monotonic)."""
        link.stats.digest_errors += link.conn.digest_errors
        link.conn.digest_errors = 0
        session = link.conn.session
        retired = getattr(session, "io_retired", None)
        if retired is None:
            retired = session.io_retired = IoStats()  # type: ignore[attr-defined]
        retired.add(link.stats)
        key = (session.nexus.target_name, session.nexus.tpg_tag)
        self.retired.setdefault(key, IoStats()).add(link.stats)
        link.stats = IoStats()

    async def _login(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framer: PduReader,
        machine: LoginMachine,
        peer: tuple[str, int] | None,
        tpg_known: Callable[[], None],
    ) -> LoginResult | None:
        while True:
            raw = framer.next_pdu()
            if raw is None:
                data = await reader.read(READ_CHUNK)
                if not data:
                    log.info("connection from %s closed during login", peer)
                    return None
                framer.feed(data)
                continue
            if raw.opcode != Opcode.LOGIN_REQUEST:
                # RFC 7143 6.3: only Login Requests before the full feature phase; there is no Reject here
                log.warning("non-login PDU (opcode 0x%02x) during login from %s: closing", raw.opcode, peer)
                return None
            try:
                req = codec.decode_pdu(raw, from_initiator=True)
            except codec.PduDecodeError as exc:
                # e.g. T and C both set (RFC 7143 11.12.2): answer Initiator Error (02/00), then close
                log.warning("malformed login request from %s: %s", peer, exc)
                step = machine.malformed(raw.bhs, str(exc))
            else:
                step = machine.receive(req)  # type: ignore[arg-type]
                tpg_known()
            for resp in step.responses:
                writer.writelines(codec.encode_pdu(resp))
            await writer.drain()
            if step.failed:
                log.warning(
                    "login from %s (%s) failed: %s (%s)",
                    peer,
                    machine.initiator_name or "?",
                    step.status.name,
                    step.reason,
                )
                return None
            if step.complete:
                return step.result

    def _attach(self, result: LoginResult, local: tuple[str, int]) -> Connection:
        rt = self.rt
        sp = result.session_params
        if result.is_new_session or result.existing is None or not isinstance(result.existing, Session):
            if result.kind is LoginKind.SESSION_REINSTATEMENT and isinstance(result.existing, Session):
                # RFC 7143 6.3.5: the old session ends first (its nexus goes, its tasks are aborted)
                rt.sessions.reinstate(result.existing)
            nexus = rt.nexus_for(result.initiator_name, result.isid, result.target_name, result.tpg_tag)
            session = Session(
                tsih=result.tsih,
                nexus=nexus,
                params=sp,
                exp_cmdsn=result.exp_cmdsn,
                cmdsn_depth=result.cmdsn_depth,
                lun_map=rt.lun_map(result.tpg, result.acl),
                discovery=result.discovery,
                error_recovery_level=sp.error_recovery_level,
                max_connections=sp.max_connections,
            )
            rt.sessions.add(session)
            if not result.discovery and rt.dispatcher is not None:
                created = getattr(rt.dispatcher, "nexus_created", None)
                if created is not None:
                    _maybe_await(created(nexus))
                session.on_closed.append(self._nexus_gone)
        else:
            session = result.existing
        target_name = result.target_name

        def _send_targets(value: str) -> list[tuple[str, str]] | None:
            return send_targets(
                self.config,
                value,
                initiator_name=result.initiator_name,
                local_address=local,
                session_target=None if result.discovery else target_name,
            )

        negotiator = TextNegotiator(
            target_settings(result.tpg.parameters if result.tpg is not None else None),
            result.connection_params,
            sp,
            send_targets=_send_targets,
        )
        conn = Connection(
            session,
            result.cid,
            limits_from_params(sp, result.connection_params),
            statsn=result.next_statsn,
            settings=ConnectionSettings(nopin_interval=rt.nopin_interval, nopin_timeout=rt.nopin_timeout),
            text_negotiator=negotiator,
            now=asyncio.get_running_loop().time(),
            name=f"[{result.initiator_name} tsih={result.tsih} cid={result.cid}]",
        )
        session.add_connection(conn)
        return conn

    def _nexus_gone(self, session: Session) -> None:
        gone = getattr(self.rt.dispatcher, "nexus_gone", None)
        if gone is not None:
            try:
                _maybe_await(gone(session.nexus))
            except Exception:
                log.exception("nexus_gone failed for %s", session)

    async def _full_feature(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """The full feature phase: the transport's protocol is swapped for `_FfpProtocol`, which receives
        into one preallocated buffer and runs the PDUs of every read at once (no StreamReader copies, no task
        wake-up per read); this coroutine only waits for the connection to end."""
        transport = link.writer.transport
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        # bytes the StreamReader already holds (an initiator sends nothing before the final Login Response,
        # so this is normally empty)
        buffered = getattr(reader, "_buffer", None)
        leftover = bytes(buffered) if buffered else b""
        if buffered:
            buffered.clear()
        if reader.at_eof() and not leftover:
            self._receive(link, done)
            if not done.done():
                done.set_result(None)
        else:
            proto = _FfpProtocol(self, link, transport.get_protocol(), done)
            transport.set_protocol(proto)
            if leftover:
                proto.feed(leftover)
            else:
                self._receive(link, done)  # PDUs the login loop already framed
        try:
            await done
        finally:
            self._pump(link)
        with contextlib.suppress(ConnectionError, OSError):
            await link.writer.drain()

    def _receive(self, link: _Link, done: asyncio.Future[None]) -> None:
        """Run every complete PDU the framer holds, then send what they caused (one write)."""
        conn = link.conn
        if conn.closed or link.closing:
            if not done.done():
                done.set_result(None)
            return
        # the explicit pump below sends what these PDUs cause: no call_soon pump per event meanwhile
        link.pump_scheduled = True
        try:
            now = asyncio.get_running_loop().time()
            while (raw := link.framer.next_pdu()) is not None:
                conn.receive_raw(raw, now=now)
                if conn.closed:
                    break
        except FramingError as exc:
            # header digest error, oversized segment, buffer bound: the connection cannot continue
            if "digest" in str(exc).lower():
                link.stats.digest_errors += 1
            conn.log.with_logger(log).warning("framing error: %s", exc)
            conn.close(f"framing error: {exc}")
        finally:
            self._pump(link)
        if (conn.closed or link.closing) and not done.done():
            done.set_result(None)

    # ------------------------------------------------------------------------------ events

    def _schedule_pump(self, link: _Link) -> None:
        if not link.pump_scheduled:
            link.pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump, link)

    def _pump(self, link: _Link) -> None:
        """Drain the connection's events: PDUs are encoded and written with one `writelines` (one vectored
        send) per pump, commands run eagerly (see `_run_eager`), so the responses of every command that
        completes at once join the same write."""
        # events queued while pumping are drained by the loop below: no extra call_soon for them
        link.pump_scheduled = True
        conn = link.conn
        out: list[bytes | bytearray | memoryview] = []
        try:
            for _ in range(_PUMP_ROUNDS):
                events = conn.take_events()
                if not events:
                    break
                for event in events:
                    if isinstance(event, SendWire):
                        if not link.closing:
                            out.extend(event.parts)
                    elif isinstance(event, SendPdu):
                        if link.closing:
                            continue
                        out.extend(
                            codec.encode_pdu(
                                event.pdu, header_digest=link.header_digest, data_digest=link.data_digest
                            )
                        )
                    elif isinstance(event, ExecuteCommand):
                        self._run_eager(link, self._execute(link, event))
                    elif isinstance(event, RunTaskManagement):
                        self._spawn(link, self._task_management(link, event))
                    elif isinstance(event, ParamsChanged):
                        link.framer.max_data_segment_length = event.params.max_recv_data_segment_length
                    elif isinstance(event, CloseConnection) and not link.closing:
                        if out:
                            link.writer.writelines(out)
                            out = []
                        link.closing = True
                        link.writer.close()
        finally:
            link.pump_scheduled = False
        if conn.has_events:  # more left (the rounds bound was hit): carry on in the next loop iteration
            self._schedule_pump(link)
        if out and not link.closing:
            link.writer.writelines(out)

    def _run_eager(self, link: _Link, coro: Coroutine[Any, Any, None]) -> None:
        """Start a command coroutine at once; only if it suspends (backstore I/O in the pool, a dormant task
        in the task set, ...) does it become an asyncio task (the eager task factory of Python 3.12, by hand).
        Page-cache hits thus complete without a task, a loop round trip or a call_soon."""
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception:
            log.exception("command failed")
            return
        self._spawn(link, _Resume(coro, yielded))

    def _spawn(self, link: _Link, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)
        task.add_done_callback(_log_task_error)

    def _direct_io(self, link: _Link) -> DirectIo | None:
        """The connection's direct READ/WRITE hook (target.iscsi.connection, target.scsi.sbc.direct), keeping the
        counters `_execute` keeps. None for discovery sessions or a dispatcher without the direct path."""
        execute_direct = getattr(self.rt.dispatcher, "execute_direct", None)
        session = link.conn.session
        if execute_direct is None or session.discovery:
            return None
        nexus = session.nexus
        clock = time.perf_counter

        def direct(
            lun: int, cdb: bytes, itt: int, edtl: int, data: bytes | memoryview | None
        ) -> bytes | bytearray | bool | None:
            access = session.lun_map.get(lun)
            if access is None:
                return None
            started = clock()
            result: bytes | bytearray | bool | None = execute_direct(nexus, access, cdb, itt, edtl, data)
            if result is not None:
                n_in, n_out = (0, edtl) if data is not None else (edtl, 0)
                _count(link, access, n_in, n_out, False, clock() - started)
            return result

        return direct

    async def _execute(self, link: _Link, event: ExecuteCommand) -> None:
        conn = link.conn
        request = event.request
        started = time.perf_counter()
        try:
            result = await self.rt.dispatcher.execute(request)
        except TaskAborted:
            conn.log.with_logger(log).debug("aborted: no response", extra={"itt": event.task.itt})
            conn.command_aborted(event.task)
            return
        except Exception:
            conn.log.with_logger(log).exception("SCSI layer failed", extra={"itt": event.task.itt})
            result = ScsiResult(status=ScsiStatus.CHECK_CONDITION, sense=_INTERNAL_FAILURE)
        _count(
            link,
            request.lun_map.get(request.lun),
            len(result.data_in),
            len(request.data_out),
            result.status != ScsiStatus.GOOD,
            time.perf_counter() - started,
        )
        conn.command_complete(event.task, result)
        if not link.closing and link.writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            with contextlib.suppress(ConnectionError, OSError):
                await link.writer.drain()

    async def _task_management(self, link: _Link, event: RunTaskManagement) -> None:
        job = event.job
        link.stats.tmf_requests += 1
        response = await tmf.perform(job, self.rt.dispatcher)
        link.conn.tmf_complete(job, response)
        if job.close_all_after:
            # TARGET COLD RESET: every connection to every initiator is closed after the response
            await asyncio.sleep(0)
            for s in list(self.rt.sessions):
                s.close("target cold reset")


def _count(link: _Link, access: LunAccess | None, n_in: int, n_out: int, error: bool, seconds: float) -> None:
    """Command counters: plain increments on the connection's and the LU's IoStats."""
    link.stats.command(n_in, n_out, error, seconds)
    lu_stats = getattr(access.lu, "io_stats", None) if access is not None else None
    if lu_stats is not None:
        lu_stats.command(n_in, n_out, error, seconds)


@dataclass
class ManagementOptions:
    """The management side of `serve`: API socket/TCP listener, metrics port, persistence, SIGHUP file."""

    socket_path: str | None = None  # None: no Unix socket API
    tcp: tuple[str, int] | None = None  # management API on TCP (needs token)
    token: str = ""
    metrics: tuple[str, int] | None = None  # plain Prometheus listener
    config_path: str | None = None  # the file SIGHUP / reload re-reads
    save_path: str | None = None  # save the running config here after every change
    keep: int = 3  # previous copies kept (FILE.1 ... FILE.N)
    reload_on_sighup: bool = False


async def serve(
    config: Config,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    runtime: Runtime | None = None,
    server_out: list[TargetServer] | None = None,
    management: ManagementOptions | None = None,
    manager_out: list[Any] | None = None,
) -> None:
    """Serve `config` until `stop` is set (forever when None), then shut down gracefully."""
    from target.api.http import start_api
    from target.api.manager import Manager

    rt = runtime or build_runtime(config)
    server = TargetServer(rt)
    if server_out is not None:
        server_out.append(server)
    opts = management or ManagementOptions()
    manager = Manager(rt, server, config_path=opts.config_path, save_path=opts.save_path, keep=opts.keep)
    if manager_out is not None:
        manager_out.append(manager)
    api = None
    loop = asyncio.get_running_loop()
    try:
        await server.start()
        if opts.socket_path or opts.tcp or opts.metrics:
            api = await start_api(
                manager, socket_path=opts.socket_path, tcp=opts.tcp, token=opts.token, metrics=opts.metrics
            )
        if opts.reload_on_sighup and opts.config_path:

            def _hup() -> None:
                log.info("SIGHUP: reloading %s", opts.config_path)
                task = asyncio.ensure_future(_reload(manager))
                task.add_done_callback(_log_task_error)

            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, _hup)
        if ready is not None:
            ready.set()
        await (stop.wait() if stop is not None else asyncio.Event().wait())
        log.info("shutting down")
        await server.close()
    finally:
        if opts.reload_on_sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
        if api is not None:
            await api.close()
        if runtime is None:
            rt.close()


async def _reload(manager: Any) -> None:
    try:
        report = await manager.reload()
    except Exception as exc:  # a bad file must not stop the target: log it, keep running
        log.error("reload failed: %s", exc)
        return
    for failure in report.failed:
        log.error("reload: %s: %s", failure.path, failure.reason)


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Keep per-command buffers (128 KiB reads, write buffers) in the heap instead of fresh mmaps.

    glibc serves allocations above M_MMAP_THRESHOLD (128 KiB at first) with mmap and trims the heap above
    M_TRIM_THRESHOLD, so every large read buffer cost page faults and kernel page clearing (~36 % of the
    samples of a 128 KiB read benchmark; docs/performance.md). Raising both keeps freed buffers mapped for
    reuse (up to 128 MiB of slack). Returns False where the C library has no mallopt (not glibc)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, 64 << 20) == 1
    return mallopt(_M_TRIM_THRESHOLD, 128 << 20) == 1 and ok


def run(config: Config, *, log_level: str = "info", management: ManagementOptions | None = None) -> int:
    """Blocking entry point (the CLI's `sanlab target serve`): serve until SIGINT/SIGTERM, exit 0."""
    tune_allocator()
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await serve(config, stop=stop, management=management)

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    return 0
