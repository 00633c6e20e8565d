"""Live effects of management changes, seen by a real iSCSI initiator over loopback: REPORTED LUNS DATA HAS
CHANGED to exactly the affected nexuses, CAPACITY DATA HAS CHANGED on resize, removed ACL / portal / disabled
TPG closes exactly the sessions it must, nothing else is disturbed."""

from __future__ import annotations

import asyncio

from iscsi_initiator import Initiator
from loopback_target import IQN, free_port, login, managed, simple_config

from target.config.model import AclConfig

HOST = "127.0.0.1"
TUR = bytes(6)
REPORT_LUNS = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0, 0])
READ_CAPACITY10 = bytes([0x25]) + bytes(9)
OTHER = "iqn.2024-01.org.sanlab:other-initiator"


def sense_key_asc(reply: object) -> tuple[int, int, int]:
    sense = bytes(reply.sense)  # type: ignore[attr-defined]
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F, sense[2], sense[3]
    return sense[2] & 0x0F, sense[12], sense[13]


def luns_of(data: bytes) -> list[int]:
    n = int.from_bytes(data[0:4], "big") // 8
    return [int.from_bytes(data[8 + 8 * i : 10 + 8 * i], "big") & 0x3FFF for i in range(n)]


async def closed(ini: Initiator, timeout: float = 3.0) -> bool:
    """True when the target closed this connection (EOF) within `timeout`."""
    assert ini.reader is not None
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await ini.reader.read(65536)
                if not data:
                    return True
    except TimeoutError:
        return False


def test_add_and_remove_lun_reports_luns_changed_to_affected_nexus_only() -> None:
    async def main() -> None:
        port = free_port()
        cfg = simple_config(port, targets=2, luns=1)
        async with managed(cfg) as (_server, mgr):
            a = await login(HOST, port, IQN)
            b = await login(HOST, port, f"{IQN}-1", isid=0x23D000000002)
            for ini in (a, b):
                assert (await ini.scsi(TUR)).status == 0
            report = await mgr.create("/backstores/ramdisk/extra", {"size": 4 * 1024 * 1024})
            assert report.ok, report
            report = await mgr.create(f"/iscsi/{IQN}/tpg1/luns/lun1", {"storage_object": "ramdisk/extra"})
            assert report.ok and report.unit_attentions >= 1
            # the affected nexus: UNIT ATTENTION / REPORTED LUNS DATA HAS CHANGED, then its REPORT LUNS shows both
            r = await a.scsi(TUR)
            assert r.status == 2 and sense_key_asc(r) == (0x6, 0x3F, 0x0E)
            rl = await a.scsi(REPORT_LUNS, read_length=256)
            assert luns_of(rl.data) == [0, 1]
            assert (await a.scsi(TUR, lun=1)).status == 0
            # the other target's nexus is not disturbed
            assert (await b.scsi(TUR)).status == 0
            # removing the LUN: same again
            report = await mgr.delete(f"/iscsi/{IQN}/tpg1/luns/lun1")
            assert report.ok
            r = await a.scsi(TUR)
            assert sense_key_asc(r) == (0x6, 0x3F, 0x0E)
            assert luns_of((await a.scsi(REPORT_LUNS, read_length=256)).data) == [0]
            assert (await b.scsi(TUR)).status == 0
            await a.logout()
            await b.logout()

    asyncio.run(main())


def test_resize_reports_capacity_data_has_changed() -> None:
    async def main() -> None:
        port = free_port()
        async with managed(simple_config(port, luns=1, lun_size=8 * 1024 * 1024)) as (_s, mgr):
            a = await login(HOST, port, IQN)
            assert (await a.scsi(TUR)).status == 0
            report = await mgr.set("/backstores/ramdisk/t0l0", {"size": "16M"})
            assert report.ok, report
            r = await a.scsi(TUR)
            assert sense_key_asc(r) == (0x6, 0x2A, 0x09)
            cap = await a.scsi(READ_CAPACITY10, read_length=8)
            assert int.from_bytes(cap.data[0:4], "big") + 1 == 16 * 1024 * 1024 // 512
            await a.logout()

    asyncio.run(main())


def test_removed_acl_closes_only_that_initiators_session() -> None:
    async def main() -> None:
        port = free_port()
        cfg = simple_config(port, luns=1, acl=AclConfig(node_wwn="iqn.2024-01.org.sanlab:test-initiator"))
        cfg.targets[0].tpgs[0].node_acls.append(AclConfig(node_wwn=OTHER, mapped_luns=[]))
        cfg.targets[0].tpgs[0].node_acls[1].mapped_luns = list(
            cfg.targets[0].tpgs[0].node_acls[0].mapped_luns
        )
        async with managed(cfg) as (_s, mgr):
            a = await login(HOST, port, IQN)
            b = await login(HOST, port, IQN, name=OTHER, isid=0x23D000000009)
            report = await mgr.delete(f"/iscsi/{IQN}/tpg1/acls/{OTHER}")
            assert report.ok and report.closed_sessions == 1
            assert await closed(b)
            assert (await a.scsi(TUR)).status == 0
            await a.logout()

    asyncio.run(main())


def test_removed_portal_closes_sessions_through_it_and_disable_tpg_closes_the_rest() -> None:
    async def main() -> None:
        port, port2 = free_port(), free_port()
        cfg = simple_config(port, luns=1)
        async with managed(cfg) as (server, mgr):
            report = await mgr.create(f"/iscsi/{IQN}/tpg1/portals/127.0.0.1:{port2}")
            assert report.ok, report
            assert ("127.0.0.1", port2) in server.listening()
            a = await login(HOST, port, IQN)
            b = await login(HOST, port2, IQN, isid=0x23D000000003)
            report = await mgr.delete(f"/iscsi/{IQN}/tpg1/portals/127.0.0.1:{port2}")
            assert report.ok and report.closed_sessions == 1
            assert await closed(b)
            assert (await a.scsi(TUR)).status == 0
            await asyncio.sleep(0.05)
            assert ("127.0.0.1", port2) not in server.listening()
            report = await mgr.set(f"/iscsi/{IQN}/tpg1", {"enable": False})
            assert report.ok and report.closed_sessions == 1
            assert await closed(a)

    asyncio.run(main())
