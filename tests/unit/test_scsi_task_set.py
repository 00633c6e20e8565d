"""Task set ordering (SIMPLE / ORDERED / HEAD OF QUEUE), bounds, and every task management function."""

import asyncio

import pytest
from scsi_harness import N1, N2, BlockingHarness, sense_of, settle

from target.scsi.command import ScsiRequest, ScsiStatus, TaskAttr
from target.scsi.sense import Asc
from target.scsi.task_set import TaskAborted, TmfResult


def test_ordered_waits_for_older_and_blocks_newer():
    async def main():
        h = BlockingHarness()
        t1 = h.submit(1)
        t2 = h.submit(2, TaskAttr.ORDERED)
        t3 = h.submit(3)
        await settle()
        assert h.started == [1]
        h.gate(1).set()
        await settle()
        assert h.started == [1, 2]
        h.gate(2).set()
        await settle()
        assert h.started == [1, 2, 3]
        h.gate(3).set()
        results = await asyncio.gather(t1, t2, t3)
        assert all(r.status == ScsiStatus.GOOD for r in results)
        assert len(h.lu.task_set) == 0

    asyncio.run(main())


def test_simple_tasks_run_concurrently():
    async def main():
        h = BlockingHarness()
        tasks = [h.submit(i) for i in (1, 2, 3)]
        await settle()
        assert h.started == [1, 2, 3]
        for i in (1, 2, 3):
            h.gate(i).set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def test_head_of_queue_runs_first_and_blocks_dormant():
    async def main():
        h = BlockingHarness()
        t1 = h.submit(1)
        t2 = h.submit(2, TaskAttr.ORDERED)  # dormant behind 1
        t3 = h.submit(3, TaskAttr.HEAD_OF_QUEUE)  # runs at once
        await settle()
        assert h.started == [1, 3]
        t4 = h.submit(4)  # behind the ORDERED one and the HEAD OF QUEUE one
        h.gate(1).set()
        await settle()
        assert h.started == [1, 3]  # ORDERED still waits for the HEAD OF QUEUE task
        h.gate(3).set()
        await settle()
        assert h.started == [1, 3, 2]
        h.gate(2).set()
        h.gate(4).set()
        await asyncio.gather(t1, t2, t3, t4)
        assert h.started == [1, 3, 2, 4]

    asyncio.run(main())


def test_task_set_full_and_overlapped_tag():
    async def main():
        h = BlockingHarness(max_tasks=2)
        t1 = h.submit(1)
        t2 = h.submit(2)
        await settle()
        r = await h.submit(3)
        assert r.status == ScsiStatus.TASK_SET_FULL
        r = await h.submit(1)  # tag 1 still in use on N1
        assert sense_of(r) == (0x0B, 0x4E00)
        h.gate(1).set()
        h.gate(2).set()
        await asyncio.gather(t1, t2)

    asyncio.run(main())


def test_aca_attribute_without_aca_condition_is_invalid_message_error():
    async def main():
        h = BlockingHarness()
        h.gate(1).set()
        r = await h.submit(1, TaskAttr.ACA)
        assert sense_of(r) == (5, 0x4900)  # SAM-5 8.6.5: ILLEGAL REQUEST / INVALID MESSAGE ERROR
        assert not h.lu.aca.active

    asyncio.run(main())


def test_abort_task_running_dormant_and_missing():
    async def main():
        h = BlockingHarness()
        t1 = h.submit(1)
        t2 = h.submit(2, TaskAttr.ORDERED)
        await settle()
        assert await h.disp.abort_task(N1, 0, 2, lun_map=h.map) == TmfResult.FUNCTION_COMPLETE
        with pytest.raises(TaskAborted):
            await t2  # dormant: never ran
        assert h.started == [1]
        abort = asyncio.ensure_future(h.disp.abort_task(N1, h.map[0], 1))
        await settle()
        assert not abort.done()  # waits for the running task's I/O
        h.gate(1).set()
        assert await abort == TmfResult.FUNCTION_COMPLETE
        with pytest.raises(TaskAborted):
            await t1
        assert await h.disp.abort_task(N1, h.lu, 99) == TmfResult.TASK_DOES_NOT_EXIST
        assert await h.disp.abort_task(N1, 5, 1, lun_map=h.map) == TmfResult.LUN_DOES_NOT_EXIST

    asyncio.run(main())


def test_abort_task_set_only_touches_own_nexus():
    async def main():
        h = BlockingHarness()
        t1 = h.submit(1, nexus=N1)
        t2 = h.submit(2, nexus=N2)
        await settle()
        h.gate(1).set()
        assert await h.disp.abort_task_set(N1, h.lu) == TmfResult.FUNCTION_COMPLETE
        with pytest.raises(TaskAborted):
            await t1
        h.gate(2).set()
        assert (await t2).status == ScsiStatus.GOOD

    asyncio.run(main())


@pytest.mark.parametrize("tas", [True, False])
def test_clear_task_set_tas(tas):
    async def main():
        h = BlockingHarness()
        h.lu.tas = tas
        t1 = h.submit(1, nexus=N1)
        t2 = h.submit(2, nexus=N2)
        await settle()
        h.gate(1).set()
        h.gate(2).set()
        assert await h.disp.clear_task_set(N1, h.lu) == TmfResult.FUNCTION_COMPLETE
        with pytest.raises(TaskAborted):
            await t1
        if tas:
            assert (await t2).status == ScsiStatus.TASK_ABORTED
            assert not h.lu.ua.has_pending(N2)
        else:
            with pytest.raises(TaskAborted):
                await t2
            assert h.lu.ua.pending(N2) == [Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR]
        assert not h.lu.ua.has_pending(N1)

    asyncio.run(main())


def test_lun_reset_aborts_releases_and_sets_ua_for_every_nexus():
    async def main():
        h = BlockingHarness()
        h.lu.reservations.reserve(N2)
        t2 = h.submit(2, nexus=N2)
        await settle()
        h.gate(2).set()
        assert await h.disp.lun_reset(N1, 0, lun_map=h.map) == TmfResult.FUNCTION_COMPLETE
        assert (await t2).status == ScsiStatus.TASK_ABORTED  # TAS=1 by default
        assert h.lu.reservations.spc2_holder is None
        assert h.lu.ua.pending(N2) == [Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED]
        assert h.lu.ua.pending(N1) == [
            Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED
        ]  # the requester too (SAM-5 6.3.3)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("cold", "asc"), [(False, Asc.SCSI_BUS_RESET_OCCURRED), (True, Asc.POWER_ON_OCCURRED)]
)
def test_target_reset(cold, asc):
    async def main():
        h = BlockingHarness()
        assert await h.disp.target_reset(N1, h.map, cold=cold) == TmfResult.FUNCTION_COMPLETE
        assert h.lu.ua.pending(N2) == [asc]

    asyncio.run(main())


def test_clear_aca_without_aca_and_nexus_loss_aborts():
    async def main():
        h = BlockingHarness()
        assert await h.disp.clear_aca(N1, h.lu) == TmfResult.FUNCTION_COMPLETE
        assert await h.disp.clear_aca(N1, None) == TmfResult.LUN_DOES_NOT_EXIST
        t1 = h.submit(1)
        await settle()
        h.gate(1).set()
        await h.disp.nexus_gone(N1)
        with pytest.raises(TaskAborted):
            await t1

    asyncio.run(main())


def test_qerr_01_aborts_other_tasks_on_check_condition():
    async def main():
        h = BlockingHarness()
        h.lu.qerr = 1
        t2 = h.submit(2, nexus=N2)
        await settle()
        h.gate(2).set()
        req = ScsiRequest(N1, 0, bytes((0xC7, 0, 0, 0, 0, 0)), tag=7, lun_map=h.map)
        assert sense_of(await h.disp.execute(req)) == (5, 0x2000)
        assert (await t2).status == ScsiStatus.TASK_ABORTED

    asyncio.run(main())
