"""The reservation conflict gate for every reservation type x (holder, registered, unregistered) I_T nexus,
with READ(10), WRITE(10), TEST UNIT READY and MODE SENSE(6) (SPC-4 5.13.1 table 62, SBC-3 4.17.1 table 13),
through LogicalUnit.execute, plus the PrClass table itself."""

import asyncio
import itertools

import pytest

from target.backstore.base import Backstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.gates import PrClass, PrType

T = "iqn.2003-01.org.example:t1"
HOLDER = Nexus("iqn.2000-01.test:holder", 1, T, 1)
REG = Nexus("iqn.2000-01.test:registered", 2, T, 1)
OTHER = Nexus("iqn.2000-01.test:other", 3, T, 1)
_tags = itertools.count(1)

READ10 = bytes((0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0))
WRITE10 = bytes((0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0))
TUR = bytes(6)
MODE_SENSE6 = bytes((0x1A, 0, 0x3F, 0, 0xFF, 0))


class MemBackstore(Backstore):
    def __init__(self) -> None:
        self.size = 1 << 20
        self.block_size = 512
        self.can_unmap = False
        self.unmap_zeroes = False
        self.write_back = True
        self.buf = bytearray(self.size)

    async def read(self, offset, length):
        return bytes(self.buf[offset : offset + length])

    async def write(self, offset, data, fua=False):
        self.buf[offset : offset + len(data)] = data

    async def flush(self):
        return None


def run(lu, nexus, cdb, data=b""):
    req = ScsiRequest(nexus=nexus, lun=0, cdb=cdb, tag=next(_tags), data_out=data, expected_in_length=4096)
    return asyncio.run(lu.execute(req))


def prout(lu, nexus, sa, key, sa_key=0, pr_type=0):
    data = key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(8)
    return run(lu, nexus, bytes((0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0)), data)


def reserved_lu(pr_type: PrType) -> LogicalUnit:
    lu = LogicalUnit(MemBackstore(), StorageObjectConfig(plugin="fileio", name="d", wwn="abc"))
    assert prout(lu, HOLDER, 0x06, 0, 0xA).status is ScsiStatus.GOOD
    assert prout(lu, REG, 0x06, 0, 0xB).status is ScsiStatus.GOOD
    assert prout(lu, HOLDER, 0x01, 0xA, pr_type=pr_type).status is ScsiStatus.GOOD
    return lu


# (read allowed, write allowed) for a registered non-holder and for an unregistered nexus (SPC-4 table 62)
EXPECTED = {
    PrType.WRITE_EXCLUSIVE: ((True, False), (True, False)),
    PrType.EXCLUSIVE_ACCESS: ((False, False), (False, False)),
    PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: ((True, True), (True, False)),
    PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: ((True, True), (False, False)),
    PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: ((True, True), (True, False)),
    PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: ((True, True), (False, False)),
}


@pytest.mark.parametrize("pr_type", list(PrType))
def test_conflict_table(pr_type):
    lu = reserved_lu(pr_type)
    (reg_r, reg_w), (oth_r, oth_w) = EXPECTED[pr_type]
    cases = [(HOLDER, True, True), (REG, reg_r, reg_w), (OTHER, oth_r, oth_w)]
    for nexus, can_read, can_write in cases:
        r = run(lu, nexus, READ10)
        assert (r.status is ScsiStatus.GOOD) == can_read, (pr_type, nexus, "read")
        assert can_read or r.status is ScsiStatus.RESERVATION_CONFLICT
        w = run(lu, nexus, WRITE10, bytes(512))
        assert (w.status is ScsiStatus.GOOD) == can_write, (pr_type, nexus, "write")
        assert can_write or w.status is ScsiStatus.RESERVATION_CONFLICT
        # TEST UNIT READY and PERSISTENT RESERVE IN are allowed through every reservation
        assert run(lu, nexus, TUR).status is ScsiStatus.GOOD
        assert run(lu, nexus, bytes((0x5E, 0, 0, 0, 0, 0, 0, 0x10, 0, 0))).status is ScsiStatus.GOOD
        # MODE SENSE is in the write class (SPC-4 table 62: conflicts under Write Exclusive for non-holders)
        assert (run(lu, nexus, MODE_SENSE6).status is ScsiStatus.GOOD) == can_write


def test_prclass_rows():
    for t in PrType:
        assert PrClass.ALLOWED.allowed(t, holder=False, registered=False)
        assert PrClass.WRITE.allowed(t, holder=True, registered=True)
    assert not PrClass.READ.allowed(PrType.EXCLUSIVE_ACCESS, holder=False, registered=True)
    assert PrClass.READ.allowed(PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, holder=False, registered=True)
    assert not PrClass.WRITE.allowed(PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, holder=False, registered=False)


def test_no_reservation_no_conflict():
    lu = LogicalUnit(MemBackstore(), StorageObjectConfig(plugin="fileio", name="d", wwn="abc"))
    prout(lu, REG, 0x06, 0, 0xB)
    assert run(lu, OTHER, WRITE10, bytes(512)).status is ScsiStatus.GOOD
