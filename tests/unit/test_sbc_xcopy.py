"""EXTENDED COPY (LID1) between two LUs found by NAA designator, and RECEIVE COPY RESULTS."""

from __future__ import annotations

import asyncio

from target.backstore.ramdisk import RamdiskBackstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit, LuRegistry
from target.scsi.opcodes import OpcodeTable
from target.scsi.sbc import SBC_COMMANDS
from target.scsi.sbc.xcopy import MAX_CSCD_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS
from target.scsi.sense import Asc, SenseKey, parse_sense

NEXUS = Nexus("iqn.1994-05.com.example:init", 1, "iqn.2003-01.org.example:tgt", 1)
BS = 512
BLOCKS = 8192
TABLE = OpcodeTable(SBC_COMMANDS)


def make_registry() -> tuple[LuRegistry, LogicalUnit, LogicalUnit]:
    reg = LuRegistry()
    lus = []
    for name, wwn in (
        ("src", "6001405aaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("dst", "6001405bbbbbbbbbbbbbbbbbbbbbbbbb"),
    ):
        cfg = StorageObjectConfig(plugin="ramdisk", name=name, size=BLOCKS * BS, wwn=wwn)
        lu = LogicalUnit(RamdiskBackstore(BLOCKS * BS, name=name), cfg, table=TABLE)
        reg.add(lu)
        lus.append(lu)
    return reg, lus[0], lus[1]


def run(lu: LogicalUnit, cdb: bytes, data: bytes = b"", reg: LuRegistry | None = None) -> ScsiResult:
    req = ScsiRequest(nexus=NEXUS, lun=0, cdb=cdb, tag=1, data_out=data, expected_out_length=len(data))
    return asyncio.run(lu.execute(req, registry=reg))


def cscd(lu: LogicalUnit, device_type: int = 0, type_code: int = 0xE4) -> bytes:
    """Identification CSCD descriptor (E4h) naming the LU by its NAA designator."""
    naa = lu.naa
    designation = bytes((0x01, 0x03, 0x00, len(naa))) + naa  # binary, LU association, NAA
    return bytes((type_code, device_type, 0, 0)) + designation + bytes(4) + bytes((0, 0, 0x02, 0x00))


def b2b(src: int, dst: int, nblocks: int, src_lba: int, dst_lba: int, type_code: int = 0x02) -> bytes:
    return (
        bytes((type_code, 0x00, 0x00, 0x18))
        + src.to_bytes(2, "big")
        + dst.to_bytes(2, "big")
        + bytes(2)
        + nblocks.to_bytes(2, "big")
        + src_lba.to_bytes(8, "big")
        + dst_lba.to_bytes(8, "big")
    )


def param_list(cscds: list[bytes], segs: list[bytes], list_id: int = 1, usage: int = 0) -> bytes:
    c, s = b"".join(cscds), b"".join(segs)
    header = (
        bytes((list_id, usage << 3))
        + len(c).to_bytes(2, "big")
        + bytes(4)
        + len(s).to_bytes(4, "big")
        + bytes(4)
    )
    return header + c + s


def xcopy_cdb(length: int) -> bytes:
    return bytes.fromhex("8300 0000000000000000") + length.to_bytes(4, "big") + b"\x00\x00"


def rcr_cdb(sa: int, list_id: int = 0, alloc: int = 1024) -> bytes:
    return bytes((0x84, sa, list_id)) + bytes(7) + alloc.to_bytes(4, "big") + b"\x00\x00"


def write(lu: LogicalUnit, lba: int, data: bytes) -> None:
    cdb = b"\x2a\x00" + lba.to_bytes(4, "big") + b"\x00" + (len(data) // BS).to_bytes(2, "big") + b"\x00"
    assert run(lu, cdb, data).status == ScsiStatus.GOOD


def read(lu: LogicalUnit, lba: int, n: int) -> bytes:
    r = run(lu, b"\x28\x00" + lba.to_bytes(4, "big") + b"\x00" + n.to_bytes(2, "big") + b"\x00")
    return bytes(r.data_in)


def sense(r: ScsiResult) -> tuple[SenseKey, int]:
    assert r.status == ScsiStatus.CHECK_CONDITION
    return parse_sense(r.sense)


def test_copy_between_two_lus_and_copy_status() -> None:
    reg, src, dst = make_registry()
    pattern = bytes(range(256)) * (2 * 3000)  # 3000 blocks
    write(src, 100, pattern)
    params = param_list([cscd(src), cscd(dst)], [b2b(0, 1, 3000, 100, 5000)], list_id=7)
    r = run(src, xcopy_cdb(len(params)), params, reg)
    assert r.status == ScsiStatus.GOOD
    assert read(dst, 5000, 3000) == pattern
    assert read(dst, 4999, 1) == bytes(BS)
    # COPY STATUS of list 7: completed, 1 segment, 3000 blocks in bytes
    data = bytes(run(src, rcr_cdb(0x00, 7), reg=reg).data_in)
    assert data == bytes.fromhex("00000008 01 0001 00") + (3000 * BS).to_bytes(4, "big")
    # an unknown list identifier
    assert sense(run(src, rcr_cdb(0x00, 8), reg=reg))[1] == Asc.INVALID_FIELD_IN_CDB


def test_copy_within_one_lu_without_registry() -> None:
    _, src, _ = make_registry()
    write(src, 0, b"\x3c" * (16 * BS))
    params = param_list([cscd(src)], [b2b(0, 0, 16, 0, 2048)], usage=0b11, list_id=0)
    assert run(src, xcopy_cdb(len(params)), params).status == ScsiStatus.GOOD
    assert read(src, 2048, 16) == b"\x3c" * (16 * BS)


def test_operating_parameters() -> None:
    _, src, _ = make_registry()
    data = bytes(run(src, rcr_cdb(0x03)).data_in)
    assert int.from_bytes(data[0:4], "big") == len(data) - 4 == 42
    assert data[4] & 0x01  # SNLID
    assert int.from_bytes(data[8:10], "big") == MAX_CSCD_DESCRIPTORS
    assert int.from_bytes(data[10:12], "big") == MAX_SEGMENT_DESCRIPTORS
    assert data[43] == 2 and data[44:46] == b"\x02\xe4"
    # allocation length truncates
    assert len(run(src, rcr_cdb(0x03, alloc=10)).data_in) == 10


def test_parameter_list_errors() -> None:
    reg, src, _dst = make_registry()
    good = param_list([cscd(src)], [b2b(0, 0, 8, 0, 100)])
    # length 0: nothing to do
    assert run(src, xcopy_cdb(0), b"", reg).status == ScsiStatus.GOOD
    # truncating the CSCD / the segment descriptor
    for cut in (16 + 31, len(good) - 1):
        r = run(src, xcopy_cdb(cut), good[:cut], reg)
        assert sense(r) == (SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR)
    # too many CSCDs / segments
    p = param_list([cscd(src)] * (MAX_CSCD_DESCRIPTORS + 1), [b2b(0, 0, 1, 0, 1)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[1] == Asc.TOO_MANY_TARGET_DESCRIPTORS
    p = param_list([cscd(src)], [b2b(0, 0, 1, 0, 1)] * (MAX_SEGMENT_DESCRIPTORS + 1))
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[1] == Asc.TOO_MANY_SEGMENT_DESCRIPTORS
    # descriptor lists beyond MAXIMUM DESCRIPTOR LIST LENGTH
    p = param_list([cscd(src)] * (MAX_CSCD_DESCRIPTORS + 1), [b2b(0, 0, 1, 0, 1)] * 40)
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[1] == Asc.PARAMETER_LIST_LENGTH_ERROR
    # unsupported descriptor types
    p = param_list([cscd(src, type_code=0xE0)], [b2b(0, 0, 1, 0, 1)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[1] == Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE
    p = param_list([cscd(src)], [b2b(0, 0, 1, 0, 1, type_code=0x00)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[1] == Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE


def test_copy_aborted_cases_change_nothing() -> None:
    reg, src, dst = make_registry()
    write(dst, BLOCKS - 1, b"\x99" * BS)
    # destination CSCD index that does not exist
    p = param_list([cscd(src)], [b2b(0, 1, 8, 0, 0)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg)) == (SenseKey.COPY_ABORTED, Asc.UNREACHABLE_COPY_TARGET)
    # beyond the destination's capacity
    p = param_list([cscd(src), cscd(dst)], [b2b(0, 1, 2048, 0, BLOCKS - 1)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[0] == SenseKey.COPY_ABORTED
    assert read(dst, BLOCKS - 1, 1) == b"\x99" * BS
    # a designator nobody has
    other = StorageObjectConfig(
        plugin="ramdisk", name="x", size=BLOCKS * BS, wwn="6001405ccccccccccccccccccccccccc"
    )
    stranger = LogicalUnit(RamdiskBackstore(BLOCKS * BS), other, table=TABLE)
    p = param_list([cscd(src), cscd(stranger)], [b2b(0, 1, 1, 0, 0)])
    r = run(src, xcopy_cdb(len(p)), p, reg)
    assert sense(r) == (SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)
    # a non-block device type
    p = param_list([cscd(src, device_type=1)], [b2b(0, 0, 1, 0, 1)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[0] == SenseKey.COPY_ABORTED


def test_read_only_destination() -> None:
    reg = LuRegistry()
    src_cfg = StorageObjectConfig(plugin="ramdisk", name="s", size=BLOCKS * BS, wwn="6001405111111111")
    dst_cfg = StorageObjectConfig(
        plugin="ramdisk", name="d", size=BLOCKS * BS, wwn="6001405222222222", readonly=True
    )
    src = LogicalUnit(RamdiskBackstore(BLOCKS * BS), src_cfg, table=TABLE)
    dst = LogicalUnit(RamdiskBackstore(BLOCKS * BS, read_only=True), dst_cfg, table=TABLE)
    reg.add(src)
    reg.add(dst)
    p = param_list([cscd(src), cscd(dst)], [b2b(0, 1, 1, 0, 0)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg)) == (SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)


def test_disabled_by_emulate_3pc() -> None:
    reg, src, _ = make_registry()
    src.set_attribute("emulate_3pc", 0)
    p = param_list([cscd(src)], [b2b(0, 0, 1, 0, 1)])
    assert sense(run(src, xcopy_cdb(len(p)), p, reg))[1] == Asc.INVALID_FIELD_IN_CDB
