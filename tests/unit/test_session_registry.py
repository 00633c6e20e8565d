"""Session registry (the login's SessionLookup), reinstatement, MC/S connection bookkeeping."""

from __future__ import annotations

from target.iscsi.connection import CloseConnection, Connection
from target.iscsi.session import Session, SessionRegistry
from target.iscsi.task import TransferLimits
from target.scsi.command import Nexus


def nexus(isid: int = 1) -> Nexus:
    return Nexus("iqn.2024-01.test:init", isid, "iqn.2024-01.test:tgt", 1)


def test_find_by_tsih_allocate() -> None:
    reg = SessionRegistry()
    t1 = reg.allocate_tsih()
    s = Session(tsih=t1, nexus=nexus())
    reg.add(s)
    assert reg.allocate_tsih() != t1
    assert reg.by_tsih(t1) is s
    assert reg.find("iqn.2024-01.test:init", 1, "iqn.2024-01.test:tgt", 1) is s
    assert reg.find("iqn.2024-01.test:init", 2, "iqn.2024-01.test:tgt", 1) is None
    assert s.cids == set() and s.connection_count == 0


def test_reinstatement_closes_old_connections_and_notifies() -> None:
    reg = SessionRegistry()
    gone: list[Session] = []
    s = Session(tsih=reg.allocate_tsih(), nexus=nexus())
    s.on_closed.append(gone.append)
    reg.add(s)
    c = Connection(s, 0, TransferLimits())
    s.add_connection(c)
    reg.reinstate(s)
    assert c.closed and any(isinstance(e, CloseConnection) for e in c.take_events())
    assert gone == [s] and len(reg) == 0


def test_mcs_connections_and_connection_reinstatement() -> None:
    s = Session(tsih=1, nexus=nexus(), max_connections=2)
    a = Connection(s, 0, TransferLimits())
    b = Connection(s, 1, TransferLimits())
    s.add_connection(a)
    s.add_connection(b)
    assert s.cids == {0, 1}
    a2 = Connection(s, 0, TransferLimits())
    s.add_connection(a2)  # same CID: the old connection is replaced
    assert a.closed and not s.closed and s.connections[0] is a2
    b.close("test")
    a2.close("test")
    assert s.closed


def test_connection_reinstatement_of_the_only_connection_keeps_the_session() -> None:
    s = Session(tsih=1, nexus=nexus(), max_connections=1)
    a = Connection(s, 0, TransferLimits())
    s.add_connection(a)
    a2 = Connection(s, 0, TransferLimits())
    assert s.add_connection(a2) is a
    assert a.closed and not a2.closed and not s.closed and s.connections == {0: a2}
