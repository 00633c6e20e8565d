"""INQUIRY: standard data and every VPD page, as byte literals; CDB validation with field pointers."""

from scsi_harness import MemBackstore, cdb, make_dispatcher, make_lu, send, sense_of

from target.config.model import StorageObjectConfig
from target.scsi.command import ScsiStatus
from target.scsi.device import LogicalUnit

SERIAL = "5ec6a7f0-3a24-4a4e-9c7f-1234567890ab"
NAA = bytes.fromhex("60014055ec6a7f03a244a4e9c7f12345")


def _inq(evpd, page, alloc=0xFF, lu=None):
    lu = lu or make_lu()
    d, m = make_dispatcher(lu)
    return send(d, m, cdb(0x12, evpd, page, alloc >> 8, alloc & 0xFF, 0))


def test_standard_inquiry_bytes():
    r = _inq(0, 0)
    assert r.status == ScsiStatus.GOOD
    data = bytes(r.data_in)
    assert len(data) == 96
    # disk, SPC-4, NORMACA+HISUP+RDF 2, len 91, 3PC, CMDQUE
    assert data[:8] == bytes.fromhex("000006325b080002")
    assert data[8:36] == b"SANLAB  FILEIO          0001"
    assert data[58:66] == bytes.fromhex("00a00960046004c0")  # SAM-5, iSCSI, SPC-4, SBC-3
    assert data[36:58] == bytes(22) and data[66:] == bytes(30)


def test_standard_inquiry_truncated_to_allocation_length():
    r = _inq(0, 0, alloc=5)
    assert bytes(r.data_in) == bytes.fromhex("000006325b")


def test_page_code_without_evpd_is_invalid_field_at_byte_2():
    r = _inq(0, 0x80)
    assert r.sense == bytes.fromhex("700005000000000a00000000240000c00002")


def test_cmddt_bit_is_rejected_with_bit_pointer():
    r = _inq(2, 0)
    assert r.sense == bytes.fromhex("700005000000000a00000000240000c90001")


def test_unknown_vpd_page():
    assert sense_of(_inq(1, 0xC7)) == (5, 0x2400)


def test_vpd_00_supported_pages():
    assert bytes(_inq(1, 0x00).data_in) == bytes.fromhex("00000008008083868fb0b1b2")


def test_vpd_00_without_3pc_omits_8f_and_8f_is_refused():
    lu = make_lu(attributes={"emulate_3pc": 0})
    assert bytes(_inq(1, 0x00, lu=lu).data_in) == bytes.fromhex("0000000700808386b0b1b2")
    assert sense_of(_inq(1, 0x8F, lu=make_lu(attributes={"emulate_3pc": 0}))) == (5, 0x2400)
    std = bytes(_inq(0, 0, lu=make_lu(attributes={"emulate_3pc": 0})).data_in)
    assert not std[5] & 0x08  # no 3PC bit


def test_vpd_8f_third_party_copy():
    data = bytes(_inq(1, 0x8F).data_in)
    assert data[:4] == bytes.fromhex("008f0060")
    descs = {}
    off = 4
    while off < len(data):
        kind = int.from_bytes(data[off : off + 2], "big")
        n = int.from_bytes(data[off + 2 : off + 4], "big")
        assert (4 + n) % 4 == 0  # every descriptor padded to a multiple of 4 (SPC-4 7.8.17.1)
        descs[kind] = data[off + 4 : off + 4 + n]
        off += 4 + n
    assert off == len(data)
    assert sorted(descs) == [0x0001, 0x0004, 0x0008, 0x000C, 0x8001]
    # supported commands: EXTENDED COPY(LID1); RECEIVE COPY RESULTS: COPY STATUS, OPERATING PARAMETERS
    assert descs[0x0001] == bytes.fromhex("0783010084020003")
    # parameter data: 8 CSCD descriptors, 16 segment descriptors, 1024-byte lists, no inline data
    assert descs[0x0004] == bytes(4) + bytes.fromhex("000800100000040000000000") + bytes(12)
    # supported descriptors: block -> block (02h), identification CSCD (E4h)
    assert descs[0x0008] == bytes.fromhex("0202e400")
    assert descs[0x000C] == bytes(4)  # no CSCD descriptor IDs above 07FFh
    gco = descs[0x8001]
    assert len(gco) == 32
    assert gco[:12] == bytes.fromhex("000000010000000110000000")  # 1 copy at a time, 256 MiB segments
    assert gco[12:14] == b"\x09\x09"


def test_vpd_8f_agrees_with_operating_parameters():
    from target.scsi.sbc import xcopy

    op = xcopy.operating_parameters()
    data = bytes(_inq(1, 0x8F).data_in)
    param = data[4 + 12 : 4 + 12 + 32]
    assert param[:2] == b"\x00\x04"
    assert param[8:10] == op[8:10] and param[10:12] == op[10:12] and param[12:16] == op[12:16]


def test_vpd_80_unit_serial():
    data = bytes(_inq(1, 0x80).data_in)
    assert data[:4] == bytes.fromhex("00800024") and data[4:] == SERIAL.encode()


def test_naa_designator_matches_lio_derivation():
    from target.scsi.device import naa_designator

    assert naa_designator(SERIAL) == NAA
    assert naa_designator("") == bytes.fromhex("60014050") + bytes(12)


def test_vpd_83_device_identification():
    data = bytes(_inq(1, 0x83).data_in)
    assert data[:4] == bytes.fromhex("008300a4")
    off = 4
    descs = []
    while off < len(data):
        n = data[off + 3]
        descs.append(data[off : off + 4 + n])
        off += 4 + n
    assert off == len(data)
    assert descs[0] == bytes.fromhex("01030010") + NAA
    assert descs[1] == bytes.fromhex("0201002c") + b"SANLAB  " + SERIAL.encode()
    assert descs[2] == bytes.fromhex("5194000400000001")  # relative target port 1, iSCSI, PIV
    assert descs[3] == bytes.fromhex("5195000400000000")  # target port group 0
    assert descs[4] == bytes.fromhex("0106000400000000")  # logical unit group 0
    assert descs[5] == bytes.fromhex("53980024") + b"iqn.2003-01.org.example:t1,t,0x0001" + b"\x00"
    assert descs[6] == bytes.fromhex("53a8001c") + b"iqn.2003-01.org.example:t1" + b"\x00\x00"


def test_vpd_86_extended():
    data = bytes(_inq(1, 0x86).data_in)
    assert data[:9] == bytes.fromhex("0086003c0007010010")  # HEADSUP ORDSUP SIMPSUP, V_SUP, LUICLR
    assert len(data) == 64 and data[9:] == bytes(55)


def test_vpd_b0_block_limits_agrees_with_attributes():
    lu = make_lu(thin=True)
    data = bytes(_inq(1, 0xB0, lu=lu).data_in)
    assert data[:4] == bytes.fromhex("00b0003c") and len(data) == 64
    assert int.from_bytes(data[8:12], "big") == lu.attrs.hw_max_sectors == 16384
    assert int.from_bytes(data[12:16], "big") == lu.attrs.optimal_sectors == 8192
    assert int.from_bytes(data[20:24], "big") == lu.attrs.max_unmap_lba_count
    assert int.from_bytes(data[24:28], "big") == lu.attrs.max_unmap_block_desc_count
    assert int.from_bytes(data[36:44], "big") == lu.attrs.max_write_same_len


def test_vpd_b0_no_unmap_limits_when_thick():
    data = bytes(_inq(1, 0xB0).data_in)
    assert data[20:28] == bytes(8)


def test_vpd_b1_rotation_rate():
    assert bytes(_inq(1, 0xB1).data_in)[:6] == bytes.fromhex("00b1003c0000")
    ram = LogicalUnit(MemBackstore(), StorageObjectConfig(plugin="ramdisk", name="r0"))
    assert bytes(_inq(1, 0xB1, lu=ram).data_in)[4:6] == b"\x00\x01"  # non-rotating


def test_vpd_b2_logical_block_provisioning():
    # LBPU, LBPWS, LBPWS10; LBPRZ clear by default (unmap_zeroes_data=0, as LIO)
    assert bytes(_inq(1, 0xB2, lu=make_lu(thin=True)).data_in) == bytes.fromhex("00b2000400e00200")
    assert bytes(_inq(1, 0xB2).data_in) == bytes.fromhex("00b2000400000000")


def test_inquiry_on_unmapped_lun():
    d, m = make_dispatcher(make_lu())
    r = send(d, m, cdb(0x12, 0, 0, 0, 0xFF, 0), lun=7)
    assert r.status == ScsiStatus.GOOD
    assert bytes(r.data_in)[:5] == bytes.fromhex("7f0006121f") and len(r.data_in) == 36
    assert sense_of(send(d, m, cdb(0x00, 0, 0, 0, 0, 0), lun=7)) == (5, 0x2500)


def test_serial_derived_from_name_is_stable():
    a = make_lu(name="x", wwn="")
    b = make_lu(name="x", wwn="")
    assert a.serial == b.serial and a.naa == b.naa and a.serial != make_lu(name="y", wwn="").serial
