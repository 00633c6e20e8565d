"""Sessions over loopback with a real server: IPv6 portal, MC/S, session and connection reinstatement, CHAP and
mutual CHAP, discovery, many sessions at once."""

from __future__ import annotations

import asyncio
import os

import pytest
from iscsi_initiator import Initiator, InitiatorError
from loopback_target import (
    INITIATOR,
    IQN,
    free_port,
    have_ipv6_loopback,
    login,
    running,
    simple_config,
)

from target.config.model import AclConfig, AuthConfig
from target.pdu.pdus import LogoutReason, LogoutResponseCode

HOST = "127.0.0.1"


async def verified_io(ini: Initiator, lba: int, size: int = 8192, lun: int = 0) -> None:
    data = os.urandom(size)
    w = await ini.write(lba, data, lun=lun)
    assert w.status == 0, w
    r = await ini.read(lba, size // 512, lun=lun)
    assert r.status == 0 and r.data == data


def test_ipv6_portal() -> None:
    if not have_ipv6_loopback():
        pytest.skip("this host has no IPv6 loopback (::1)")

    async def main() -> None:
        port = free_port("::1")
        async with running(simple_config(port, host="::1")) as server:
            assert any(addr[0] == "::1" for addr in server.addresses)
            ini = await login("::1", port)
            await verified_io(ini, 0)
            targets = await ini.text([("SendTargets", "")])  # normal session: its own target
            addresses = [v for k, v in targets if k == "TargetAddress"]
            assert any(a.startswith(f"[::1]:{port}") for a in addresses), addresses
            assert (await ini.logout()).response == LogoutResponseCode.CLOSED
            await ini.close()

    asyncio.run(main())


def test_mcs_two_connections_and_logout_of_one() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port, parameters={"MaxConnections": "4"})) as server:
            a = await login(HOST, port, keys={"MaxConnections": "2"})
            assert a.params["MaxConnections"] == "2"
            b = a.join()
            await b.connect(HOST, port)
            final = await b.login(IQN, tsih=a.tsih, cid=1)
            assert final.tsih == a.tsih and b.cid == 1
            (session,) = list(server.rt.sessions)
            assert session.cids == {0, 1}
            # a third connection exceeds MaxConnections=2
            c = a.join()
            await c.connect(HOST, port)
            with pytest.raises(InitiatorError, match="class 2 detail 6"):
                await c.login(IQN, tsih=a.tsih, cid=2)
            await c.close()
            # commands on both connections, serially and concurrently (CmdSN order across connections)
            await verified_io(a, 0)
            await verified_io(b, 64)
            data_a, data_b = os.urandom(4096), os.urandom(4096)
            wa, wb = await asyncio.gather(a.write(128, data_a), b.write(136, data_b))
            assert wa.status == 0 and wb.status == 0
            r = await a.read(128, 16)
            assert r.data == data_a + data_b
            # logout of connection 1 (reason: close the connection) leaves connection 0 working
            lo = await b.logout(LogoutReason.CLOSE_CONNECTION)
            assert lo.response == LogoutResponseCode.CLOSED
            await b.close()
            await asyncio.sleep(0.05)
            assert session.cids == {0} and not session.closed
            await verified_io(a, 256)
            # connection 0 closes the whole session
            assert (await a.logout()).response == LogoutResponseCode.CLOSED
            await a.close()
            await asyncio.sleep(0.05)
            assert session.closed and len(server.rt.sessions) == 0

    asyncio.run(main())


def test_mcs_logout_of_other_cid() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port, parameters={"MaxConnections": "2"})) as server:
            a = await login(HOST, port, keys={"MaxConnections": "2"})
            b = a.join()
            await b.connect(HOST, port)
            await b.login(IQN, tsih=a.tsih, cid=1)
            # connection 0 logs out connection 1 (RFC 7143 11.14.1: CID of another connection)
            a.cid = 1
            lo = await a.logout(LogoutReason.CLOSE_CONNECTION)
            a.cid = 0
            assert lo.response == LogoutResponseCode.CLOSED
            with pytest.raises((ConnectionError, InitiatorError, asyncio.TimeoutError)):
                await b.nop()
            (session,) = list(server.rt.sessions)
            assert session.cids == {0}
            await verified_io(a, 0)
            await a.logout()
            await a.close()

    asyncio.run(main())


def test_session_reinstatement_closes_old_session() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port)) as server:
            old = await login(HOST, port, isid=0x23D000000042)
            old_tsih = old.tsih
            await verified_io(old, 0)
            new = await login(HOST, port, isid=0x23D000000042)  # same ISID, TSIH 0
            assert new.tsih != old_tsih
            await asyncio.sleep(0.1)
            sessions = list(server.rt.sessions)
            assert [s.tsih for s in sessions] == [new.tsih]
            with pytest.raises((ConnectionError, InitiatorError, asyncio.TimeoutError)):
                await old.nop()
            await verified_io(new, 16)
            # a different ISID is a separate session, untouched by the reinstatement
            other = await login(HOST, port, isid=0x23D000000043)
            assert len(server.rt.sessions) == 2
            await verified_io(new, 32)
            for ini in (new, other):
                await ini.logout()
                await ini.close()

    asyncio.run(main())


def test_connection_reinstatement_same_cid() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port)) as server:
            old = await login(HOST, port)
            await verified_io(old, 0)
            new = old.join()
            await new.connect(HOST, port)
            await new.login(IQN, tsih=old.tsih, cid=0)  # same TSIH, CID in use: connection reinstatement
            assert new.tsih == old.tsih
            await asyncio.sleep(0.1)
            (session,) = list(server.rt.sessions)
            assert session.tsih == old.tsih and session.cids == {0} and not session.closed
            with pytest.raises((ConnectionError, InitiatorError, asyncio.TimeoutError)):
                await old.nop()
            await verified_io(new, 16)
            r = await new.read(0, 16)
            assert r.status == 0 and len(r.data) == 8192
            await new.logout()
            await new.close()

    asyncio.run(main())


def _acl(auth: AuthConfig) -> AclConfig:
    return AclConfig(node_wwn=INITIATOR, auth=auth)


def test_chap_login_through_server() -> None:
    async def main() -> None:
        port = free_port()
        cfg = simple_config(
            port, attributes={"authentication": 1}, acl=_acl(AuthConfig("alice", "alice-secret-12"))
        )
        async with running(cfg):
            ini = await login(HOST, port, chap=("alice", "alice-secret-12"))
            await verified_io(ini, 0)
            await ini.logout()
            await ini.close()
            # a wrong secret fails with Authentication Failure (02/01)
            bad = Initiator()
            await bad.connect(HOST, port)
            with pytest.raises(InitiatorError, match="class 2 detail 1"):
                await bad.login(IQN, chap=("alice", "wrong-secret-123"))
            await bad.close()
            # and without CHAP the login is refused as well
            none = Initiator()
            await none.connect(HOST, port)
            with pytest.raises(InitiatorError, match="class 2 detail 1"):
                await none.login(IQN)
            await none.close()

    asyncio.run(main())


def test_mutual_chap_login_through_server() -> None:
    async def main() -> None:
        port = free_port()
        auth = AuthConfig("alice", "alice-secret-12", "tgt-user", "target-secret-34")
        cfg = simple_config(port, attributes={"authentication": 1}, acl=_acl(auth))
        async with running(cfg) as server:
            ini = await login(HOST, port, chap=("alice", "alice-secret-12"), mutual_chap=auth_pair(auth))
            await verified_io(ini, 0)
            await ini.logout()
            await ini.close()
            # an initiator expecting another target secret detects the impostor
            sus = Initiator(isid=0x23D000000009)
            await sus.connect(HOST, port)
            with pytest.raises(InitiatorError, match="mutual CHAP"):
                await sus.login(
                    IQN, chap=("alice", "alice-secret-12"), mutual_chap=("tgt-user", "other-secret")
                )
            await sus.close()
            await asyncio.sleep(0.05)
            assert len(server.rt.sessions) == 0

    asyncio.run(main())


def auth_pair(auth: AuthConfig) -> tuple[str, str]:
    return auth.mutual_userid, auth.mutual_password


def test_discovery_session_send_targets_all() -> None:
    async def main() -> None:
        port = free_port()
        async with running(simple_config(port, targets=3)) as server:
            ini = Initiator()
            await ini.connect(HOST, port)
            await ini.login(None, discovery=True)
            pairs = await ini.text([("SendTargets", "All")])
            names = [v for k, v in pairs if k == "TargetName"]
            assert sorted(names) == sorted([IQN, f"{IQN}-1", f"{IQN}-2"])
            assert [v for k, v in pairs if k == "TargetAddress"] == [f"{HOST}:{port},1"] * 3
            (session,) = list(server.rt.sessions)
            assert session.discovery
            # SCSI commands are not allowed in a discovery session
            with pytest.raises(InitiatorError, match="Reject"):
                await ini.read(0, 1)
            assert (await ini.logout()).response == LogoutResponseCode.CLOSED
            await ini.close()

    asyncio.run(main())


def test_fifty_sessions_on_five_targets_with_twenty_luns() -> None:
    async def main() -> None:
        port = free_port()
        cfg = simple_config(port, targets=5, luns=20, lun_size=1024 * 1024)
        async with running(cfg) as server:

            async def one(i: int) -> None:
                target = IQN if i % 5 == 0 else f"{IQN}-{i % 5}"
                ini = await login(HOST, port, target, isid=0x23D000001000 + i)
                lun = i % 20
                report = await ini.scsi(
                    bytes([0xA0, 0, 0, 0, 0, 0]) + (4096).to_bytes(4, "big") + bytes(2), read_length=4096
                )
                assert report.status == 0
                assert int.from_bytes(report.data[:4], "big") == 20 * 8
                # sessions on the same target write disjoint areas of the LUN
                await verified_io(ini, (i // 5) * 32, size=16384, lun=lun)
                await ini.logout()
                await ini.close()

            results = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, failures[:3]
            await asyncio.sleep(0.05)
            assert len(server.rt.sessions) == 0

    asyncio.run(main())


def test_configured_parameters_take_effect_when_the_initiator_is_silent() -> None:
    """TPG MaxBurstLength=131072 and InitialR2T=No: the target offers them (RFC 7143 6.2) and they apply."""

    async def main() -> None:
        port = free_port()
        cfg = simple_config(port, parameters={"MaxBurstLength": "131072", "InitialR2T": "No"})
        async with running(cfg) as server:
            ini = await login(HOST, port, keys={"MaxBurstLength": None, "InitialR2T": None})
            assert ini.target_offers == {"MaxBurstLength": "131072", "InitialR2T": "No"}
            (session,) = list(server.rt.sessions)
            assert session.params.max_burst_length == 131072 and session.params.initial_r2t is False
            # a 1 MiB write: unsolicited first burst, then R2Ts of at most MaxBurstLength each
            data = os.urandom(1024 * 1024)
            w = await ini.write(0, data)
            assert w.status == 0 and w.r2ts
            assert all(r.desired_length <= 131072 for r in w.r2ts)
            assert w.r2ts[0].buffer_offset == 65536  # after the unsolicited FirstBurstLength
            assert (await ini.read(0, len(data) // 512)).data == data
            await ini.logout()
            await ini.close()

    asyncio.run(main())
