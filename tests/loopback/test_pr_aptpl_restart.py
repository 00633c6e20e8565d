"""APTPL across a crash: a real `sanlab target serve` process, two initiators register (one with APTPL=1) and
one reserves WRITE EXCLUSIVE - REGISTRANTS ONLY; the target is killed with SIGKILL (no shutdown path runs), started
again from the same configuration, and READ FULL STATUS shows the same registrations, holder, type and PR
generation; the non-registered initiator still gets RESERVATION CONFLICT on a write."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from iscsi_initiator import Initiator
from loopback_target import login_ready
from target_process import free_port, sanlab_serving, write_native_config

pytestmark = pytest.mark.slow

KEY_A, KEY_B = 0xA1A1A1A1A1A1A1A1, 0xB2B2B2B2B2B2B2B2
CONFLICT = 0x18


async def session(port: int, name: str, isid: int, iqn: str) -> Initiator:
    return await login_ready("127.0.0.1", port, iqn, name=name, isid=isid)  # unit attentions read


def prout(sa: int, key: int, sa_key: int = 0, pr_type: int = 0, flags: int = 0) -> tuple[bytes, bytes]:
    cdb = bytes((0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0))
    return cdb, key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(4) + bytes((flags, 0, 0, 0))


READ_FULL_STATUS = bytes((0x5E, 0x03, 0, 0, 0, 0, 0, 0x10, 0x00, 0))


async def before_crash(port: int, iqn: str) -> bytes:
    a = await session(port, "iqn.2026-11.test:node-a", 0x400000000001, iqn)
    b = await session(port, "iqn.2026-11.test:node-b", 0x400000000002, iqn)
    cdb, data = prout(0x06, 0, KEY_A, flags=0x01)  # REGISTER AND IGNORE EXISTING KEY, APTPL=1
    assert (await a.scsi(cdb, write_data=data)).status == 0
    cdb, data = prout(0x06, 0, KEY_B, flags=0x01)
    assert (await b.scsi(cdb, write_data=data)).status == 0
    cdb, data = prout(0x01, KEY_A, pr_type=0x05)  # RESERVE, WRITE EXCLUSIVE - REGISTRANTS ONLY
    assert (await a.scsi(cdb, write_data=data)).status == 0
    status = await a.scsi(READ_FULL_STATUS, read_length=4096)
    assert status.status == 0
    return status.data


async def after_restart(port: int, iqn: str) -> tuple[bytes, int, int]:
    a = await session(port, "iqn.2026-11.test:node-a", 0x400000000001, iqn)
    c = await session(port, "iqn.2026-11.test:node-c", 0x400000000003, iqn)
    status = await a.scsi(READ_FULL_STATUS, read_length=4096)
    write = bytes((0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0))
    by_outsider = await c.scsi(write, write_data=bytes(512))
    by_holder = await a.scsi(write, write_data=bytes(512))
    return status.data, by_outsider.status, by_holder.status


def write_config(tmp: Path, port: int) -> tuple[Path, str]:
    config, spec = write_native_config(tmp, port, tmp / "state" / "not-yet-created")
    return config, spec.iqn


def test_aptpl_survives_kill_9(tmp_path: Path) -> None:
    port = free_port()
    config, iqn = write_config(tmp_path, port)
    log = tmp_path / "target.log"
    with sanlab_serving(config, port, log) as proc:
        try:
            before = asyncio.run(before_crash(port, iqn))
            saved = list((tmp_path / "state" / "not-yet-created" / "pr").glob("*.json"))
            assert len(saved) == 1, "APTPL state must be on disk before the command completed"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with sanlab_serving(config, port, log):
        after, outsider, holder = asyncio.run(after_restart(port, iqn))
    # 2 registrations; generation 2 (two registrations; RESERVE does not count)
    assert before[:4] == (2).to_bytes(4, "big")
    assert after == before
    assert b"iqn.2026-11.test:node-a,i,0x400000000001" in after
    assert outsider == CONFLICT and holder == 0


async def lost_then_replaced(port: int, iqn: str) -> tuple[int, bytes, int, int, int]:
    a = await session(port, "iqn.2026-11.test:node-a", 0x400000000001, iqn)
    read = bytes((0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0))
    lost = await a.scsi(read, read_length=512)
    inquiry = await a.scsi(bytes((0x12, 0, 0, 0, 36, 0)), read_length=36)
    cdb, data = prout(0x08, 0, KEY_A, pr_type=0x05)  # REPLACE LOST RESERVATION, WE-RO
    replaced = await a.scsi(cdb, write_data=data)
    after = await a.scsi(read, read_length=512)
    return lost.status, lost.sense, inquiry.status, replaced.status, after.status


def test_unreadable_aptpl_file_is_a_lost_reservation(tmp_path: Path) -> None:
    """SPC-4 5.13.5.3.2 through a real process: a corrupt APTPL file -> DATA PROTECT / PERSISTENT RESERVATION
    INFORMATION LOST on READ, INQUIRY passes, REPLACE LOST RESERVATION ends the condition; the file is kept."""
    port = free_port()
    config, iqn = write_config(tmp_path, port)
    pr_dir = tmp_path / "state" / "not-yet-created" / "pr"
    with sanlab_serving(config, port, tmp_path / "target.log") as proc:
        try:
            asyncio.run(before_crash(port, iqn))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    (saved,) = pr_dir.glob("*.json")
    saved.write_bytes(saved.read_bytes()[:40])  # torn: not JSON any more
    with sanlab_serving(config, port, tmp_path / "target.log"):
        status, sense, inquiry, replaced, after = asyncio.run(lost_then_replaced(port, iqn))
    assert status == 0x02 and (sense[2] & 0x0F, sense[12], sense[13]) == (0x07, 0x44, 0x01)
    assert (inquiry, replaced, after) == (0, 0, 0)
    assert len(list(pr_dir.glob("*.json.corrupt-*"))) == 1
