"""iSCSI sessions (RFC 7143 4.4 / 6.3): one I_T nexus each, one or more connections (MC/S), one CmdSN window.

Theory of operation
-------------------
A Session is created when the leading login of a normal session completes (TSIH 0 -> a fresh TSIH). Further
connections join it with a login carrying that TSIH (MaxConnections > 1). StatSN is per connection, CmdSN
per session (the shared `CmdSnWindow`); a task belongs to the connection its command arrived on (command
allegiance), so its Data-Out, R2Ts, Data-In and response all use that connection.

Reinstatement (RFC 7143 6.3.5): a leading login with TSIH 0 and the ISID of an existing session of the
same initiator/target/TPG replaces it: the old session's connections are closed, its tasks aborted and
the SCSI layer told that the old I_T nexus is gone before the new one is announced. A login on an
existing session with a CID already in use replaces that connection (connection reinstatement).

At ErrorRecoveryLevel 0 (and 1; connection recovery needs 2) a session whose last connection fails is
gone at once; Time2Retain only matters for ERL 2, which this target does not offer.

The registry implements the login team's `SessionLookup` protocol (find, by_tsih, allocate_tsih).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from target.iscsi.sequence import DEFAULT_CMDSN_DEPTH, CmdSnWindow
from target.scsi.command import LunAccess, Nexus

if TYPE_CHECKING:
    from target.iscsi.connection import Connection
    from target.iscsi.task import Task

log = logging.getLogger("target.iscsi.session")

MAX_IMMEDIATE_IN_FLIGHT = 64
DEFAULT_MAX_BUFFERED = 256 * 1024 * 1024  # bytes of write buffers per session


class Session:
    def __init__(
        self,
        *,
        tsih: int,
        nexus: Nexus,
        params: Any = None,
        exp_cmdsn: int = 0,
        cmdsn_depth: int = DEFAULT_CMDSN_DEPTH,
        lun_map: dict[int, LunAccess] | None = None,
        discovery: bool = False,
        error_recovery_level: int = 0,
        max_connections: int = 1,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self.tsih = tsih
        self.nexus = nexus
        self.params = params
        self.window: CmdSnWindow[Any] = CmdSnWindow(exp_cmdsn, cmdsn_depth)
        self.lun_map: dict[int, LunAccess] = lun_map if lun_map is not None else {}
        self.discovery = discovery
        self.error_recovery_level = error_recovery_level
        self.max_connections = max_connections
        self.max_buffered = max_buffered
        self.buffered = 0  # bytes preallocated for write data across the session
        self.immediate_in_flight = 0
        self.connections: dict[int, Connection] = {}
        self.closed = False
        self.logout_requested = False  # we sent an Async Message asking for logout
        #: called once when the session ends (the runtime tells the SCSI layer: nexus_gone)
        self.on_closed: list[Callable[[Session], None]] = []
        #: the registry holding this session (set by SessionRegistry.add): LUN / target resets reach the
        #: transport-held tasks of every session through it
        self.registry: SessionRegistry | None = None
        self._ttt = itertools.count(1)

    # SessionInfo view for the login machine
    @property
    def initiator_name(self) -> str:
        return self.nexus.initiator_name

    @property
    def isid(self) -> int:
        return self.nexus.isid

    @property
    def target_name(self) -> str:
        return self.nexus.target_name

    @property
    def tpg_tag(self) -> int:
        return self.nexus.tpg_tag

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    @property
    def cids(self) -> set[int]:
        return set(self.connections)

    def __repr__(self) -> str:
        return f"<Session tsih={self.tsih} {self.nexus.initiator_port} conns={sorted(self.cids)}>"

    # ----------------------------------------------------------------------------------------- tags

    def ttt_source(self) -> Iterator[int]:
        """Target Transfer Tags, unique per session (never 0xffffffff)."""
        while True:
            ttt = next(self._ttt) & 0xFFFFFFFF
            if ttt in (0, 0xFFFFFFFF):
                self._ttt = itertools.count(1)
                continue
            yield ttt

    # ----------------------------------------------------------------------------------------- connections

    def add_connection(self, conn: Connection) -> Connection | None:
        """Attach a connection; returns a replaced connection with the same CID (connection reinstatement)."""
        old = self.connections.get(conn.cid)
        # the new connection goes in first: closing the old one must not look like the session's last
        # connection going away (RFC 7143 6.3.4: connection reinstatement keeps the session)
        self.connections[conn.cid] = conn
        if old is not None and old is not conn:
            old.close("connection reinstatement")
        return old

    def remove_connection(self, conn: Connection) -> None:
        if self.connections.get(conn.cid) is conn:
            del self.connections[conn.cid]
        if not self.connections and not self.closed:
            self.close("last connection closed")

    def find_task(self, itt: int) -> tuple[Connection, Task] | None:
        for conn in self.connections.values():
            task = conn.tasks.get(itt)
            if task is not None:
                return conn, task
        return None

    def all_tasks(self) -> Iterator[tuple[Connection, Task]]:
        for conn in list(self.connections.values()):
            for task in list(conn.tasks.values()):
                yield conn, task

    def close(self, reason: str) -> None:
        """End the session: close every connection, forget held commands, tell listeners (once)."""
        if self.closed:
            return
        self.closed = True
        log.info("session %s closed: %s", self, reason)
        for conn in list(self.connections.values()):
            conn.close(reason)
        self.connections.clear()
        self.window.clear_held()
        for cb in self.on_closed:
            try:
                cb(self)
            except Exception:  # a listener must not stop the others
                log.exception("session close listener failed")

    def others(self) -> list[Session]:
        """The other open sessions of the process (empty when the session is not in a registry)."""
        if self.registry is None:
            return []
        return [s for s in self.registry if s is not self and not s.closed]

    def request_logout(self) -> None:
        """Shutdown: ask the initiator to log out (Async Message, event 1) on every connection."""
        self.logout_requested = True
        for conn in list(self.connections.values()):
            conn.request_logout()


class SessionRegistry:
    """All sessions of the process: the login machine's SessionLookup."""

    def __init__(self) -> None:
        self._by_tsih: dict[int, Session] = {}
        self._next_tsih = 1

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_tsih.values()))

    def __len__(self) -> int:
        return len(self._by_tsih)

    def find(self, initiator_name: str, isid: int, target_name: str, tpg_tag: int) -> Session | None:
        for s in self._by_tsih.values():
            n = s.nexus
            if (n.initiator_name, n.isid, n.target_name, n.tpg_tag) == (
                initiator_name,
                isid,
                target_name,
                tpg_tag,
            ):
                return s
        return None

    def by_tsih(self, tsih: int) -> Session | None:
        return self._by_tsih.get(tsih)

    def allocate_tsih(self) -> int:
        """A TSIH not in use (16 bits, never 0)."""
        for _ in range(0x10000):
            tsih = self._next_tsih
            self._next_tsih = self._next_tsih % 0xFFFF + 1
            if tsih not in self._by_tsih:
                return tsih
        raise RuntimeError("no free TSIH")

    def add(self, session: Session) -> None:
        self._by_tsih[session.tsih] = session
        session.registry = self
        session.on_closed.append(self._forget)

    def _forget(self, session: Session) -> None:
        if self._by_tsih.get(session.tsih) is session:
            del self._by_tsih[session.tsih]

    def reinstate(self, old: Session) -> None:
        """Session reinstatement: the old session ends (its nexus is reported gone by its close listeners)."""
        old.close("session reinstatement")
