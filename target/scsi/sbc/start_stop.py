"""START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL: SBC-3 5.25, SPC-4 6.13.

Our logical units are not removable (INQUIRY RMB=0) and always ready, so START STOP UNIT changes no state: a
valid POWER CONDITION is accepted as a no-op, START=0 without NO_FLUSH synchronizes the cache first (SBC-3
5.25: a stopping device server writes its cache to the medium), and LOEJ=1 while an I_T nexus prevents medium
removal fails with MEDIUM REMOVAL PREVENTED. PREVENT ALLOW MEDIUM REMOVAL records the prevention per I_T
nexus; `clear_prevention(lu)` (LU reset, I_T nexus loss) undoes it.
"""

from __future__ import annotations

import enum
import weakref
from typing import TYPE_CHECKING, Any

from target.backstore.base import Backstore
from target.scsi.command import Nexus, ScsiResult, ScsiStatus
from target.scsi.gates import PrClass
from target.scsi.opcodes import CommandSpec
from target.scsi.sbc import common
from target.scsi.sense import CheckCondition, SenseKey

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

START_STOP_UNIT = 0x1B
PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
#: ILLEGAL REQUEST / MEDIUM REMOVAL PREVENTED (SPC-4 table 28: 53h/02h)
ASC_MEDIUM_REMOVAL_PREVENTED = 0x5302


class PowerCondition(enum.IntEnum):
    """POWER CONDITION field of START STOP UNIT (SBC-3 5.25, table 89)."""

    START_VALID = 0x0
    ACTIVE = 0x1
    IDLE = 0x2
    STANDBY = 0x3
    LU_CONTROL = 0x7
    FORCE_IDLE_0 = 0xA
    FORCE_STANDBY_0 = 0xB


_PREVENT: weakref.WeakKeyDictionary[Backstore, set[Nexus]] = weakref.WeakKeyDictionary()


def _preventers(lu: Any) -> set[Nexus]:
    bs = common.backstore(lu)
    s = _PREVENT.get(bs)
    if s is None:
        s = _PREVENT[bs] = set()
    return s


def removal_prevented(lu: Any) -> bool:
    return bool(_preventers(lu))


def clear_prevention(lu: Any, nexus: Nexus | None = None) -> None:
    """Forget prevention by one I_T nexus (nexus loss) or by all (LU reset, power on)."""
    if nexus is None:
        _preventers(lu).clear()
    else:
        _preventers(lu).discard(nexus)


async def start_stop_unit(ctx: CommandContext) -> ScsiResult:
    cdb = ctx.cdb
    power_condition = cdb[4] >> 4
    if power_condition not in PowerCondition._value2member_map_:
        raise CheckCondition.invalid_cdb(4, 7)
    if power_condition != PowerCondition.START_VALID:
        # SBC-3 5.25: with a POWER CONDITION other than 0 the START and LOEJ bits are ignored
        return ScsiResult(status=ScsiStatus.GOOD)
    start = bool(cdb[4] & 0x01)
    loej = bool(cdb[4] & 0x02)
    no_flush = bool(cdb[4] & 0x04)
    if loej and not start and removal_prevented(ctx.lu):
        raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC_MEDIUM_REMOVAL_PREVENTED)
    if not start and not no_flush:
        await common.medium_flush(ctx.lu)
    return ScsiResult(status=ScsiStatus.GOOD)


async def prevent_allow_medium_removal(ctx: CommandContext) -> ScsiResult:
    prevent = ctx.cdb[4] & 0x03
    if prevent == 0b00:
        _preventers(ctx.lu).discard(ctx.nexus)
    elif prevent == 0b01:
        _preventers(ctx.lu).add(ctx.nexus)
    else:  # 10b/11b: medium changer values, obsolete for block devices
        raise CheckCondition.invalid_cdb(4, 1)
    return ScsiResult(status=ScsiStatus.GOOD)


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        opcode=START_STOP_UNIT,
        name="START STOP UNIT",
        cdb_length=6,
        # byte 1: IMMED; byte 3: POWER CONDITION MODIFIER; byte 4: POWER CONDITION, NO_FLUSH, LOEJ, START
        usage=bytes((0x1B, 0x01, 0x00, 0x0F, 0xF7, 0x00)),
        handler=start_stop_unit,
        # SBC-3 table 13 lets START=1 through and conflicts the rest; stopping changes nothing here
        pr_class=PrClass.ALLOWED,
    ),
    CommandSpec(
        opcode=PREVENT_ALLOW_MEDIUM_REMOVAL,
        name="PREVENT ALLOW MEDIUM REMOVAL",
        cdb_length=6,
        usage=bytes((0x1E, 0x00, 0x00, 0x00, 0x03, 0x00)),
        handler=prevent_allow_medium_removal,
        pr_class=PrClass.ALLOWED,
    ),
]
