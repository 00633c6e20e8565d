"""Auto contingent allegiance (SAM-5 5.9): NACA, the ACA task attribute, ACA ACTIVE, CLEAR ACA, resets, and the
reset hooks that drop SBC per-nexus state (PREVENT ALLOW MEDIUM REMOVAL, held EXTENDED COPY results)."""

import asyncio

import pytest
from scsi_harness import N1, N2, BlockingHarness, sense_of, settle

from target.scsi import aca
from target.scsi.command import ScsiStatus, TaskAttr
from target.scsi.opcodes import OpcodeTable
from target.scsi.task_set import TaskAborted, TmfResult

TUR = bytes(6)
TUR_NACA = bytes((0, 0, 0, 0, 0, 0x04))
BAD_OPCODE_NACA = bytes((0xC7, 0, 0, 0, 0, 0x04))
BAD_OPCODE = bytes((0xC7, 0, 0, 0, 0, 0))


class Harness(BlockingHarness):
    async def fault(self, nexus=N1, attr=TaskAttr.SIMPLE):
        """Establish ACA from `nexus` with a failing NACA=1 command."""
        r = await self.cmd(BAD_OPCODE_NACA, nexus=nexus, attr=attr)
        assert sense_of(r) == (5, 0x2000)
        assert self.lu.aca.faulted == nexus


# --- the CONTROL byte -----------------------------------------------------------------------------------------


def test_control_byte_position_and_naca():
    assert aca.control_byte_index(bytes(6)) == 5
    assert aca.control_byte_index(bytes((0x28,)) + bytes(9)) == 9
    assert aca.control_byte_index(bytes((0x88,)) + bytes(15)) == 15
    assert aca.control_byte_index(bytes((0xA0,)) + bytes(11)) == 11
    assert aca.control_byte_index(bytes((0x7F, 0x04)) + bytes(30)) == 1
    assert aca.control_byte_index(b"") is None
    assert aca.control_byte_index(bytes((0x28, 0, 0))) is None  # short CDB: no CONTROL byte
    assert aca.naca(TUR_NACA)
    assert not aca.naca(TUR)
    assert aca.naca(bytes((0x7F, 0x04)) + bytes(30))


def test_naca_bit_is_accepted_and_reported_in_usage_data():
    async def main():
        h = Harness()
        r = await h.cmd(TUR_NACA)
        assert r.status == ScsiStatus.GOOD
        assert not h.lu.aca.active  # GOOD status establishes nothing
        # the usage data (what RSOC reports and check_cdb enforces) carries NACA in every CONTROL byte
        for spec in h.lu.table:
            control = 1 if spec.opcode == 0x7F else spec.cdb_length - 1
            assert spec.usage[control] & 0x04, spec.name
        # other CONTROL bits are still refused, with a bit pointer
        r = await h.cmd(bytes((0, 0, 0, 0, 0, 0x01)))
        assert sense_of(r) == (5, 0x2400)
        assert r.sense[15:18] == bytes.fromhex("c80005")

    asyncio.run(main())


# --- NACA = 0: contingent allegiance only -----------------------------------------------------------------


def test_naca_zero_check_condition_blocks_nothing():
    async def main():
        h = Harness()
        r = await h.cmd(BAD_OPCODE)
        assert sense_of(r) == (5, 0x2000)
        assert not h.lu.aca.active
        assert (await h.cmd(TUR)).status == ScsiStatus.GOOD
        assert (await h.cmd(TUR, nexus=N2)).status == ScsiStatus.GOOD

    asyncio.run(main())


# --- establishing ACA and the admission rules -------------------------------------------------------------


def test_naca_one_check_condition_establishes_aca_and_refuses_new_commands():
    async def main():
        h = Harness()
        await h.fault(N1)
        # the faulted nexus: anything but an ACA task gets ACA ACTIVE (no sense)
        r = await h.cmd(TUR)
        assert r.status == ScsiStatus.ACA_ACTIVE and r.sense == b""
        # other nexuses share the task set (TST=000b): ACA ACTIVE too, whatever the attribute
        assert (await h.cmd(TUR, nexus=N2)).status == ScsiStatus.ACA_ACTIVE
        assert (await h.cmd(TUR, nexus=N2, attr=TaskAttr.ACA)).status == ScsiStatus.ACA_ACTIVE
        assert (await h.cmd(TUR, nexus=N2, attr=TaskAttr.HEAD_OF_QUEUE)).status == ScsiStatus.ACA_ACTIVE
        # the ACA task from the faulted nexus is processed
        assert (await h.cmd(TUR, attr=TaskAttr.ACA)).status == ScsiStatus.GOOD
        # a successful ACA task does not clear the condition
        assert h.lu.aca.faulted == N1
        assert (await h.cmd(TUR)).status == ScsiStatus.ACA_ACTIVE

    asyncio.run(main())


def test_aca_active_refusal_does_not_consume_a_unit_attention():
    async def main():
        h = Harness()
        await h.fault(N1)
        h.lu.capacity_changed()
        assert (await h.cmd(TUR, nexus=N2)).status == ScsiStatus.ACA_ACTIVE
        assert h.lu.ua.pending(N2)  # still there for the first command after ACA is cleared
        # the ACA task of the faulted nexus reports its UA like any command
        r = await h.cmd(TUR, attr=TaskAttr.ACA)
        assert sense_of(r) == (6, 0x2A09)

    asyncio.run(main())


def test_only_one_aca_task_at_a_time():
    async def main():
        h = Harness()
        await h.fault(N1)
        t1 = h.submit(1, TaskAttr.ACA)
        await settle()
        assert h.started == [1]
        r = await h.cmd(TUR, attr=TaskAttr.ACA)
        assert r.status == ScsiStatus.ACA_ACTIVE
        h.gate(1).set()
        assert (await t1).status == ScsiStatus.GOOD
        assert (await h.cmd(TUR, attr=TaskAttr.ACA)).status == ScsiStatus.GOOD

    asyncio.run(main())


def test_aca_task_failing_with_naca_keeps_the_condition():
    async def main():
        h = Harness()
        await h.fault(N1)
        r = await h.cmd(BAD_OPCODE_NACA, attr=TaskAttr.ACA)
        assert sense_of(r) == (5, 0x2000)
        assert h.lu.aca.faulted == N1
        r = await h.cmd(BAD_OPCODE, attr=TaskAttr.ACA)  # NACA=0: the condition stays as it is
        assert sense_of(r) == (5, 0x2000)
        assert h.lu.aca.faulted == N1

    asyncio.run(main())


def test_dormant_tasks_are_blocked_until_clear_aca():
    async def main():
        h = Harness()
        t1 = h.submit(1)
        t2 = h.submit(2, TaskAttr.ORDERED)  # dormant behind task 1
        await settle()
        assert h.started == [1]
        await h.fault(N2, TaskAttr.HEAD_OF_QUEUE)  # another nexus faults the shared task set
        h.gate(1).set()
        assert (await t1).status == ScsiStatus.GOOD  # an enabled task finishes
        await settle()
        assert h.started == [1]  # task 2 is blocked by ACA
        # the ACA task runs although an ORDERED task waits
        assert (await h.cmd(TUR, nexus=N2, attr=TaskAttr.ACA)).status == ScsiStatus.GOOD
        assert await h.disp.clear_aca(N2, 0, lun_map=h.map) == TmfResult.FUNCTION_COMPLETE
        await settle()
        assert h.started == [1, 2]
        h.gate(2).set()
        assert (await t2).status == ScsiStatus.GOOD
        assert (await h.cmd(TUR)).status == ScsiStatus.GOOD

    asyncio.run(main())


def test_unit_attention_with_naca_establishes_aca():
    async def main():
        h = Harness()
        h.lu.capacity_changed()
        r = await h.cmd(TUR_NACA)
        assert sense_of(r) == (6, 0x2A09)
        assert h.lu.aca.faulted == N1

    asyncio.run(main())


def test_aca_attribute_without_aca_with_naca_establishes_aca():
    async def main():
        h = Harness()
        r = await h.cmd(TUR_NACA, attr=TaskAttr.ACA)
        assert sense_of(r) == (5, 0x4900)
        assert h.lu.aca.faulted == N1

    asyncio.run(main())


# --- clearing ACA -----------------------------------------------------------------------------------------------


def test_clear_aca_from_the_faulted_nexus_aborts_the_aca_task():
    async def main():
        h = Harness()
        await h.fault(N1)
        t1 = h.submit(1, TaskAttr.ACA)
        await settle()
        h.gate(1).set()
        assert await h.disp.clear_aca(N1, h.lu) == TmfResult.FUNCTION_COMPLETE
        with pytest.raises(TaskAborted):
            await t1
        assert not h.lu.aca.active
        assert (await h.cmd(TUR)).status == ScsiStatus.GOOD
        assert (await h.cmd(TUR, nexus=N2)).status == ScsiStatus.GOOD

    asyncio.run(main())


def test_clear_aca_from_another_nexus_is_rejected():
    async def main():
        h = Harness()
        await h.fault(N1)
        assert await h.disp.clear_aca(N2, h.lu) == TmfResult.FUNCTION_REJECTED
        assert h.lu.aca.faulted == N1
        assert await h.disp.clear_aca(N1, None) == TmfResult.LUN_DOES_NOT_EXIST

    asyncio.run(main())


def test_lun_reset_clears_aca():
    async def main():
        h = Harness()
        await h.fault(N1)
        assert await h.disp.lun_reset(N2, h.lu) == TmfResult.FUNCTION_COMPLETE
        assert not h.lu.aca.active
        r = await h.cmd(TUR)
        assert sense_of(r) == (6, 0x2903)  # the reset is reported, not ACA ACTIVE

    asyncio.run(main())


def test_target_reset_clears_aca():
    async def main():
        h = Harness()
        await h.fault(N1)
        assert await h.disp.target_reset(N1, h.map) == TmfResult.FUNCTION_COMPLETE
        assert not h.lu.aca.active

    asyncio.run(main())


def test_nexus_loss_of_the_faulted_nexus_clears_aca_other_nexus_loss_does_not():
    async def main():
        h = Harness()
        await h.fault(N1)
        await h.disp.nexus_gone(N2)
        assert h.lu.aca.faulted == N1
        await h.disp.nexus_gone(N1)
        assert not h.lu.aca.active
        assert (await h.cmd(TUR, nexus=N2)).status == ScsiStatus.GOOD

    asyncio.run(main())


def test_abort_task_set_and_clear_task_set_leave_aca():
    async def main():
        h = Harness()
        await h.fault(N1)
        assert await h.disp.abort_task_set(N1, h.lu) == TmfResult.FUNCTION_COMPLETE
        assert await h.disp.clear_task_set(N1, h.lu) == TmfResult.FUNCTION_COMPLETE
        assert h.lu.aca.faulted == N1

    asyncio.run(main())


# --- what the LU reports ------------------------------------------------------------------------------------------


def test_normaca_bit_and_clear_aca_in_supported_tmfs():
    async def main():
        h = Harness()
        inq = await h.cmd(bytes((0x12, 0, 0, 0, 96, 0)))
        assert inq.data_in[3] & 0x20  # NORMACA
        rstmf = await h.cmd(bytes((0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0)))
        assert rstmf.data_in[0] & 0x20  # CACAS

    asyncio.run(main())


# --- reset hooks: SBC state tied to nexuses -----------------------------------------------------------------


def _sbc_harness():
    return Harness(table=OpcodeTable.standard())


def test_lun_reset_and_nexus_loss_clear_medium_removal_prevention():
    from target.scsi.sbc import start_stop

    async def main():
        h = _sbc_harness()
        prevent = bytes((0x1E, 0, 0, 0, 1, 0))
        assert (await h.cmd(prevent, nexus=N1)).status == ScsiStatus.GOOD
        assert (await h.cmd(prevent, nexus=N2)).status == ScsiStatus.GOOD
        assert start_stop.removal_prevented(h.lu)
        await h.disp.nexus_gone(N1)
        assert start_stop.removal_prevented(h.lu)  # N2 still prevents
        await h.disp.nexus_gone(N2)
        assert not start_stop.removal_prevented(h.lu)
        h.disp.nexus_created(N1)
        await h.cmd(TUR)  # consume I_T NEXUS LOSS OCCURRED
        assert (await h.cmd(prevent)).status == ScsiStatus.GOOD
        assert start_stop.removal_prevented(h.lu)
        await h.disp.lun_reset(N1, h.lu)
        assert not start_stop.removal_prevented(h.lu)

    asyncio.run(main())


def test_lun_reset_and_nexus_loss_forget_held_copy_results():
    from target.scsi.sbc import xcopy

    async def main():
        h = _sbc_harness()
        held = xcopy._results(h.lu)
        held[(N1, 1)] = xcopy.CopyResult(xcopy.CopyOperationStatus.COMPLETED_OK)
        held[(N2, 2)] = xcopy.CopyResult(xcopy.CopyOperationStatus.COMPLETED_OK)
        rcr = bytes((0x84, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0))
        assert (await h.cmd(rcr)).status == ScsiStatus.GOOD
        await h.disp.nexus_gone(N1)
        assert set(held) == {(N2, 2)}
        await h.disp.lun_reset(N2, h.lu)
        assert not held
        h.disp.nexus_created(N1)
        await h.cmd(TUR)
        assert sense_of(await h.cmd(rcr)) == (5, 0x2400)  # no such list any more

    asyncio.run(main())


def test_per_lu_reset_hook_gets_the_nexus_and_a_failing_hook_is_contained():
    async def main():
        h = Harness()
        calls = []

        def broken(lu, nexus):
            raise RuntimeError("boom")

        h.lu.reset_hooks.append(broken)
        h.lu.reset_hooks.append(lambda lu, nexus: calls.append((lu, nexus)))
        await h.disp.nexus_gone(N2)
        await h.disp.lun_reset(N1, h.lu)
        assert calls == [(h.lu, N2), (h.lu, None)]

    asyncio.run(main())
