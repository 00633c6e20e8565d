"""MODE SENSE / MODE SELECT: page bytes, PC values, block descriptors, round trips, bad parameter lists with
field pointers, and the MODE PARAMETERS CHANGED unit attention."""

from scsi_harness import N1, N2, cdb, make_dispatcher, make_lu, send, sense_of

from target.scsi.command import ScsiStatus

CACHING = bytes.fromhex("0812040000000000000000002000000000000000")
CONTROL = bytes.fromhex("0a0a001000400000ffff0000")


def _sense6(page, pc=0, dbd=True, alloc=0xFF, subpage=0):
    return cdb(0x1A, 0x08 if dbd else 0, (pc << 6) | page, subpage, alloc, 0)


def _select6(params, pf=True, sp=False):
    return cdb(0x15, (0x10 if pf else 0) | (1 if sp else 0), 0, 0, len(params), 0)


def _select10(params):
    return cdb(0x55, 0x10, 0, 0, 0, 0, 0, *len(params).to_bytes(2, "big"), 0)


def _setup():
    lu = make_lu()
    d, m = make_dispatcher(lu)
    d.nexus_created(N1)
    d.nexus_created(N2)
    return lu, d, m


def test_mode_sense6_caching_and_control_pages():
    _lu, d, m = _setup()
    assert bytes(send(d, m, _sense6(0x08)).data_in) == bytes.fromhex("17001000") + CACHING
    assert bytes(send(d, m, _sense6(0x0A)).data_in) == bytes.fromhex("0f001000") + CONTROL


def test_mode_sense6_block_descriptor_and_all_pages():
    _lu, d, m = _setup()
    data = bytes(send(d, m, _sense6(0x3F, dbd=False)).data_in)
    assert data[:12] == bytes.fromhex("430010080000080000000200")
    assert data[12:14] == b"\x01\x0a" and len(data) == 68


def test_mode_sense10_long_lba_descriptor():
    _lu, d, m = _setup()
    data = bytes(send(d, m, cdb(0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 0xFF, 0)).data_in)
    assert data[:8] == bytes.fromhex("002a001001000010")
    assert data[8:24] == bytes.fromhex("00000000000008000000000000000200")
    assert data[24:] == CACHING


def test_mode_sense_changeable_and_saved():
    _lu, d, m = _setup()
    assert bytes(send(d, m, _sense6(0x0A, pc=1)).data_in)[4:] == bytes.fromhex("0a0a04060040000000000000")
    assert sense_of(send(d, m, _sense6(0x0A, pc=3))) == (5, 0x3900)


def test_mode_sense_invalid_page_and_subpage():
    _lu, d, m = _setup()
    assert send(d, m, _sense6(0x19)).sense == bytes.fromhex("700005000000000a00000000240000cd0002")
    assert send(d, m, _sense6(0x08, subpage=1)).sense[15:18] == bytes.fromhex("c00003")
    assert send(d, m, _sense6(0x19, subpage=0xFF)).sense[15:18] == bytes.fromhex("cd0002")
    assert send(d, m, _sense6(0x3F, subpage=0x01)).sense[15:18] == bytes.fromhex("c00003")


CONTROL_EXTENSION = bytes.fromhex("4a01001c") + bytes(28)


def test_mode_sense_control_extension_subpage():
    _lu, d, m = _setup()
    data = bytes(send(d, m, _sense6(0x0A, subpage=0x01)).data_in)
    assert data == bytes.fromhex("23001000") + CONTROL_EXTENSION
    # changeable values: nothing, header kept
    assert bytes(send(d, m, _sense6(0x0A, pc=1, subpage=0x01)).data_in)[4:] == CONTROL_EXTENSION
    # page 0Ah with subpage FFh: the control page and then its subpages
    data = bytes(send(d, m, _sense6(0x0A, subpage=0xFF)).data_in)
    assert data[4:] == CONTROL + CONTROL_EXTENSION
    # a page without subpages with FFh: just the page
    assert bytes(send(d, m, _sense6(0x08, subpage=0xFF)).data_in)[4:] == CACHING


def test_mode_sense_all_pages_with_and_without_subpages():
    _lu, d, m = _setup()
    plain = bytes(send(d, m, _sense6(0x3F)).data_in)[4:]
    every = bytes(send(d, m, _sense6(0x3F, subpage=0xFF)).data_in)[4:]
    assert CONTROL_EXTENSION not in plain
    i = every.index(CONTROL)
    assert every[i + len(CONTROL) : i + len(CONTROL) + 32] == CONTROL_EXTENSION  # ascending (page, subpage)
    assert len(every) == len(plain) + 32
    # MODE SENSE(10) walks the same table
    data = bytes(send(d, m, cdb(0x5A, 0x08, 0x3F, 0xFF, 0, 0, 0, 0x01, 0x00, 0)).data_in)
    assert data[8:] == every and int.from_bytes(data[:2], "big") == len(data) - 2


def test_mode_select_control_extension_round_trips():
    lu, d, m = _setup()
    params = bytes(4) + CONTROL_EXTENSION + CONTROL
    assert send(d, m, _select6(params), data_out=params).status == ScsiStatus.GOOD
    assert not lu.ua.has_pending(N2)  # nothing changed


def test_write_protected_lun_sets_wp_bit():
    lu = make_lu()
    d, m = make_dispatcher(lu, read_only=True)
    assert bytes(send(d, m, _sense6(0x08)).data_in)[2] == 0x90


def test_mode_select_round_trip_wce_dsense_tas_and_ua_for_others():
    lu, d, m = _setup()
    caching = bytearray(CACHING)
    caching[2] = 0x00  # WCE off
    control = bytearray(CONTROL)
    control[2] = 0x04  # D_SENSE
    control[3] = 0x12  # QErr 01b
    control[5] = 0x00  # TAS off
    params = bytes(4) + bytes(caching) + bytes(control)
    r = send(d, m, _select6(params), data_out=params)
    assert r.status == ScsiStatus.GOOD
    assert lu.write_cache_enabled is False and lu.d_sense and lu.qerr == 1 and lu.tas is False
    assert bytes(send(d, m, _sense6(0x08)).data_in)[4:] == bytes(caching)
    assert bytes(send(d, m, _sense6(0x0A)).data_in)[4:] == bytes(control)
    assert not lu.ua.has_pending(N1)
    # the other nexus: UA, in descriptor format now that D_SENSE is set
    r = send(d, m, cdb(0x00, 0, 0, 0, 0, 0), nexus=N2)
    assert r.sense == bytes.fromhex("72062a0100000000")
    # default values are unchanged
    assert bytes(send(d, m, _sense6(0x08, pc=2)).data_in)[4:] == CACHING


def test_mode_select10_with_block_descriptor():
    _lu, d, m = _setup()
    params = bytes.fromhex("0000000000000008") + bytes.fromhex("0000080000000200") + CACHING
    assert send(d, m, _select10(params), data_out=params).status == ScsiStatus.GOOD


def test_unchanged_select_gives_no_ua():
    lu, d, m = _setup()
    params = bytes(4) + CONTROL
    assert send(d, m, _select6(params), data_out=params).status == ScsiStatus.GOOD
    assert not lu.ua.has_pending(N2)


def _fp(result):
    s = result.sense
    return (s[2], (s[12] << 8) | s[13], s[15], int.from_bytes(s[16:18], "big"))


def test_mode_select_bad_parameter_lists_have_field_pointers():
    lu, d, m = _setup()
    cases = [
        # (parameter list, expected (key, asc, sks byte0, field))
        (bytes(4) + bytes.fromhex("0812") + bytes(18), (5, 0x2600, 0x8D, 16)),  # DRA cleared: not changeable
        (bytes(4) + bytes.fromhex("0a0a00100041") + bytes(6), (5, 0x2600, 0x88, 9)),  # byte 5 bit 0 changed
        (bytes(4) + bytes.fromhex("0a0a001400400000ffff0000"), (5, 0x2600, 0x8A, 7)),  # QErr 10b reserved
        (bytes(4) + bytes.fromhex("190a") + bytes(10), (5, 0x2600, 0x8D, 4)),  # unknown page
        (bytes(4) + bytes.fromhex("0a0b") + bytes(11), (5, 0x2600, 0x80, 5)),  # wrong page length
        (bytes(4) + bytes.fromhex("4a0a") + bytes(10), (5, 0x2600, 0x80, 5)),  # control has no subpage 0Ah
        (bytes(4) + bytes.fromhex("4a00000a") + bytes(10), (5, 0x2600, 0x8E, 4)),  # SPF=1 with subpage 0
        (bytes(4) + bytes.fromhex("59010000"), (5, 0x2600, 0x8D, 4)),  # unknown page in sub_page format
        (bytes(4) + bytes.fromhex("4a01001b") + bytes(27), (5, 0x2600, 0x80, 6)),  # wrong subpage length
        (bytes(4) + bytes.fromhex("4a01001c04") + bytes(27), (5, 0x2600, 0x8A, 8)),  # TCMOS not changeable
        (bytes.fromhex("00050000") + CONTROL, (5, 0x2600, 0x80, 1)),  # medium type
        (bytes.fromhex("00000004") + bytes(4), (5, 0x2600, 0x80, 3)),  # block descriptor length
        (bytes.fromhex("00000008") + bytes.fromhex("0000000000000400"), (5, 0x2600, 0x80, 9)),  # block size
    ]
    for params, want in cases:
        r = send(d, m, _select6(params), data_out=params)
        assert _fp(r) == want, params.hex()
    # truncated page
    params = bytes(4) + CONTROL[:8]
    assert sense_of(send(d, m, _select6(params), data_out=params)) == (5, 0x1A00)
    # less data than the CDB announces
    assert sense_of(send(d, m, _select6(bytes(16)), data_out=bytes(4))) == (5, 0x1A00)
    assert lu.write_cache_enabled and not lu.ua.has_pending(N2)


def test_mode_select_pf_and_sp_bits():
    _lu, d, m = _setup()
    params = bytes(4) + CONTROL
    assert send(d, m, _select6(params, pf=False), data_out=params).sense[15:18] == bytes.fromhex("cc0001")
    assert send(d, m, _select6(params, sp=True), data_out=params).sense[15:18] == bytes.fromhex("c80001")
    assert send(d, m, cdb(0x15, 0x10, 0, 0, 0, 0)).status == ScsiStatus.GOOD  # empty list: no-op


def test_d_sense_switches_sense_format():
    lu, d, m = _setup()
    assert send(d, m, cdb(0xC7, 0, 0, 0, 0, 0)).sense[0] == 0x70
    lu.d_sense = True
    assert send(d, m, cdb(0xC7, 0, 0, 0, 0, 0)).sense == bytes.fromhex("7205200000000000")
