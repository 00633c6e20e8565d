"""ALUA (SPC-4 5.15): target port groups per LU, REPORT/SET TARGET PORT GROUPS as byte vectors, the access-state
gate with its sense codes, unit attentions on transitions, transition and non-optimized delays, config reloads."""

import asyncio
from dataclasses import dataclass, field, replace

import pytest
from scsi_harness import MemBackstore

from target.config.model import (
    AluaGroupConfig,
    Config,
    LunConfig,
    StorageObjectConfig,
    TargetConfig,
    TpgConfig,
)
from target.scsi.alua import AluaError, attach_alua
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.gates import AluaState
from target.scsi.sense import Asc, SenseKey, parse_sense

TGT = "iqn.2026-11.org.example:alua"
NA = Nexus("iqn.1994-05.com.redhat:a", 0x23D000000001, TGT, 1, relative_port_id=1)
NB = Nexus("iqn.1994-05.com.redhat:a", 0x23D000000002, TGT, 2, relative_port_id=2)
NB2 = Nexus("iqn.1994-05.com.redhat:b", 0x23D000000003, TGT, 2, relative_port_id=2)


@dataclass
class Source:
    config: Config
    port_ids: dict = field(default_factory=lambda: {(TGT, 1): 1, (TGT, 2): 2})


def make_config(groups=None, lun_groups=("A", "B")) -> Config:
    so = StorageObjectConfig(
        plugin="fileio", name="disk0", wwn="5ec6a7f0-3a24", alua_groups=list(groups or [])
    )
    tpgs = [
        TpgConfig(tag=tag, luns=[LunConfig(index=0, storage_object="fileio/disk0", alua_tg_pt_gp=gname)])
        for tag, gname in zip((1, 2), lun_groups, strict=True)
    ]
    return Config(storage_objects=[so], targets=[TargetConfig(wwn=TGT, tpgs=tpgs)])


def two_groups(**kw) -> list[AluaGroupConfig]:
    return [
        AluaGroupConfig(name="A", id=0x11, state="active_optimized", preferred=True, nonop_delay_ms=0, **kw),
        AluaGroupConfig(name="B", id=0x22, state="standby", nonop_delay_ms=0, **kw),
    ]


def make_lu(cfg: Config | None = None) -> tuple[LogicalUnit, Source]:
    cfg = cfg or make_config(two_groups())
    lu = LogicalUnit(MemBackstore(), cfg.storage_objects[0])
    src = Source(cfg)
    attach_alua(lu, src)
    for n in (NA, NB, NB2):
        lu.nexus_created(n)
    return lu, src


async def run(
    lu: LogicalUnit, cdb: bytes, nexus: Nexus = NA, data_out: bytes = b"", tag: int = 1
) -> ScsiResult:
    return await lu.execute(ScsiRequest(nexus=nexus, lun=0, cdb=cdb, tag=tag, data_out=data_out))


def go(lu: LogicalUnit, cdb: bytes, nexus: Nexus = NA, data_out: bytes = b"") -> ScsiResult:
    return asyncio.run(run(lu, cdb, nexus, data_out))


def sense_of(res: ScsiResult) -> tuple[SenseKey, int]:
    assert res.status is ScsiStatus.CHECK_CONDITION
    return parse_sense(res.sense)


def field_pointer(res: ScsiResult) -> tuple[int, int, int | None]:
    """(C/D, field pointer, bit pointer or None) from fixed-format sense key specific bytes 15-17."""
    sks = res.sense[15:18]
    assert sks[0] & 0x80, "SKSV not set"
    return (sks[0] >> 6) & 1, int.from_bytes(sks[1:3], "big"), (sks[0] & 7) if sks[0] & 0x08 else None


def rtpg(fmt: int = 0, alloc: int = 0x1000) -> bytes:
    return bytes((0xA3, 0x0A | fmt << 5, 0, 0, 0, 0)) + alloc.to_bytes(4, "big") + b"\x00\x00"


def stpg(params: bytes, length: int | None = None) -> bytes:
    n = len(params) if length is None else length
    return bytes((0xA4, 0x0A, 0, 0, 0, 0)) + n.to_bytes(4, "big") + b"\x00\x00"


def clear_uas(lu: LogicalUnit) -> None:
    for n in (NA, NB, NB2):
        while lu.ua.take(n) is not None:
            pass


READ10 = bytes((0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0))
TUR = bytes(6)
INQUIRY = bytes((0x12, 0, 0, 0, 96, 0))
MODE_SENSE6 = bytes((0x1A, 0, 0x3F, 0, 0xFF, 0))
RSOC = bytes((0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0))


# ---------------------------------------------------------------------------------------------- RTPG


def test_rtpg_length_only_format_byte_vector():
    lu, _ = make_lu()
    res = go(lu, rtpg(0))
    assert res.status is ScsiStatus.GOOD
    assert bytes(res.data_in) == bytes.fromhex(
        "00000018"  # RETURN DATA LENGTH: two 12-byte descriptors
        "80cf0011 00000001 00000001"  # PREF, AO; T O U S AN AO supported; group 0x11; one port: RTPI 1
        "02cf0022 00000001 00000002"  # standby; group 0x22; RTPI 2
    )


def test_rtpg_extended_format_carries_the_implicit_transition_time():
    lu, _ = make_lu(make_config(two_groups(implicit_trans_secs=7)))
    res = go(lu, rtpg(1))
    data = bytes(res.data_in)
    assert data[:8] == bytes.fromhex("0000001c 10 07 0000")  # length, FORMAT TYPE 001b, 7 s
    assert data[8:12] == bytes.fromhex("80cf0011")
    assert len(data) == 4 + 0x1C


def test_rtpg_truncates_to_the_allocation_length_and_rejects_reserved_formats():
    lu, _ = make_lu()
    assert bytes(go(lu, rtpg(0, alloc=6)).data_in) == bytes.fromhex("00000018 80cf")
    for bad in (2, 7):
        res = go(lu, rtpg(bad))
        assert sense_of(res) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
        assert field_pointer(res) == (1, 1, 7)


def test_rtpg_is_processed_in_every_state():
    lu, _ = make_lu()
    for st in ("transitioning", "unavailable", "offline", "standby"):
        asyncio.run(lu.alua.set_state("A", st))
        clear_uas(lu)
        res = go(lu, rtpg(0))
        assert res.status is ScsiStatus.GOOD, st
        assert bytes(res.data_in)[4] & 0x0F == int(AluaState[st.upper()])


def test_no_configured_groups_means_one_group_per_tpg():
    lu, _ = make_lu(make_config(lun_groups=("default_tg_pt_gp", "default_tg_pt_gp")))
    data = bytes(go(lu, rtpg(0)).data_in)
    assert data == bytes.fromhex("00000018 00cf0001 00000001 00000001 00cf0002 00000001 00000002")
    assert lu.alua.group(f"{TGT}/2").id == 2


def test_lio_like_default_group_holds_every_port_without_a_group_of_its_own():
    groups = [AluaGroupConfig(name="default_tg_pt_gp", id=0, nonop_delay_ms=0)]
    lu, _ = make_lu(make_config(groups, lun_groups=("default_tg_pt_gp", "missing")))
    assert bytes(go(lu, rtpg(0)).data_in) == bytes.fromhex("00000010 00cf0000 00000002 00000001 00000002")


def test_members_list_overrides_the_lun_group_name():
    groups = two_groups()
    groups[1] = replace(groups[1], members=[f"{TGT}/1"])
    lu, _ = make_lu(make_config(groups))
    assert lu.alua.group_id(NA) == 0x22  # port 1's LUN names A, but B lists port 1
    assert lu.alua.group_id(NB) == 0x22
    assert bytes(go(lu, rtpg(0)).data_in) == bytes.fromhex("00000010 02cf0022 00000002 00000001 00000002")


# ---------------------------------------------------------------------------------------------- INQUIRY


@pytest.mark.parametrize(
    ("implicit", "explicit", "tpgs"), [(True, True, 3), (True, False, 1), (False, True, 2)]
)
def test_standard_inquiry_tpgs_bits_follow_the_access_type(implicit, explicit, tpgs):
    lu, _ = make_lu(make_config(two_groups(implicit=implicit, explicit=explicit)))
    data = bytes(go(lu, INQUIRY).data_in)
    assert data[5] & 0x30 == tpgs << 4


def test_alua_support_zero_means_no_alua():
    cfg = make_config(two_groups())
    cfg.storage_objects[0].attributes["alua_support"] = 0
    lu, _ = make_lu(cfg)
    assert lu.alua is None
    assert bytes(go(lu, INQUIRY).data_in)[5] & 0x30 == 0
    assert sense_of(go(lu, rtpg(0))) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)


def _designators(page: bytes) -> dict[int, bytes]:
    out, off = {}, 4
    while off < len(page):
        kind, n = page[off + 1] & 0x0F, page[off + 3]
        if page[off + 1] & 0x30 == 0x10:  # association: target port
            out[kind] = page[off + 4 : off + 4 + n]
        off += 4 + n
    return out


def test_vpd83_relative_port_and_group_designators_match_rtpg():
    lu, _ = make_lu()
    for nexus, rtpi, gid in ((NA, 1, 0x11), (NB, 2, 0x22)):
        res = go(lu, bytes((0x12, 1, 0x83, 0x01, 0, 0)), nexus)
        d = _designators(bytes(res.data_in))
        assert d[0x4] == rtpi.to_bytes(4, "big")
        assert d[0x5] == gid.to_bytes(4, "big")


# ---------------------------------------------------------------------------------------------- the gate


def test_state_gate_sense_codes():
    lu, _ = make_lu()
    # standby (group B, port 2): media access refused, MODE SENSE / INQUIRY / REQUEST SENSE allowed
    assert sense_of(go(lu, READ10, NB)) == (SenseKey.NOT_READY, 0x040B)
    assert sense_of(go(lu, TUR, NB)) == (SenseKey.NOT_READY, 0x040B)
    assert go(lu, MODE_SENSE6, NB).status is ScsiStatus.GOOD
    assert go(lu, READ10, NA).status is ScsiStatus.GOOD
    expect = {
        "unavailable": (0x040C, [RSOC]),
        "transitioning": (0x040A, []),
        "offline": (0x0412, []),
    }
    for st, (asc, allowed) in expect.items():
        asyncio.run(lu.alua.set_state("B", st))
        clear_uas(lu)
        assert sense_of(go(lu, READ10, NB)) == (SenseKey.NOT_READY, asc), st
        assert go(lu, INQUIRY, NB).status is ScsiStatus.GOOD
        for c in allowed:
            assert go(lu, c, NB).status is ScsiStatus.GOOD
        if st != "unavailable":
            assert sense_of(go(lu, MODE_SENSE6, NB)) == (SenseKey.NOT_READY, asc)
    asyncio.run(lu.alua.set_state("B", "active_non_optimized"))
    clear_uas(lu)
    assert go(lu, READ10, NB).status is ScsiStatus.GOOD


def test_implicit_change_reports_state_changed_to_every_nexus():
    lu, _ = make_lu()
    asyncio.run(lu.alua.set_state("A", "active_non_optimized"))
    for n in (NA, NB, NB2):
        assert sense_of(go(lu, TUR, n))[1] in (Asc.ASYMMETRIC_ACCESS_STATE_CHANGED,)
    assert go(lu, READ10, NA).status is ScsiStatus.GOOD
    assert lu.alua.group("A").status.name == "ALTERED_BY_IMPLICIT_ALUA"


def test_management_errors():
    lu, _ = make_lu(
        make_config([replace(g, supported_states=["active_optimized", "standby"]) for g in two_groups()])
    )
    with pytest.raises(AluaError):
        asyncio.run(lu.alua.set_state("nope", "standby"))
    with pytest.raises(AluaError):
        asyncio.run(lu.alua.set_state("A", "sideways"))
    with pytest.raises(AluaError):
        asyncio.run(lu.alua.set_state("A", "unavailable"))  # not a supported state of the group
    assert asyncio.run(lu.alua.set_state(0x22, "ao")).state is AluaState.ACTIVE_OPTIMIZED


# ---------------------------------------------------------------------------------------------- STPG


def test_stpg_explicit_transition_and_unit_attentions_skip_the_issuer():
    lu, _ = make_lu()
    params = bytes.fromhex("00000000 01000011 00000022")  # A -> non-optimized, B -> optimized
    res = go(lu, stpg(params), NA, params)
    assert res.status is ScsiStatus.GOOD
    assert lu.alua.group("A").state is AluaState.ACTIVE_NON_OPTIMIZED
    assert lu.alua.group("B").state is AluaState.ACTIVE_OPTIMIZED
    assert lu.ua.pending(NA) == []
    assert lu.ua.pending(NB) == [Asc.ASYMMETRIC_ACCESS_STATE_CHANGED]
    assert lu.ua.pending(NB2) == [Asc.ASYMMETRIC_ACCESS_STATE_CHANGED]
    data = bytes(go(lu, rtpg(0)).data_in)
    assert data[4:6] == bytes.fromhex("81cf") and data[9] == 0x01  # STATUS: altered by explicit STPG
    assert data[16:18] == bytes.fromhex("00cf")


def test_stpg_is_allowed_from_a_standby_port():
    lu, _ = make_lu()
    params = bytes.fromhex("00000000 00000022")
    assert go(lu, stpg(params), NB, params).status is ScsiStatus.GOOD
    assert lu.alua.access_state(NB) is AluaState.ACTIVE_OPTIMIZED


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        (bytes.fromhex("00000000 0f000011"), (0, 4, 3)),  # transitioning cannot be requested
        (bytes.fromhex("00000000 04000011"), (0, 4, 3)),  # LBA dependent is not supported
        (bytes.fromhex("00000000 05000011"), (0, 4, 3)),  # reserved state value
        (bytes.fromhex("00000000 10000011"), (0, 4, 7)),  # reserved bits
        (bytes.fromhex("00000000 01000099"), (0, 6, None)),  # no such group
        (bytes.fromhex("00000000 01000011 00000011"), (0, 10, None)),  # the same group twice
    ],
)
def test_stpg_parameter_errors_point_at_the_field_and_change_nothing(params, pointer):
    lu, _ = make_lu()
    res = go(lu, stpg(params), NA, params)
    assert sense_of(res) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    assert field_pointer(res) == pointer
    assert lu.alua.group("A").state is AluaState.ACTIVE_OPTIMIZED
    assert lu.ua.pending(NB) == []


def test_stpg_length_errors_and_empty_list():
    lu, _ = make_lu()
    bad = bytes.fromhex("00000000 010000")
    assert sense_of(go(lu, stpg(bad), NA, bad)) == (SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR)
    assert sense_of(go(lu, stpg(b"", length=8), NA, b"")) == (
        SenseKey.ILLEGAL_REQUEST,
        Asc.PARAMETER_LIST_LENGTH_ERROR,
    )
    assert go(lu, stpg(b""), NA).status is ScsiStatus.GOOD


def test_stpg_unsupported_when_only_implicit():
    lu, _ = make_lu(make_config(two_groups(explicit=False)))
    params = bytes.fromhex("00000000 00000022")
    res = go(lu, stpg(params), NA, params)
    # an unsupported service action of MAINTENANCE OUT: INVALID FIELD IN CDB at the SERVICE ACTION (SPC-4 4.2.5.1)
    assert sense_of(res) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
    assert field_pointer(res) == (1, 1, 4)
    # one explicit group is enough for the command to exist; a port of an implicit-only group still refuses it
    lu, _ = make_lu(make_config([two_groups()[0], replace(two_groups()[1], explicit=False)]))
    assert field_pointer(go(lu, stpg(params), NB, params)) == (1, 1, 4)
    assert bytes(go(lu, INQUIRY, NB).data_in)[5] & 0x30 == 0x10


# ---------------------------------------------------------------------------------------------- delays


def test_transition_delay_reports_transitioning_then_the_new_state():
    lu, _ = make_lu(make_config(two_groups(trans_delay_ms=200)))

    async def scenario():
        change = asyncio.create_task(lu.alua.set_state("A", "standby"))
        await asyncio.sleep(0.05)
        during = lu.alua.access_state(NA)
        clear_uas(lu)
        refused = await run(lu, READ10, NA)
        await change
        return during, refused

    during, refused = asyncio.run(scenario())
    assert during is AluaState.TRANSITIONING
    assert sense_of(refused) == (SenseKey.NOT_READY, 0x040A)
    assert lu.alua.access_state(NA) is AluaState.STANDBY
    assert lu.ua.pending(NB) == [Asc.ASYMMETRIC_ACCESS_STATE_CHANGED]


def test_nonoptimized_delay_and_per_group_counters():
    groups = [replace(g, nonop_delay_ms=30) for g in two_groups()]
    groups[1] = replace(groups[1], state="active_non_optimized")
    lu, _ = make_lu(make_config(groups))
    assert go(lu, READ10, NA).status is ScsiStatus.GOOD
    assert go(lu, READ10, NB).status is ScsiStatus.GOOD  # after the non-optimized delay
    go(lu, INQUIRY, NB)  # not media access: not counted
    counts = {g["name"]: g["media_commands"] for g in lu.alua.snapshot()}
    assert counts == {"A": 1, "B": 1}
    # the delay the gate waits before a command on each port (the value, not a measured time)
    from target.scsi.gates import AluaClass

    assert lu.alua.admitted(NA, AluaState.ACTIVE_OPTIMIZED, AluaClass.ACTIVE_ONLY) == 0.0
    assert lu.alua.admitted(NB, AluaState.ACTIVE_NON_OPTIMIZED, AluaClass.ACTIVE_ONLY) == 0.03
    assert lu.alua.admitted(NB, AluaState.ACTIVE_NON_OPTIMIZED, AluaClass.ANY) == 0.0


# ---------------------------------------------------------------------------------------------- reload


def test_config_reload_applies_changed_states_and_keeps_live_ones():
    lu, src = make_lu()
    asyncio.run(lu.alua.set_state("A", "active_non_optimized"))  # live change, config still says optimized
    clear_uas(lu)
    groups = two_groups()
    groups[1] = replace(groups[1], state="active_optimized")  # the config now changes B only
    src.config = make_config(groups)
    assert lu.alua.access_state(NA) is AluaState.ACTIVE_NON_OPTIMIZED
    assert lu.alua.access_state(NB) is AluaState.ACTIVE_OPTIMIZED
    assert lu.ua.pending(NA) == [Asc.ASYMMETRIC_ACCESS_STATE_CHANGED]


def test_runtime_build_attaches_alua_and_set_alua_state(tmp_path):
    from target.runtime import build_runtime

    cfg = make_config(two_groups())
    cfg.storage_objects[0] = replace(cfg.storage_objects[0], plugin="ramdisk", size=1 << 20)
    cfg.targets[0].tpgs[0].luns[0].storage_object = "ramdisk/disk0"
    cfg.targets[0].tpgs[1].luns[0].storage_object = "ramdisk/disk0"
    rt = build_runtime(cfg)
    try:
        lu = rt.lus["ramdisk/disk0"]
        assert lu.alua is not None and lu.tpgs == 3
        out = asyncio.run(rt.set_alua_state("ramdisk/disk0", "B", "active_optimized"))
        assert out["state"] == "active_optimized"
        listing = rt.alua_groups("ramdisk/disk0")
        assert [(g["name"], g["relative_port_ids"], g["members"]) for g in listing] == [
            ("A", [1], [f"{TGT}/1"]),
            ("B", [2], [f"{TGT}/2"]),
        ]
        with pytest.raises(KeyError):
            asyncio.run(rt.set_alua_state("ramdisk/none", "A", "standby"))
    finally:
        rt.close()


# ---------------------------------------------------------------------------------------------- counters


def test_media_access_is_data_to_or_from_the_medium():
    from target.scsi.alua import media_access
    from target.scsi.opcodes import OpcodeTable

    table = OpcodeTable.standard()
    names = {spec.name: media_access(spec) for spec in table}
    for name in ("READ(10)", "READ(16)", "WRITE(10)", "VERIFY(16)", "WRITE AND VERIFY(10)", "WRITE SAME(16)"):
        assert names[name] is True, name
    for name in ("TEST UNIT READY", "INQUIRY", "READ CAPACITY(10)", "REPORT TARGET PORT GROUPS"):
        assert names[name] is False, name


def test_with_the_command_spec_only_media_access_is_counted_per_group():
    """multipathd's tur checker sends TEST UNIT READY on every path each polling interval: with the spec from
    the gate the idle path's I/O counter stays at zero; without it every active-only command counts."""
    from target.scsi.gates import AluaClass
    from target.scsi.opcodes import OpcodeTable

    lu, _ = make_lu()
    table = OpcodeTable.standard()
    by_name = {spec.name: spec for spec in table}
    alua = lu.alua
    opt = AluaState.ACTIVE_OPTIMIZED
    for name in ("TEST UNIT READY", "READ(10)", "WRITE(16)", "TEST UNIT READY"):
        spec = by_name[name]
        alua.admitted(NA, opt, spec.alua_class, spec)
    alua.admitted(NB, opt, by_name["TEST UNIT READY"].alua_class, by_name["TEST UNIT READY"])
    alua.admitted(NB, opt, AluaClass.ACTIVE_ONLY)  # a gate without the spec: counted
    alua.admitted(NB, opt, AluaClass.ANY)  # never counted
    counts = {g["name"]: g["media_commands"] for g in alua.snapshot()}
    assert counts == {"A": 2, "B": 1}
