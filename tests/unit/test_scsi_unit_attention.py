"""Unit attention: establishment per I_T nexus, priority, report-and-clear, exemptions, I_T nexus loss."""

import asyncio

from scsi_harness import N1, N2, cdb, make_dispatcher, make_lu, send, sense_of

from target.scsi.command import ScsiStatus
from target.scsi.sense import Asc
from target.scsi.unit_attention import UnitAttentionQueue

TUR = bytes(6)
INQ = bytes.fromhex("120000002400")
RS = bytes.fromhex("0300000012 00".replace(" ", ""))


def test_queue_priority_dedup_and_bound():
    q = UnitAttentionQueue(limit=3)
    q.add(Asc.MODE_PARAMETERS_CHANGED)
    q.add(Asc.REPORTED_LUNS_DATA_HAS_CHANGED)
    q.add(Asc.REPORTED_LUNS_DATA_HAS_CHANGED)
    assert q.pending() == [Asc.MODE_PARAMETERS_CHANGED, Asc.REPORTED_LUNS_DATA_HAS_CHANGED]
    q.add(Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED)  # reset first; supersedes MODE PARAMETERS CHANGED
    assert q.pending() == [Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED, Asc.REPORTED_LUNS_DATA_HAS_CHANGED]
    q.add(Asc.CAPACITY_DATA_HAS_CHANGED)
    q.add(Asc.INQUIRY_DATA_HAS_CHANGED)  # full: the oldest lowest-priority one goes
    assert len(q) == 3 and q.peek() is Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED
    assert q.pop() is Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED


def test_ua_reported_once_then_cleared_and_inquiry_exempt():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    d.nexus_created(N1)
    d.nexus_created(N2)
    lu.ua.establish(Asc.POWER_ON_OCCURRED, only=[N1])
    lu.capacity_changed(exclude=N2)
    assert send(d, m, INQ).status == ScsiStatus.GOOD  # INQUIRY neither reports nor clears
    r = send(d, m, TUR)
    assert r.sense == bytes.fromhex("700006000000000a00000000290100000000")
    assert sense_of(send(d, m, TUR)) == (6, 0x2A09)
    assert send(d, m, TUR).status == ScsiStatus.GOOD
    assert send(d, m, TUR, nexus=N2).status == ScsiStatus.GOOD


def test_ua_precedes_invalid_opcode():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    d.nexus_created(N1)
    lu.ua.establish(Asc.MODE_PARAMETERS_CHANGED)
    assert sense_of(send(d, m, cdb(0xC7, 0, 0, 0, 0, 0))) == (6, 0x2A01)
    assert sense_of(send(d, m, cdb(0xC7, 0, 0, 0, 0, 0))) == (5, 0x2000)


def test_request_sense_returns_and_clears_ua():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    d.nexus_created(N1)
    lu.ua.establish(Asc.REPORTED_LUNS_DATA_HAS_CHANGED)
    r = send(d, m, RS)
    assert r.status == ScsiStatus.GOOD
    assert bytes(r.data_in) == bytes.fromhex("700006000000000a000000003f0e00000000")
    assert bytes(send(d, m, RS).data_in) == bytes.fromhex("700000000000000a00000000000000000000")
    assert send(d, m, TUR).status == ScsiStatus.GOOD


def test_i_t_nexus_loss_reported_when_nexus_returns():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    d.nexus_created(N1)
    asyncio.run(d.nexus_gone(N1))
    d.nexus_created(N1)
    assert sense_of(send(d, m, TUR)) == (6, 0x2907)
    assert send(d, m, TUR).status == ScsiStatus.GOOD


def test_new_nexus_starts_without_ua():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    d.nexus_created(N2)
    assert send(d, m, TUR, nexus=N2).status == ScsiStatus.GOOD
