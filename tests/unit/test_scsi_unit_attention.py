"""Unit attention: establishment per I_T nexus, priority, report-and-clear, exemptions, I_T nexus loss."""

# --- shared test scaffolding (copied into each test_scsi_* file: test modules cannot import each other) ---
import asyncio

from target.backstore.base import Backstore
from target.config.model import StorageObjectConfig
from target.scsi.command import LunAccess, Nexus, ScsiRequest, ScsiResult, ScsiStatus, TaskAttr
from target.scsi.device import LogicalUnit, LuRegistry
from target.scsi.dispatch import Dispatcher
from target.scsi.sense import Asc, parse_sense
from target.scsi.unit_attention import UnitAttentionQueue

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
