"""The SCSI target device's entry point for the transport: route a command to its logical unit, answer for LUNs
that are not mapped, and run task management functions.

LUN not mapped for this initiator (SPC-4 6.6.2, 6.33, 6.39; SAM-5 5.8.4 "incorrect logical unit"):
  INQUIRY       standard data with PERIPHERAL QUALIFIER 011b / DEVICE TYPE 1Fh
  REPORT LUNS   the initiator's LUN inventory, as for any LUN
  REQUEST SENSE GOOD with sense data ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED
  anything else CHECK CONDITION, ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED

TMF methods take `lun` as the LUN number (resolved through `lun_map`), a `LunAccess`, or a `LogicalUnit`; an
unresolvable LUN gives `TmfResult.LUN_DOES_NOT_EXIST`.
"""

from __future__ import annotations

from collections.abc import Mapping

from target.scsi.command import LunAccess, Nexus, ScsiRequest, ScsiResult
from target.scsi.device import LogicalUnit, LuRegistry
from target.scsi.sbc import direct
from target.scsi.sense import Asc, CheckCondition, SenseKey, build_sense
from target.scsi.spc.inquiry import unmapped_standard_inquiry
from target.scsi.spc.report_luns import report_luns_data
from target.scsi.task_set import TaskAborted, TmfResult

__all__ = ["Dispatcher", "TaskAborted", "TmfResult"]

LunRef = int | LunAccess | LogicalUnit | None

_INQUIRY = 0x12
_REQUEST_SENSE = 0x03
_REPORT_LUNS = 0xA0


class Dispatcher:
    def __init__(self, registry: LuRegistry | None = None) -> None:
        self.registry = registry if registry is not None else LuRegistry()

    # --- commands -------------------------------------------------------------------------------------------

    async def execute(self, request: ScsiRequest) -> ScsiResult:
        """Execute one command. Raises `TaskAborted` when the task was aborted and must get no response."""
        access = request.lun_map.get(request.lun)
        if access is None or not isinstance(access.lu, LogicalUnit):
            return self._unmapped(request)
        return await access.lu.execute(request, read_only=access.read_only, registry=self.registry)

    def execute_direct(
        self,
        nexus: Nexus,
        access: LunAccess,
        cdb: bytes,
        tag: int,
        expected_length: int,
        data_out: bytes | memoryview | None,
    ) -> bytes | bytearray | bool | None:
        """A plain READ/WRITE done at once (target.scsi.sbc.direct): the read data, True for a write, or None
        when nothing was done and the command must go through `execute`."""
        lu = access.lu
        if not isinstance(lu, LogicalUnit):
            return None
        return direct.execute(lu, nexus, cdb, tag, expected_length, data_out, read_only=access.read_only)

    def _unmapped(self, request: ScsiRequest) -> ScsiResult:
        cdb = request.cdb
        op = cdb[0] if cdb else -1
        try:
            if op == _INQUIRY:
                if len(cdb) < 6:
                    raise CheckCondition.invalid_cdb(0)
                if cdb[1] & 0x01:
                    raise CheckCondition.lun_not_supported()
                alloc = int.from_bytes(cdb[3:5], "big")
                return ScsiResult(data_in=unmapped_standard_inquiry()[:alloc])
            if op == _REPORT_LUNS:
                return ScsiResult(data_in=report_luns_data(cdb, request.lun_map, request.nexus))
            if op == _REQUEST_SENSE:
                if len(cdb) < 6:
                    raise CheckCondition.invalid_cdb(0)
                sense = build_sense(
                    SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED, descriptor=bool(cdb[1] & 0x01)
                )
                return ScsiResult(data_in=sense[: cdb[4]])
            raise CheckCondition.lun_not_supported()
        except CheckCondition as cc:
            return cc.result()

    # --- I_T nexus lifecycle --------------------------------------------------------------------------------

    def nexus_created(self, nexus: Nexus) -> None:
        """A new I_T nexus (session) exists: LUs start tracking its unit attentions."""
        for lu in self.registry:
            lu.nexus_created(nexus)

    async def nexus_gone(self, nexus: Nexus) -> None:
        """I_T nexus loss (session closed or dropped): abort its tasks, release its SPC-2 reservations."""
        for lu in self.registry:
            await lu.nexus_gone(nexus)

    # --- task management ------------------------------------------------------------------------------------

    @staticmethod
    def _resolve(lun: LunRef, lun_map: Mapping[int, LunAccess] | None) -> LogicalUnit | None:
        if isinstance(lun, LogicalUnit):
            return lun
        if isinstance(lun, LunAccess):
            return lun.lu if isinstance(lun.lu, LogicalUnit) else None
        if isinstance(lun, int) and lun_map is not None:
            access = lun_map.get(lun)
            if access is not None and isinstance(access.lu, LogicalUnit):
                return access.lu
        return None

    async def abort_task(
        self, nexus: Nexus, lun: LunRef, tag: int, *, lun_map: Mapping[int, LunAccess] | None = None
    ) -> TmfResult:
        lu = self._resolve(lun, lun_map)
        if lu is None:
            return TmfResult.LUN_DOES_NOT_EXIST
        return await lu.abort_task(nexus, tag)

    async def abort_task_set(
        self, nexus: Nexus, lun: LunRef, *, lun_map: Mapping[int, LunAccess] | None = None
    ) -> TmfResult:
        lu = self._resolve(lun, lun_map)
        if lu is None:
            return TmfResult.LUN_DOES_NOT_EXIST
        return await lu.abort_task_set(nexus)

    async def clear_task_set(
        self, nexus: Nexus, lun: LunRef, *, lun_map: Mapping[int, LunAccess] | None = None
    ) -> TmfResult:
        lu = self._resolve(lun, lun_map)
        if lu is None:
            return TmfResult.LUN_DOES_NOT_EXIST
        return await lu.clear_task_set(nexus)

    async def lun_reset(
        self, nexus: Nexus, lun: LunRef, *, lun_map: Mapping[int, LunAccess] | None = None
    ) -> TmfResult:
        lu = self._resolve(lun, lun_map)
        if lu is None:
            return TmfResult.LUN_DOES_NOT_EXIST
        return await lu.reset(nexus, Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED)

    async def target_reset(
        self, nexus: Nexus, lun_map: Mapping[int, LunAccess], cold: bool = False
    ) -> TmfResult:
        """TARGET WARM RESET / TARGET COLD RESET (RFC 7143 11.5.1): a logical unit reset of every LU the nexus
        reaches; the other nexuses get SCSI BUS RESET OCCURRED (warm) or POWER ON OCCURRED (cold)."""
        asc = Asc.POWER_ON_OCCURRED if cold else Asc.SCSI_BUS_RESET_OCCURRED
        seen: set[int] = set()
        for access in lun_map.values():
            lu = access.lu
            if isinstance(lu, LogicalUnit) and id(lu) not in seen:
                seen.add(id(lu))
                await lu.reset(nexus, asc)
        return TmfResult.FUNCTION_COMPLETE

    async def clear_aca(
        self, nexus: Nexus, lun: LunRef, *, lun_map: Mapping[int, LunAccess] | None = None
    ) -> TmfResult:
        """CLEAR ACA (SAM-5 7.3): clears the ACA condition the nexus faulted (see target.scsi.aca)."""
        lu = self._resolve(lun, lun_map)
        if lu is None:
            return TmfResult.LUN_DOES_NOT_EXIST
        return await lu.clear_aca(nexus)
