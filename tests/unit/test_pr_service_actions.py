"""PERSISTENT RESERVE IN/OUT through LogicalUnit.execute: byte vectors for every PRIN service action, the PROUT
service actions (REGISTER, RIEK, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT with TAS on/off, REGISTER
AND MOVE, SPEC_I_PT, ALL_TG_PT), PR generation, unit attentions, parameter validation, SPC-2 interplay."""

import asyncio
import itertools

import pytest

from target.backstore.base import Backstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.gates import PrType
from target.scsi.pr import TransportId, pr_state
from target.scsi.sense import Asc, SenseKey, parse_sense

T = "iqn.2003-01.org.example:t1"
N1 = Nexus("iqn.1994-05.com.redhat:a", 0x23D000000001, T, 1, 1)
N2 = Nexus("iqn.1994-05.com.redhat:b", 0x23D000000002, T, 1, 1)
N3 = Nexus("iqn.1994-05.com.redhat:c", 0x23D000000003, T, 1, 1)
N1_PORT2 = Nexus(
    "iqn.1994-05.com.redhat:a", 0x23D000000001, T, 2, 2
)  # same initiator port, other target port
K1, K2, K3 = 0x1111111111111111, 0x2222222222222222, 0x3333333333333333
_tags = itertools.count(1)


class MemBackstore(Backstore):
    def __init__(self, size: int = 1 << 20, block_size: int = 512) -> None:
        self.size = size
        self.block_size = block_size
        self.can_unmap = False
        self.unmap_zeroes = False
        self.write_back = True
        self.buf = bytearray(size)
        self.gate: asyncio.Event | None = None

    async def read(self, offset, length):
        return bytes(self.buf[offset : offset + length])

    async def write(self, offset, data, fua=False):
        if self.gate is not None:
            await self.gate.wait()
        self.buf[offset : offset + len(data)] = data

    async def flush(self):
        return None


def make_lu(**attrs) -> LogicalUnit:
    cfg = StorageObjectConfig(plugin="fileio", name="disk0", wwn="5ec6a7f0-3a24", attributes=attrs)
    return LogicalUnit(MemBackstore(), cfg)


async def aexec(lu, nexus, cdb, data=b"") -> ScsiResult:
    req = ScsiRequest(
        nexus=nexus, lun=0, cdb=bytes(cdb), tag=next(_tags), data_out=data, expected_in_length=8192
    )
    return await lu.execute(req)


def run(lu, nexus, cdb, data=b"") -> ScsiResult:
    return asyncio.run(aexec(lu, nexus, cdb, data))


def prin(sa, alloc=8192):
    return bytes((0x5E, sa, 0, 0, 0, 0, 0)) + alloc.to_bytes(2, "big") + b"\x00"


def prout_cdb(sa, pr_type=0, plen=24, scope=0):
    return bytes((0x5F, sa, (scope << 4) | pr_type, 0, 0)) + plen.to_bytes(4, "big") + b"\x00"


def params(key=0, sa_key=0, flags=0, extra=b""):
    return key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(4) + bytes((flags, 0, 0, 0)) + extra


def prout(lu, nexus, sa, key=0, sa_key=0, pr_type=0, flags=0, extra=b""):
    data = params(key, sa_key, flags, extra)
    return run(lu, nexus, prout_cdb(sa, pr_type, len(data)), data)


def register(lu, nexus, sa_key, key=0, flags=0):
    return prout(lu, nexus, 0x06, key, sa_key, flags=flags)


def sense(result):
    assert result.status is ScsiStatus.CHECK_CONDITION
    return parse_sense(result.sense)


def conflict(result):
    return result.status is ScsiStatus.RESERVATION_CONFLICT


def good(result):
    return result.status is ScsiStatus.GOOD


def tur(lu, nexus):
    return run(lu, nexus, bytes(6))


def pending_ua(lu, nexus):
    return lu.ua.pending(nexus)


# --- PERSISTENT RESERVE IN byte vectors ---------------------------------------------------------------------


def test_read_keys_empty_and_after_register():
    lu = make_lu()
    assert run(lu, N1, prin(0)).data_in == bytes(8)
    assert good(register(lu, N1, K1))
    assert good(register(lu, N2, K2))
    assert run(lu, N1, prin(0)).data_in == bytes((0, 0, 0, 2, 0, 0, 0, 16)) + K1.to_bytes(
        8, "big"
    ) + K2.to_bytes(8, "big")


def test_read_keys_truncated_keeps_additional_length():
    lu = make_lu()
    register(lu, N1, K1)
    assert run(lu, N1, prin(0, alloc=8)).data_in == bytes((0, 0, 0, 1, 0, 0, 0, 8))
    assert run(lu, N1, prin(0, alloc=0)).data_in == b""


def test_read_reservation_vectors():
    lu = make_lu()
    assert run(lu, N1, prin(1)).data_in == bytes(8)
    register(lu, N1, K1)
    assert good(prout(lu, N1, 0x01, K1, pr_type=PrType.EXCLUSIVE_ACCESS))
    want = bytes((0, 0, 0, 1, 0, 0, 0, 16)) + K1.to_bytes(8, "big") + bytes(4) + bytes((0, 0x03, 0, 0))
    assert run(lu, N1, prin(1)).data_in == want


def test_read_reservation_all_registrants_key_is_zero():
    lu = make_lu()
    register(lu, N1, K1)
    prout(lu, N1, 0x01, K1, pr_type=PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS)
    assert run(lu, N1, prin(1)).data_in[8:24] == bytes(8) + bytes(4) + bytes((0, 0x07, 0, 0))


def test_report_capabilities_vector():
    lu = make_lu()
    # LENGTH 8; CRH SIP_C ATP_C (no PTPL_C without a state directory); TMV, ALLOW COMMANDS 001b; all six types
    assert run(lu, N1, prin(2)).data_in == bytes((0x00, 0x08, 0x1C, 0x90, 0xEA, 0x01, 0x00, 0x00))


def test_report_capabilities_ptpl(tmp_path):
    """RLR_C (bit 7) is set: an LU with a state directory can enter the lost condition (APTPL unreadable)."""
    from target.scsi.pr import attach

    lu = make_lu()
    attach(lu, str(tmp_path))
    assert run(lu, N1, prin(2)).data_in[2:4] == bytes((0x9D, 0x90))
    register(lu, N1, K1, flags=0x01)
    assert run(lu, N1, prin(2)).data_in[2:4] == bytes((0x9D, 0x91))  # PTPL_A


def test_read_full_status_vector():
    lu = make_lu()
    register(lu, N1, K1)
    prout(lu, N1, 0x01, K1, pr_type=PrType.WRITE_EXCLUSIVE)
    tid = TransportId(N1.initiator_name, N1.isid).encode()
    desc = K1.to_bytes(8, "big") + bytes(4) + bytes((0x01, 0x01)) + bytes(4) + (1).to_bytes(2, "big")
    desc += len(tid).to_bytes(4, "big") + tid
    assert run(lu, N1, prin(3)).data_in == bytes((0, 0, 0, 1)) + len(desc).to_bytes(4, "big") + desc
    assert tid[0] == 0x45  # format 01b with the ISID


def test_prin_unknown_service_action():
    lu = make_lu()
    for sa in (4, 0x1F):
        assert sense(run(lu, N1, prin(sa))) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)


# --- REGISTER / REGISTER AND IGNORE EXISTING KEY -----------------------------------------------------------


def test_register_rules_and_generation():
    lu = make_lu()
    assert conflict(prout(lu, N1, 0x00, key=K2, sa_key=K1))  # unregistered, non-zero RESERVATION KEY
    assert good(prout(lu, N1, 0x00, key=0, sa_key=0))  # nothing to do, no generation change
    assert pr_state(lu).generation == 0
    assert good(prout(lu, N1, 0x00, key=0, sa_key=K1))
    assert conflict(prout(lu, N1, 0x00, key=K2, sa_key=K3))  # wrong key
    assert good(prout(lu, N1, 0x00, key=K1, sa_key=K3))  # change key
    assert good(register(lu, N1, K2))  # ignore existing key
    assert run(lu, N1, prin(0)).data_in == bytes((0, 0, 0, 3, 0, 0, 0, 8)) + K2.to_bytes(8, "big")
    assert good(prout(lu, N1, 0x00, key=K2, sa_key=0))  # unregister
    assert run(lu, N1, prin(0)).data_in == bytes((0, 0, 0, 4, 0, 0, 0, 0))


def test_registration_is_per_isid():
    lu = make_lu()
    register(lu, N1, K1)
    other_session = Nexus(N1.initiator_name, 0x23D000000009, T, 1, 1)
    st = pr_state(lu)
    assert st.is_registered(N1) and not st.is_registered(other_session)
    assert not st.is_registered(N1_PORT2)


def test_parameter_list_length_and_fields():
    lu = make_lu()
    data = params(0, K1)
    assert sense(run(lu, N1, prout_cdb(0x06, plen=23), data)) == (
        SenseKey.ILLEGAL_REQUEST,
        Asc.PARAMETER_LIST_LENGTH_ERROR,
    )
    assert sense(run(lu, N1, prout_cdb(0x06, plen=28), data + bytes(4)))[1] == Asc.PARAMETER_LIST_LENGTH_ERROR
    # SPEC_I_PT with REGISTER AND IGNORE EXISTING KEY: invalid field at byte 20 bit 3
    r = prout(lu, N1, 0x06, 0, K1, flags=0x08, extra=bytes(4))
    assert sense(r) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    assert r.sense[15:18] == bytes((0x80 | 0x08 | 3, 0, 20))
    # APTPL without a state directory: not capable
    assert sense(register(lu, N1, K1, flags=0x01))[1] == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert pr_state(lu).registrations == []


# --- RESERVE / RELEASE -------------------------------------------------------------------------------------


def test_reserve_release_rules():
    lu = make_lu()
    assert conflict(prout(lu, N1, 0x01, K1, pr_type=1))  # not registered
    register(lu, N1, K1)
    register(lu, N2, K2)
    gen = pr_state(lu).generation
    assert conflict(prout(lu, N1, 0x01, K2, pr_type=1))  # wrong key
    assert sense(prout(lu, N1, 0x01, K1, pr_type=2)) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
    r = run(lu, N1, prout_cdb(0x01, 1, scope=1), params(K1))
    assert sense(r)[1] == Asc.INVALID_FIELD_IN_CDB
    assert good(prout(lu, N1, 0x01, K1, pr_type=1))
    assert good(prout(lu, N1, 0x01, K1, pr_type=1))  # same holder, same type: no-op
    assert conflict(prout(lu, N1, 0x01, K1, pr_type=3))  # different type
    assert conflict(prout(lu, N2, 0x01, K2, pr_type=1))  # other registrant
    assert good(prout(lu, N2, 0x02, K2, pr_type=1))  # release by a non-holder: no-op
    assert pr_state(lu).reservation_type() is PrType.WRITE_EXCLUSIVE
    r = prout(lu, N1, 0x02, K1, pr_type=3)
    assert sense(r) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
    assert good(prout(lu, N1, 0x02, K1, pr_type=1))
    assert pr_state(lu).reservation is None
    assert pr_state(lu).generation == gen  # RESERVE and RELEASE do not count
    assert pending_ua(lu, N2) == []  # WE release: no unit attention


def test_release_of_registrants_only_notifies_other_registrants():
    lu = make_lu()
    for n, k in ((N1, K1), (N2, K2)):
        register(lu, n, k)
    tur(lu, N3)  # known but unregistered
    prout(lu, N1, 0x01, K1, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    assert good(prout(lu, N1, 0x02, K1, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    assert pending_ua(lu, N2) == [Asc.RESERVATIONS_RELEASED]
    assert pending_ua(lu, N1) == [] and pending_ua(lu, N3) == []


def test_unregistering_holder_releases():
    lu = make_lu()
    register(lu, N1, K1)
    register(lu, N2, K2)
    prout(lu, N1, 0x01, K1, pr_type=PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY)
    prout(lu, N1, 0x00, K1, 0)
    assert pr_state(lu).reservation is None
    assert pending_ua(lu, N2) == [Asc.RESERVATIONS_RELEASED]


def test_all_registrants_survives_until_last_registrant():
    lu = make_lu()
    register(lu, N1, K1)
    register(lu, N2, K2)
    prout(lu, N1, 0x01, K1, pr_type=PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
    st = pr_state(lu)
    assert st.is_holder(N1) and st.is_holder(N2)
    prout(lu, N1, 0x00, K1, 0)
    assert st.reservation_type() is PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
    assert good(prout(lu, N2, 0x02, K2, pr_type=PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS))
    assert st.reservation is None


# --- CLEAR / PREEMPT / PREEMPT AND ABORT ---------------------------------------------------------------------


def test_clear():
    lu = make_lu()
    register(lu, N1, K1)
    register(lu, N2, K2)
    tur(lu, N3)
    prout(lu, N1, 0x01, K1, pr_type=3)
    gen = pr_state(lu).generation
    assert conflict(prout(lu, N3, 0x03, K3))
    assert good(prout(lu, N1, 0x03, K1))
    assert run(lu, N1, prin(0)).data_in == (gen + 1).to_bytes(4, "big") + bytes(4)
    assert pr_state(lu).reservation is None
    assert pending_ua(lu, N2) == [Asc.RESERVATIONS_PREEMPTED]
    assert pending_ua(lu, N1) == [] and pending_ua(lu, N3) == []


def test_preempt_registration_without_reservation():
    lu = make_lu()
    register(lu, N1, K1)
    register(lu, N2, K2)
    gen = pr_state(lu).generation
    assert good(prout(lu, N2, 0x04, K2, K1, pr_type=3))
    assert run(lu, N2, prin(0)).data_in == (gen + 1).to_bytes(4, "big") + bytes((0, 0, 0, 8)) + K2.to_bytes(
        8, "big"
    )
    assert pr_state(lu).reservation is None
    assert pending_ua(lu, N1) == [Asc.REGISTRATIONS_PREEMPTED]
    assert conflict(prout(lu, N2, 0x04, K2, K3, pr_type=3))  # nobody has K3
    assert sense(prout(lu, N2, 0x04, K2, 0, pr_type=3))[1] == Asc.INVALID_FIELD_IN_PARAMETER_LIST


def test_preempt_holder_takes_the_reservation():
    lu = make_lu()
    register(lu, N1, K1)
    register(lu, N2, K2)
    register(lu, N3, K3)
    prout(lu, N1, 0x01, K1, pr_type=PrType.WRITE_EXCLUSIVE)
    assert good(prout(lu, N2, 0x04, K2, K1, pr_type=PrType.EXCLUSIVE_ACCESS))
    st = pr_state(lu)
    assert st.is_holder(N2) and not st.is_registered(N1)
    assert st.reservation_type() is PrType.EXCLUSIVE_ACCESS
    assert pending_ua(lu, N1) == [Asc.REGISTRATIONS_PREEMPTED]
    assert pending_ua(lu, N3) == [Asc.RESERVATIONS_RELEASED]  # the type changed


def test_preempt_all_registrants_with_key_zero():
    lu = make_lu()
    register(lu, N1, K1)
    register(lu, N2, K2)
    prout(lu, N1, 0x01, K1, pr_type=PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS)
    assert good(prout(lu, N2, 0x04, K2, 0, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    st = pr_state(lu)
    assert [r.key for r in st.registrations] == [K2]
    assert st.is_holder(N2) and st.reservation_type() is PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


@pytest.mark.parametrize("tas", [1, 0])
def test_preempt_and_abort(tas):
    async def scenario():
        lu = make_lu(emulate_tas=tas)
        await aexec(lu, N1, prout_cdb(0x06), params(0, K1))
        await aexec(lu, N2, prout_cdb(0x06), params(0, K2))
        lu.backstore.gate = asyncio.Event()
        write = bytes((0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0))
        victim = asyncio.ensure_future(aexec(lu, N2, write, bytes(512)))
        await asyncio.sleep(0.01)
        assert len(lu.task_set) == 1
        preempt = asyncio.ensure_future(aexec(lu, N1, prout_cdb(0x05, 3), params(K1, K2)))
        await asyncio.sleep(0.01)
        lu.backstore.gate.set()
        r = await preempt
        assert r.status is ScsiStatus.GOOD
        try:
            vr = await victim
        except Exception as exc:  # TaskAborted: no response at all
            vr = exc
        return lu, vr

    from target.scsi.task_set import TaskAborted

    lu, vr = asyncio.run(scenario())
    if tas:
        assert isinstance(vr, ScsiResult) and vr.status is ScsiStatus.TASK_ABORTED
        assert pending_ua(lu, N2) == [Asc.REGISTRATIONS_PREEMPTED]
    else:
        assert isinstance(vr, TaskAborted)
        assert pending_ua(lu, N2) == [Asc.REGISTRATIONS_PREEMPTED, Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR]
    st = pr_state(lu)
    assert st.is_registered(N1) and not st.is_registered(N2)


# --- REGISTER AND MOVE, SPEC_I_PT, ALL_TG_PT ------------------------------------------------------------------


def move_params(key, sa_key, tid, rtpi=1, unreg=False, aptpl=False):
    raw = tid.encode()
    head = key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes((0, (2 if unreg else 0) | int(aptpl)))
    return head + rtpi.to_bytes(2, "big") + len(raw).to_bytes(4, "big") + raw


def test_register_and_move():
    lu = make_lu()
    register(lu, N1, K1)
    data = move_params(K1, K2, TransportId(N2.initiator_name, N2.isid), unreg=True)
    assert conflict(run(lu, N1, prout_cdb(0x07, 1, len(data)), data))  # no reservation to move
    prout(lu, N1, 0x01, K1, pr_type=PrType.WRITE_EXCLUSIVE)
    gen = pr_state(lu).generation
    assert good(run(lu, N1, prout_cdb(0x07, 1, len(data)), data))
    st = pr_state(lu)
    assert st.is_holder(N2) and not st.is_registered(N1)
    assert st.reservation_type() is PrType.WRITE_EXCLUSIVE and st.generation == gen + 1
    assert run(lu, N2, prin(1)).data_in[8:16] == K2.to_bytes(8, "big")


def test_register_and_move_to_itself_is_invalid():
    lu = make_lu()
    register(lu, N1, K1)
    prout(lu, N1, 0x01, K1, pr_type=1)
    data = move_params(K1, K2, TransportId(N1.initiator_name, N1.isid))
    assert sense(run(lu, N1, prout_cdb(0x07, 1, len(data)), data))[1] == Asc.INVALID_FIELD_IN_PARAMETER_LIST


def test_spec_i_pt_registers_listed_ports():
    lu = make_lu()
    tids = TransportId(N2.initiator_name, N2.isid).encode() + TransportId(N3.initiator_name).encode()
    r = prout(lu, N1, 0x00, 0, K1, flags=0x08, extra=len(tids).to_bytes(4, "big") + tids)
    assert good(r)
    st = pr_state(lu)
    any_isid_n3 = Nexus(N3.initiator_name, 0x400000000077, T, 1, 1)
    assert st.is_registered(N1) and st.is_registered(N2) and st.is_registered(any_isid_n3)
    assert not st.is_registered(Nexus(N2.initiator_name, 0x1, T, 1, 1))
    full = run(lu, N1, prin(3)).data_in
    assert (
        full[3] == 1 and full.count(b"iqn.1994-05.com.redhat:c\x00") == 1
    )  # format 00b for the name-only one


def test_spec_i_pt_is_all_or_nothing():
    lu = make_lu()
    register(lu, N2, K2)
    tids = TransportId(N3.initiator_name, N3.isid).encode() + TransportId(N2.initiator_name, N2.isid).encode()
    r = prout(lu, N1, 0x00, 0, K1, flags=0x08, extra=len(tids).to_bytes(4, "big") + tids)
    assert sense(r)[1] == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    st = pr_state(lu)
    assert not st.is_registered(N1) and not st.is_registered(N3)
    assert st.generation == 1


def test_all_tg_pt_registers_every_target_port():
    lu = make_lu()
    assert good(register(lu, N1, K1, flags=0x04))
    st = pr_state(lu)
    assert st.is_registered(N1) and st.is_registered(N1_PORT2)
    assert run(lu, N1, prin(3)).data_in[8 + 12] == 0x02  # ALL_TG_PT in READ FULL STATUS
    register(lu, N2, K2)
    assert good(prout(lu, N1_PORT2, 0x01, K1, pr_type=PrType.EXCLUSIVE_ACCESS))
    assert st.is_holder(N1)


# --- SPC-2 RESERVE / RELEASE interplay (SPC-4 5.13.3) ---------------------------------------------------------


def test_spc2_reserve_with_registrations():
    lu = make_lu()
    register(lu, N1, K1)
    register(lu, N2, K2)
    assert conflict(run(lu, N3, bytes((0x16, 0, 0, 0, 0, 0))))  # registrations exist
    assert conflict(run(lu, N2, bytes((0x16, 0, 0, 0, 0, 0))))  # registered, no RO/AR reservation
    prout(lu, N1, 0x01, K1, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    assert good(run(lu, N1, bytes((0x16, 0, 0, 0, 0, 0))))  # holder: GOOD, no effect (CRH=1)
    assert good(run(lu, N2, bytes((0x17, 0, 0, 0, 0, 0))))  # registrant under RO: GOOD, no effect
    assert lu.reservations.spc2_holder is None
    assert pr_state(lu).reservation_type() is PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def test_prout_conflicts_with_spc2_reservation():
    lu = make_lu()
    assert good(run(lu, N1, bytes((0x16, 0, 0, 0, 0, 0))))
    assert conflict(register(lu, N2, K2))
    assert good(register(lu, N1, K1))  # the SPC-2 holder itself


def test_pr_survives_lu_reset():
    lu = make_lu()
    register(lu, N1, K1)
    prout(lu, N1, 0x01, K1, pr_type=3)
    asyncio.run(lu.reset(None))
    assert pr_state(lu).is_holder(N1)


def test_emulate_pr_off_hides_commands():
    lu = make_lu(emulate_pr=0)
    # the opcode table answers a disabled service action like an unsupported one
    assert sense(run(lu, N1, prin(0)))[0] is SenseKey.ILLEGAL_REQUEST
    assert conflict(register(lu, N1, K1)) is False and lu.reservations.pr is None
