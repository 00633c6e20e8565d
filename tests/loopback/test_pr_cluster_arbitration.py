"""A REPLAY of the disk arbitration sequence Windows failover clusters run with SCSI-3 persistent reservations,
by two test initiators against a real `sanlab target serve` process. It is not Windows: the commands, their
order and the roles (owner defends, challenger preempts) follow Microsoft's description of cluster disk
arbitration; timings are shortened and no Windows software is involved.

1. both nodes REGISTER AND IGNORE EXISTING KEY with their own keys;
2. the owner RESERVEs WRITE EXCLUSIVE - REGISTRANTS ONLY;
3. the owner defends: periodic READ RESERVATION checks showing itself as the holder; the challenger sees it too;
4. the owner stops defending (it is "partitioned"); the challenger PREEMPTs the owner's key, taking the
   reservation with the same type and removing the owner's registration;
5. the old owner's next command reports REGISTRATIONS PREEMPTED, its writes then get RESERVATION CONFLICT, and the
   new owner writes freely.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from iscsi_initiator import Initiator
from loopback_target import login_ready
from target_process import free_port, sanlab_serving, write_native_config

from target.scsi.sense import parse_sense

pytestmark = pytest.mark.slow

OWNER_KEY, CHALLENGER_KEY = 0x0000C1A5E0000001, 0x0000C1A5E0000002
WERO = 0x05
GOOD, CHECK_CONDITION, CONFLICT = 0x00, 0x02, 0x18
WRITE10 = bytes((0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0))
READ_RESERVATION = bytes((0x5E, 0x01, 0, 0, 0, 0, 0, 0x00, 0xFF, 0))
READ_KEYS = bytes((0x5E, 0x00, 0, 0, 0, 0, 0, 0x00, 0xFF, 0))


def prout(sa: int, key: int, sa_key: int = 0, pr_type: int = 0) -> tuple[bytes, bytes]:
    cdb = bytes((0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0))
    return cdb, key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(8)


async def node(port: int, name: str, isid: int, iqn: str) -> Initiator:
    return await login_ready("127.0.0.1", port, iqn, name=name, isid=isid)  # unit attentions read


async def holder(ini: Initiator) -> tuple[int, int]:
    """(reservation key, type) from READ RESERVATION; (0, 0) when none."""
    r = await ini.scsi(READ_RESERVATION, read_length=255)
    assert r.status == GOOD
    if int.from_bytes(r.data[4:8], "big") == 0:
        return 0, 0
    return int.from_bytes(r.data[8:16], "big"), r.data[21] & 0x0F


async def arbitration(port: int, iqn: str) -> None:
    owner = await node(port, "iqn.1991-05.com.microsoft:node1", 0x400001370000, iqn)
    challenger = await node(port, "iqn.1991-05.com.microsoft:node2", 0x400001370001, iqn)

    # 1. both register (ignore existing key)
    for ini, key in ((owner, OWNER_KEY), (challenger, CHALLENGER_KEY)):
        cdb, data = prout(0x06, 0, key)
        assert (await ini.scsi(cdb, write_data=data)).status == GOOD
    keys = (await owner.scsi(READ_KEYS, read_length=255)).data
    assert int.from_bytes(keys[4:8], "big") == 16

    # 2. the owner reserves Write Exclusive - Registrants Only
    cdb, data = prout(0x01, OWNER_KEY, pr_type=WERO)
    assert (await owner.scsi(cdb, write_data=data)).status == GOOD
    # the challenger cannot reserve over it
    cdb, data = prout(0x01, CHALLENGER_KEY, pr_type=WERO)
    assert (await challenger.scsi(cdb, write_data=data)).status == CONFLICT

    # 3. the owner defends with periodic reservation checks; both see the owner holding it
    for _ in range(3):
        assert await holder(owner) == (OWNER_KEY, WERO)
        assert await holder(challenger) == (OWNER_KEY, WERO)
        assert (await owner.scsi(WRITE10, write_data=bytes(512))).status == GOOD
        await asyncio.sleep(0.05)

    # 4. the owner stops defending; the challenger preempts the owner's key with the same type
    cdb, data = prout(0x04, CHALLENGER_KEY, OWNER_KEY, pr_type=WERO)
    assert (await challenger.scsi(cdb, write_data=data)).status == GOOD
    assert await holder(challenger) == (CHALLENGER_KEY, WERO)

    # 5. the old owner learns it lost (REGISTRATIONS PREEMPTED), then conflicts on writes; the new owner writes
    first = await owner.scsi(WRITE10, write_data=bytes(512))
    assert first.status == CHECK_CONDITION
    assert parse_sense(first.sense)[1] == 0x2A05
    assert (await owner.scsi(WRITE10, write_data=bytes(512))).status == CONFLICT
    assert (
        await owner.scsi(bytes((0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0)), read_length=512)
    ).status == GOOD  # reads
    assert (await challenger.scsi(WRITE10, write_data=bytes(512))).status == GOOD
    keys = (await challenger.scsi(READ_KEYS, read_length=255)).data
    assert keys[8:16] == CHALLENGER_KEY.to_bytes(8, "big") and int.from_bytes(keys[4:8], "big") == 8
    # the old owner re-registers to rejoin, but cannot take the reservation back with RESERVE
    cdb, data = prout(0x06, 0, OWNER_KEY)
    assert (await owner.scsi(cdb, write_data=data)).status == GOOD
    cdb, data = prout(0x01, OWNER_KEY, pr_type=WERO)
    assert (await owner.scsi(cdb, write_data=data)).status == CONFLICT


def test_cluster_arbitration_replay(tmp_path: Path) -> None:
    port = free_port()
    config, spec = write_native_config(tmp_path, port, tmp_path / "state")
    with sanlab_serving(config, port, tmp_path / "target.log"):
        asyncio.run(arbitration(port, spec.iqn))
