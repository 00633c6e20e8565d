"""Shared scaffolding for the SCSI-core unit tests (tests/unit/test_scsi_*.py): an in-memory backstore, a
logical unit and a dispatcher built around it, and helpers to send a CDB and read the sense back."""

import asyncio

from target.backstore.base import Backstore
from target.config.model import StorageObjectConfig
from target.scsi.command import LunAccess, Nexus, ScsiRequest, ScsiResult, ScsiStatus, TaskAttr
from target.scsi.device import LogicalUnit, LuRegistry
from target.scsi.dispatch import Dispatcher
from target.scsi.sense import parse_sense

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
