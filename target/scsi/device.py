"""The logical unit: one per storage object. Holds the backstore, the identity (VPD), LU attributes (LIO names),
mode page state, unit attention queues, the task set and reservations, and runs a command through
parse -> gates -> handler (`LogicalUnit.execute`).

Order of the steps for one command (SAM-5 5.14, SPC-4 5.11, 5.13, 5.15; LIO target_setup_cmd_from_cdb):
  0. ACA gate (SAM-5 5.9, target.scsi.aca): while an ACA condition is active, ACA ACTIVE for everything but
     the faulted nexus' ACA task; the ACA attribute without ACA -> ILLEGAL REQUEST / INVALID MESSAGE ERROR
  1. task set admission and ordering (TASK SET FULL, OVERLAPPED COMMANDS, SIMPLE/ORDERED/HEAD OF QUEUE/ACA)
  2. parse: opcode table lookup, CDB length and usage bits (the error is held back until step 3)
  3. unit attention: any command but INQUIRY / REPORT LUNS / REQUEST SENSE reports and clears the first UA
  4. the parse error from step 2, if any
  5. ALUA access state (hook for the ALUA work), reservations (SPC-2 holder, persistent reservation classes)
  6. write protect -> DATA PROTECT / WRITE PROTECTED for commands that modify the medium
  7. the handler; CheckCondition -> CHECK CONDITION with sense in the D_SENSE format; StatusError -> status;
     BackstoreError -> MEDIUM ERROR; anything else -> HARDWARE ERROR / INTERNAL TARGET FAILURE (logged).
  8. CHECK CONDITION on a command with NACA=1 establishes ACA for its I_T nexus (before the task leaves the
     task set, so nothing queued slips through); then QErr (control mode page) aborts what it says.

Resets and I_T nexus loss also run the registered reset hooks (`register_reset_hook`): command-set modules keep
per-nexus state (PREVENT ALLOW MEDIUM REMOVAL, held EXTENDED COPY results) that a reset must drop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from target.backstore.base import Backstore, BackstoreError
from target.config.model import StorageObjectConfig
from target.scsi.aca import AcaCondition, naca
from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus, TaskAttr
from target.scsi.context import CommandContext
from target.scsi.gates import AluaClass, AluaState
from target.scsi.opcodes import Direction, OpcodeTable
from target.scsi.reservation import Reservations
from target.scsi.sense import Asc, CheckCondition, SenseKey, StatusError
from target.scsi.task_set import DEFAULT_MAX_TASKS, TaskAborted, TaskSet, TmfResult
from target.scsi.unit_attention import UnitAttentions

log = logging.getLogger(__name__)

VENDOR = "SANLAB"
REVISION = "0001"
#: IEEE company id in the NAA IEEE Registered Extended designator (the OpenFabrics id LIO uses)
COMPANY_ID = 0x001405
PRODUCTS = {"fileio": "FILEIO", "block": "IBLOCK", "ramdisk": "RAMDISK"}
#: how many lost I_T nexuses an LU remembers to report I_T NEXUS LOSS OCCURRED when they return
MAX_LOST_NEXUSES = 1024

_BYTES_PER_IO = 8 * 1024 * 1024  # LIO FD_MAX_BYTES: hw_max_sectors = 8 MiB / block size
#: largest LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT the 4-bit READ CAPACITY(16) field can carry
_MAX_LBPPBE = 15

#: hook(lu, nexus): drop state tied to I_T nexuses; nexus is None for a logical unit reset (every nexus) and the
#: lost nexus for I_T nexus loss. Modules register theirs at import (target.scsi.sbc does).
ResetHook = Callable[[Any, Nexus | None], None]
_RESET_HOOKS: list[ResetHook] = []


def register_reset_hook(hook: ResetHook) -> None:
    """Run `hook` on every logical unit reset and I_T nexus loss (idempotent)."""
    if hook not in _RESET_HOOKS:
        _RESET_HOOKS.append(hook)


@dataclass
class LuAttributes:
    """LU attributes with LIO's names (configfs `attrib/`), so a saveconfig.json `attributes` dict applies as is.

    The SBC handlers enforce what VPD B0h/B2h advertise from these values.
    """

    block_size: int = 512
    hw_block_size: int = 512
    hw_max_sectors: int = 16384
    optimal_sectors: int = 8192
    hw_queue_depth: int = 128
    queue_depth: int = 128
    emulate_model_alias: int = 0
    emulate_dpo: int = 1
    emulate_fua_write: int = 1
    emulate_fua_read: int = 1
    emulate_write_cache: int = 0
    emulate_ua_intlck_ctrl: int = 0
    emulate_tas: int = 1
    emulate_tpu: int = 0
    emulate_tpws: int = 0
    emulate_caw: int = 1
    emulate_3pc: int = 1
    emulate_pr: int = 1
    emulate_rest_reord: int = 0
    enforce_pr_isids: int = 1
    force_pr_aptpl: int = 0
    is_nonrot: int = 0
    unmap_zeroes_data: int = 0
    max_unmap_lba_count: int = 0
    max_unmap_block_desc_count: int = 0
    unmap_granularity: int = 0
    unmap_granularity_alignment: int = 0
    max_write_same_len: int = 0x1000
    pi_prot_type: int = 0
    pi_prot_format: int = 0
    pi_prot_verify: int = 0
    alua_support: int = 1
    pgr_support: int = 1
    #: sanlab extension (not a LIO attribute): blocks a PRE-FETCH may claim to hold; 0 = answer GOOD (LIO)
    prefetch_cache_blocks: int = 0

    @classmethod
    def from_config(cls, cfg: StorageObjectConfig, backstore: Backstore) -> tuple[LuAttributes, list[str]]:
        """Defaults derived from the backstore (LIO-like), then the config's attributes; returns warnings for
        unknown names or bad values (ignored)."""
        bs = backstore.block_size or cfg.block_size or 512
        hw_max = max(1, _BYTES_PER_IO // bs)
        thin = bool(backstore.can_unmap)
        attrs = cls(
            block_size=bs,
            hw_block_size=bs,
            hw_max_sectors=hw_max,
            optimal_sectors=min(hw_max, 8192),
            emulate_write_cache=1 if backstore.write_back else 0,
            emulate_tpu=1 if thin else 0,
            emulate_tpws=1 if thin else 0,
            # LBPRZ off by default, as LIO: with it on, SBC-3 makes WRITE SAME with UNMAP and non-zero data a
            # write (initiators and libiscsi's UnmapUntilEnd assume LIO's unconditional unmap); set
            # unmap_zeroes_data=1 to advertise that unmapped blocks read back as zeros
            unmap_zeroes_data=0,
            max_unmap_lba_count=0x40000 if thin else 0,
            max_unmap_block_desc_count=64 if thin else 0,
            unmap_granularity=0,  # set below: a physical block when thin
            is_nonrot=1 if cfg.plugin == "ramdisk" else 0,
        )
        warnings: list[str] = []
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in cfg.attributes.items():
            if key not in names:
                warnings.append(f"{cfg.path}: unknown LU attribute {key!r} ignored")
                continue
            try:
                ivalue = int(value)
            except (TypeError, ValueError):
                warnings.append(f"{cfg.path}: attribute {key}={value!r} is not an integer; ignored")
                continue
            if ivalue < 0:
                warnings.append(f"{cfg.path}: attribute {key}={value!r} is negative; ignored")
                continue
            if key == "block_size" and ivalue != bs:
                warnings.append(f"{cfg.path}: block_size {ivalue} differs from the backstore's {bs}; ignored")
                continue
            setattr(attrs, key, ivalue)
        if cfg.physical_block_size:
            attrs.hw_block_size = cfg.physical_block_size
        elif attrs.hw_block_size != bs and not _valid_physical(attrs.hw_block_size, bs):
            warnings.append(
                f"{cfg.path}: hw_block_size {attrs.hw_block_size} is not a power-of-two multiple of the block "
                f"size {bs}; ignored"
            )
            attrs.hw_block_size = bs
        if attrs.emulate_tpu or attrs.emulate_tpws:
            # UNMAP needs limits a client can use (SBC-3 6.6.4)
            attrs.max_unmap_lba_count = attrs.max_unmap_lba_count or 0x40000
            attrs.max_unmap_block_desc_count = attrs.max_unmap_block_desc_count or 64
            # OPTIMAL UNMAP GRANULARITY: a physical block unless configured (SBC-3 6.5.3, 4.7.3.4)
            attrs.unmap_granularity = attrs.unmap_granularity or max(1, attrs.hw_block_size // bs)
        return attrs, warnings


def _valid_physical(pbs: int, bs: int) -> bool:
    return (
        pbs >= bs and pbs % bs == 0 and (pbs // bs) & (pbs // bs - 1) == 0 and pbs // bs <= 1 << _MAX_LBPPBE
    )


def derive_serial(cfg: StorageObjectConfig) -> str:
    """VPD 80h unit serial: the configured WWN, else a UUID derived stably from the storage object's path."""
    if cfg.wwn:
        return cfg.wwn
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sanlab:{cfg.path}"))


def naa_designator(serial: str, company_id: int = COMPANY_ID) -> bytes:
    """16-byte NAA IEEE Registered Extended designator (SPC-4 7.8.6.6.5): NAA 6h, the 24-bit company id, then
    the vendor specific identifier and extension filled from the serial's hex digits, the way LIO does it
    (spc_parse_naa_6h_vendor_specific), so an LU keeps the same NAA as under LIO for the same serial."""
    buf = bytearray(16)
    buf[0] = 0x60 | ((company_id >> 20) & 0x0F)
    buf[1] = (company_id >> 12) & 0xFF
    buf[2] = (company_id >> 4) & 0xFF
    buf[3] = (company_id & 0x0F) << 4
    pos = 3
    high = False  # the first digit fills the low nibble of byte 3
    for ch in serial:
        try:
            val = int(ch, 16)
        except ValueError:
            continue
        if not high:
            buf[pos] |= val
            pos += 1
            if pos >= 16:
                break
            high = True
        else:
            buf[pos] = val << 4
            high = False
    return bytes(buf)


class AluaProvider(Protocol):
    """Hook for the ALUA work: the access state of the target port group a nexus reaches the LU through."""

    def access_state(self, nexus: Nexus) -> AluaState: ...

    def admitted(
        self, nexus: Nexus, state: AluaState, alua_class: AluaClass, spec: Any | None = None
    ) -> float:
        """The command passed the gate: count it; returns seconds to wait first (non-optimized delay)."""
        ...

    def direct_group(self, nexus: Nexus) -> Any | None:
        """The nexus' port group (with a `media_commands` counter) when a media access through it needs nothing
        but counting, else None (target.scsi.sbc.direct)."""
        ...


class LogicalUnit:
    def __init__(
        self,
        backstore: Backstore,
        config: StorageObjectConfig,
        *,
        table: OpcodeTable | None = None,
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> None:
        self.backstore = backstore
        self.config = config
        self.name = config.path
        self.attrs, self.warnings = LuAttributes.from_config(config, backstore)
        #: the same attributes as a dict (what the SBC helpers read); change them with set_attribute()
        self.attributes: dict[str, int] = self._attribute_dict()
        self.serial = derive_serial(config)
        self.naa = naa_designator(self.serial)
        self.vendor = VENDOR
        self.product = PRODUCTS.get(config.plugin, config.plugin.upper())[:16]
        self.revision = REVISION
        self.table = table if table is not None else _default_table()
        self.read_only = bool(config.readonly)
        # --- state changed by MODE SELECT (see target.scsi.spc.mode) ---
        self.write_cache_enabled = bool(self.attrs.emulate_write_cache)  # caching page WCE
        self.d_sense = False  # control page D_SENSE
        self.tas = bool(self.attrs.emulate_tas)  # control page TAS
        self.qerr = 0  # control page QErr (00b, 01b or 11b)
        # --- TPGS field of standard INQUIRY and the ALUA hook (the ALUA work sets both) ---
        self.tpgs = 0
        self.alua: AluaProvider | None = None
        self.ua = UnitAttentions()
        self.task_set = TaskSet(max_tasks=max_tasks)
        self.reservations = Reservations()
        self.aca = AcaCondition()
        #: extra reset hooks of this LU only (the module-level ones run for every LU)
        self.reset_hooks: list[ResetHook] = []
        self._lost: OrderedDict[Nexus, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"LogicalUnit({self.name!r})"

    def _attribute_dict(self) -> dict[str, int]:
        d = dataclasses.asdict(self.attrs)
        # the native format's physical_block_size, else LIO's hw_block_size attribute (validated in from_config)
        d["physical_block_size"] = self.config.physical_block_size or self.attrs.hw_block_size
        return d

    def set_attribute(self, name: str, value: int) -> None:
        """Change one LU attribute at run time (management API)."""
        if not any(f.name == name for f in dataclasses.fields(LuAttributes)) or name == "block_size":
            raise KeyError(name)
        if name == "hw_block_size" and not _valid_physical(int(value), self.block_size):
            raise ValueError(f"hw_block_size {value} is not a power-of-two multiple of {self.block_size}")
        setattr(self.attrs, name, int(value))
        self.attributes = self._attribute_dict()
        if name == "emulate_write_cache":
            self.write_cache_enabled = bool(value)
        elif name == "emulate_tas":
            self.tas = bool(value)

    # --- geometry -------------------------------------------------------------------------------------------

    @property
    def block_size(self) -> int:
        return self.backstore.block_size

    @property
    def num_blocks(self) -> int:
        return self.backstore.size // self.backstore.block_size

    def designators(self) -> list[bytes]:
        """Designators that identify this LU (for EXTENDED COPY's identification descriptors)."""
        return [self.naa]

    # --- nexus lifecycle ------------------------------------------------------------------------------------

    def nexus_created(self, nexus: Nexus) -> None:
        self.ua.register(nexus)
        if nexus in self._lost:
            # SAM-5 6.3.4: the I_T nexus loss is reported when the nexus is back
            del self._lost[nexus]
            self.ua.establish(Asc.I_T_NEXUS_LOSS_OCCURRED, only=(nexus,))

    async def nexus_gone(self, nexus: Nexus) -> None:
        """I_T nexus loss (SAM-5 6.3.4): abort its tasks silently, release its SPC-2 reservation, clear the ACA
        it faulted (SAM-5 5.9.5), drop its medium removal prevention and held copy results (reset hooks)."""
        if len(self.task_set):  # (a logout from a target with many idle LUs: most have no task at all)
            await self.task_set.abort_task_set(nexus)
        self.reservations.nexus_lost(nexus)
        if self.aca.faulted == nexus:
            self._clear_aca()
        self._run_reset_hooks(nexus)
        self.ua.forget(nexus)
        self._lost[nexus] = None
        while len(self._lost) > MAX_LOST_NEXUSES:
            self._lost.popitem(last=False)

    def capacity_changed(self, exclude: Nexus | None = None) -> None:
        self.ua.establish(Asc.CAPACITY_DATA_HAS_CHANGED, exclude=exclude)

    # --- task management ------------------------------------------------------------------------------------

    async def abort_task(self, nexus: Nexus, tag: int) -> TmfResult:
        return await self.task_set.abort_task(nexus, tag)

    async def abort_task_set(self, nexus: Nexus) -> TmfResult:
        await self.task_set.abort_task_set(nexus)
        return TmfResult.FUNCTION_COMPLETE

    async def clear_task_set(self, nexus: Nexus) -> TmfResult:
        """CLEAR TASK SET (SAM-5 7.4): all tasks of all nexuses; other nexuses get TASK ABORTED (TAS=1) or the
        unit attention COMMANDS CLEARED BY ANOTHER INITIATOR (TAS=0)."""
        victims = await self.task_set.abort_all(nexus, tas=self.tas)
        if not self.tas:
            others = {t.nexus for t in victims if t.nexus != nexus}
            self.ua.establish(Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR, only=others)
        return TmfResult.FUNCTION_COMPLETE

    async def reset(
        self, nexus: Nexus | None, asc: Asc = Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED
    ) -> TmfResult:
        """LOGICAL UNIT RESET (SAM-5 6.3.3, 7.10): abort every task (TAS decides what other nexuses see), release
        the SPC-2 reservation, establish `asc` for every I_T nexus, the requester's included (SAM-5 6.3.3: the
        reset is reported on every path; libiscsi's MultipathIO.Reset checks it on each). TARGET RESET uses it
        with 29/02 or 29/01.
        """
        await self.task_set.abort_all(nexus, tas=self.tas)
        self.reservations.clear_spc2()
        self._clear_aca()  # SAM-5 5.9.5
        self._run_reset_hooks(None)
        self.ua.establish(asc)
        return TmfResult.FUNCTION_COMPLETE

    async def clear_aca(self, nexus: Nexus) -> TmfResult:
        """CLEAR ACA (SAM-5 7.3): from the faulted I_T nexus, abort the ACA task (if any) and clear the condition
        so blocked tasks resume; from another nexus while ACA is active, FUNCTION REJECTED; with no ACA, nothing
        to do (FUNCTION COMPLETE)."""
        faulted = self.aca.faulted
        if faulted is None:
            return TmfResult.FUNCTION_COMPLETE
        if faulted != nexus:
            return TmfResult.FUNCTION_REJECTED
        await self.task_set.abort(lambda t: t.attr is TaskAttr.ACA, issuer=nexus, tas=False)
        self._clear_aca()
        return TmfResult.FUNCTION_COMPLETE

    def _establish_aca(self, nexus: Nexus) -> None:
        self.aca.establish(nexus)
        self.task_set.blocked = True

    def _clear_aca(self) -> None:
        self.aca.clear()
        self.task_set.blocked = False

    def _run_reset_hooks(self, nexus: Nexus | None) -> None:
        for hook in (*_RESET_HOOKS, *self.reset_hooks):
            try:
                hook(self, nexus)
            except Exception:
                log.exception("%s: reset hook %r failed", self.name, hook)

    # --- command execution ----------------------------------------------------------------------------------

    async def execute(
        self, request: ScsiRequest, *, read_only: bool = False, registry: LuRegistry | None = None
    ) -> ScsiResult:
        """Run one command (see the module docstring). Raises TaskAborted when it must get no response."""
        self.ua.register(request.nexus)
        try:
            # the task-set scan for an ACA task only matters while an ACA condition is established
            aca_task = self.aca.faulted is not None and self.task_set.has_aca_task()
            refused = self.aca.admit(request.nexus, request.attr, aca_task)
            if refused is not None:
                return refused
            return await self.task_set.run(
                request.nexus, request.tag, request.attr, lambda: self._process(request, read_only, registry)
            )
        except CheckCondition as cc:  # admission (overlapped command, ACA attribute without ACA)
            if naca(request.cdb):
                self._establish_aca(request.nexus)
            return cc.result(descriptor=self.d_sense)
        except StatusError as se:  # admission (task set full)
            return se.result()

    async def _process(
        self, request: ScsiRequest, read_only: bool, registry: LuRegistry | None
    ) -> ScsiResult:
        spec = None
        try:
            parse_error: CheckCondition | None = None
            try:
                spec = self.table.lookup(request.cdb, self)
            except CheckCondition as cc:
                parse_error = cc
            nexus = request.nexus
            if (spec is None or not spec.ua_exempt) and self.ua.has_pending(nexus):
                ua = self.ua.take(nexus)
                assert ua is not None
                raise CheckCondition(SenseKey.UNIT_ATTENTION, ua)
            if parse_error is not None:
                raise parse_error
            assert spec is not None
            if self.alua is not None:
                state = self.alua.access_state(nexus)
                if not spec.alua_class.allowed(state):
                    raise CheckCondition(SenseKey.NOT_READY, state.not_ready_asc)
                delay = self.alua.admitted(nexus, state, spec.alua_class, spec)
                if delay > 0:
                    await asyncio.sleep(delay)  # LIO nonop_delay_msecs on an active/non-optimized port
            self.reservations.check(spec, nexus, request.cdb)
            ro = read_only or self.read_only
            if ro and spec.medium_write:
                raise CheckCondition.write_protected()
            ctx = CommandContext(request=request, lu=self, spec=spec, read_only=ro, registry=registry)
            result = await spec.handler(ctx)
        except CheckCondition as cc:
            result = cc.result(descriptor=self.d_sense)
        except StatusError as se:
            result = se.result()
        except BackstoreError as exc:
            log.warning("%s: backstore error on %s: %s", self.name, spec.name if spec else "?", exc)
            writing = spec is not None and spec.direction is Direction.OUT
            asc = Asc.WRITE_ERROR if writing else Asc.UNRECOVERED_READ_ERROR
            result = CheckCondition(SenseKey.MEDIUM_ERROR, asc).result(descriptor=self.d_sense)
        except (TaskAborted, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            log.exception("%s: internal error in %s", self.name, spec.name if spec else "CDB parse")
            result = CheckCondition(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE).result(
                descriptor=self.d_sense
            )
        if result.status is ScsiStatus.CHECK_CONDITION:
            if naca(request.cdb):
                # SAM-5 5.9.1: established before this task leaves the set, so no blocked task is enabled
                self._establish_aca(request.nexus)
            if self.qerr in (1, 3):
                await self._qerr_abort(request.nexus, request.tag)
        return result

    async def _qerr_abort(self, nexus: Nexus, tag: int) -> None:
        """QErr 01b: a CHECK CONDITION aborts every other task; 11b: every other task of the same nexus
        (SPC-4 7.5.8 control mode page)."""
        me = self.task_set.find(nexus, tag)
        if self.qerr == 1:
            victims = await self.task_set.abort(lambda t: t is not me, issuer=nexus, tas=self.tas)
            if not self.tas:
                others = {t.nexus for t in victims if t.nexus != nexus}
                self.ua.establish(Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR, only=others)
        else:
            await self.task_set.abort(lambda t: t is not me and t.nexus == nexus, issuer=nexus, tas=False)


class LuRegistry:
    """All logical units of the process, by storage object path ("plugin/name")."""

    def __init__(self) -> None:
        self._lus: dict[str, LogicalUnit] = {}

    def add(self, lu: LogicalUnit) -> None:
        if lu.name in self._lus:
            raise ValueError(f"duplicate logical unit {lu.name}")
        self._lus[lu.name] = lu

    def remove(self, name: str) -> LogicalUnit | None:
        return self._lus.pop(name, None)

    def get(self, name: str) -> LogicalUnit | None:
        return self._lus.get(name)

    def __iter__(self) -> Iterator[LogicalUnit]:
        return iter(list(self._lus.values()))

    def __len__(self) -> int:
        return len(self._lus)

    def find_by_designator(self, designator: bytes) -> LogicalUnit | None:
        """The LU with this designator: the designator field itself (e.g. the 16-byte NAA), or a whole
        designation descriptor (4-byte header + designator) as EXTENDED COPY's identification descriptor holds."""
        d = bytes(designator)
        candidates = [d]
        if len(d) > 4 and d[3] == len(d) - 4:
            candidates.append(d[4:])
        for lu in self._lus.values():
            for own in lu.designators():
                if own in candidates:
                    return lu
        return None


_TABLE: OpcodeTable | None = None


def _default_table() -> OpcodeTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = OpcodeTable.standard()
    return _TABLE
