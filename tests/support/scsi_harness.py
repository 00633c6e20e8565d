"""Shared scaffolding for the SCSI-core unit tests (tests/unit/test_scsi_*.py): an in-memory backstore, a
logical unit and a dispatcher built around it, and helpers to send a CDB and read the sense back."""

import asyncio

from target.backstore.base import Backstore
from target.config.model import StorageObjectConfig
from target.scsi.command import LunAccess, Nexus, ScsiRequest, ScsiResult, ScsiStatus, TaskAttr
from target.scsi.device import LogicalUnit, LuRegistry
from target.scsi.dispatch import Dispatcher
from target.scsi.opcodes import CommandSpec, OpcodeTable, usage
from target.scsi.sense import parse_sense
from target.scsi.spc import SPC_COMMANDS

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


class BlockingHarness:
    """An LU with a vendor command (C0h, id in byte 1) whose handler blocks until its gate is released, for
    task set ordering, task management and ACA tests. Nexuses N1 and N2 are known to it."""

    def __init__(self, table=None, max_tasks=512):
        self.started: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}
        spec = CommandSpec(0xC0, "BLOCKER", 6, usage(0xC0, 0xFF, 0, 0, 0, 0), self._handler)
        if table is None:
            table = OpcodeTable([*SPC_COMMANDS, spec])
        cfg = StorageObjectConfig(plugin="fileio", name="d", wwn="abc")
        self.lu = LogicalUnit(MemBackstore(), cfg, table=table, max_tasks=max_tasks)
        reg = LuRegistry()
        reg.add(self.lu)
        self.disp = Dispatcher(reg)
        self.map = {0: LunAccess(self.lu)}
        self.disp.nexus_created(N1)
        self.disp.nexus_created(N2)
        self._tag = 100

    async def _handler(self, ctx):
        ident = ctx.cdb[1]
        self.started.append(ident)
        await self.gate(ident).wait()
        return ctx.good()

    def gate(self, ident):
        return self.gates.setdefault(ident, asyncio.Event())

    def submit(self, ident, attr=TaskAttr.SIMPLE, nexus=N1):
        """Start blocking command `ident` (also its tag) as a task; returns the future of its result."""
        req = ScsiRequest(nexus, 0, bytes((0xC0, ident, 0, 0, 0, 0)), tag=ident, attr=attr, lun_map=self.map)
        return asyncio.ensure_future(self.disp.execute(req))

    async def cmd(self, raw, *, nexus=N1, attr=TaskAttr.SIMPLE, data_out=b""):
        """Run one CDB to completion (tags from 101 up)."""
        self._tag += 1
        req = ScsiRequest(nexus, 0, raw, tag=self._tag, attr=attr, data_out=data_out, lun_map=self.map)
        return await self.disp.execute(req)


async def settle():
    """Let every ready task run a few steps."""
    for _ in range(5):
        await asyncio.sleep(0)
