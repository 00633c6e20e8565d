"""REPORT LUNS from the transport's LUN map (3000 LUNs, select report values, truncation), and the answers for
an unmapped LUN."""

# --- shared test scaffolding (copied into each test_scsi_* file: test modules cannot import each other) ---
import asyncio

from target.backstore.base import Backstore
from target.config.model import StorageObjectConfig
from target.scsi.command import LunAccess, Nexus, ScsiRequest, ScsiResult, ScsiStatus, TaskAttr
from target.scsi.device import LogicalUnit, LuRegistry
from target.scsi.dispatch import Dispatcher
from target.scsi.sense import Asc, parse_sense

N1 = Nexus("iqn.1994-05.com.redhat:a", 0x23D000000001, "iqn.2003-01.org.example:t1", 1)
N2 = Nexus("iqn.1994-05.com.redhat:b", 0x23D000000002, "iqn.2003-01.org.example:t1", 1)


class MemBackstore(Backstore):
    def __init__(self, size: int = 1 << 20, block_size: int = 512, *, thin: bool = False) -> None:
        self.size = size
        self.block_size = block_size
        self.can_unmap = thin
        self.unmap_zeroes = thin
        self.write_back = True
        self.buf = bytearray(size)

    async def read(self, offset, length):
        return bytes(self.buf[offset : offset + length])

    async def write(self, offset, data, fua=False):
        self.buf[offset : offset + len(data)] = data

    async def flush(self):
        return None


def make_lu(name="disk0", wwn="5ec6a7f0-3a24-4a4e-9c7f-1234567890ab", thin=False, **kw):
    cfg = StorageObjectConfig(plugin="fileio", name=name, wwn=wwn, **kw)
    return LogicalUnit(MemBackstore(thin=thin), cfg)


def make_dispatcher(*lus, read_only=False):
    reg = LuRegistry()
    for lu in lus:
        reg.add(lu)
    lun_map = {i: LunAccess(lu, read_only=read_only) for i, lu in enumerate(lus)}
    return Dispatcher(reg), lun_map


def cdb(*octets, length=None):
    raw = bytes(octets)
    return raw + bytes((length or 16) - len(raw)) if length else raw


def send(disp, lun_map, raw_cdb, *, nexus=N1, lun=0, data_out=b"", tag=1, attr=TaskAttr.SIMPLE) -> ScsiResult:
    req = ScsiRequest(
        nexus=nexus, lun=lun, cdb=raw_cdb, tag=tag, attr=attr, data_out=data_out, lun_map=lun_map
    )
    return asyncio.run(disp.execute(req))


def sense_of(result: ScsiResult):
    assert result.status == ScsiStatus.CHECK_CONDITION
    key, asc = parse_sense(result.sense)
    return int(key), asc


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
