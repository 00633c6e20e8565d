"""REPORT LUNS from the transport's LUN map (3000 LUNs, select report values, truncation), and the answers for
an unmapped LUN."""

from scsi_harness import N1, cdb, make_dispatcher, make_lu, send

from target.scsi.command import LunAccess, ScsiStatus
from target.scsi.device import LuRegistry
from target.scsi.dispatch import Dispatcher
from target.scsi.sense import Asc


def _rl(select=0, alloc=0xFFFFFF):
    return cdb(0xA0, 0, select, 0, 0, 0, *alloc.to_bytes(4, "big"), 0, 0)


def test_report_luns_bytes_small():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    m[300] = LunAccess(lu)
    r = send(d, m, _rl())
    assert bytes(r.data_in) == bytes.fromhex("00000010000000000000000000000000412c000000000000")


def test_report_luns_3000_luns_flat_addressing():
    lu = make_lu()
    lun_map = {n: LunAccess(lu) for n in range(3000)}
    d = Dispatcher(LuRegistry())
    r = send(d, lun_map, _rl(), lun=2999)
    data = bytes(r.data_in)
    assert int.from_bytes(data[:4], "big") == 3000 * 8 and len(data) == 8 + 3000 * 8
    assert data[8 + 255 * 8 : 8 + 257 * 8] == bytes.fromhex("00ff0000000000004100000000000000")
    assert data[-8:] == bytes.fromhex("4bb7000000000000")


def test_report_luns_truncates_but_reports_full_length():
    lu = make_lu()
    lun_map = {n: LunAccess(lu) for n in range(10)}
    r = send(Dispatcher(), lun_map, _rl(alloc=20))
    assert bytes(r.data_in) == bytes.fromhex("0000005000000000000000000000000000010000")


def test_report_luns_select_values():
    d, m = make_dispatcher(make_lu())
    assert bytes(send(d, m, _rl(select=2)).data_in)[:4] == bytes.fromhex("00000008")
    for select in (1, 0x10, 0x11, 0x12):
        assert bytes(send(d, m, _rl(select=select)).data_in) == bytes(8)
    r = send(d, m, _rl(select=3))
    assert r.sense == bytes.fromhex("700005000000000a00000000240000c00002")


def test_report_luns_on_unmapped_lun_and_empty_map_reports_lun0():
    r = send(Dispatcher(), {}, _rl(), lun=5)
    assert bytes(r.data_in) == bytes.fromhex("00000008000000000000000000000000")


def test_request_sense_on_unmapped_lun():
    d, m = make_dispatcher(make_lu())
    r = send(d, m, cdb(0x03, 0, 0, 0, 0xFF, 0), lun=9)
    assert r.status == ScsiStatus.GOOD
    assert bytes(r.data_in) == bytes.fromhex("700005000000000a00000000250000000000")
    r = send(d, m, cdb(0x03, 1, 0, 0, 0xFF, 0), lun=9)
    assert bytes(r.data_in) == bytes.fromhex("7205250000000000")


def test_report_luns_clears_luns_changed_ua_only():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    d.nexus_created(N1)
    lu.ua.establish(Asc.REPORTED_LUNS_DATA_HAS_CHANGED)
    lu.ua.establish(Asc.MODE_PARAMETERS_CHANGED)
    assert send(d, m, _rl()).status == ScsiStatus.GOOD
    assert lu.ua.pending(N1) == [Asc.MODE_PARAMETERS_CHANGED]
