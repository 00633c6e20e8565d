"""REPORT LUNS (SPC-4 6.33): the LUN inventory of the I_T nexus, from the transport's `request.lun_map`.

SELECT REPORT 00h and 02h list every mapped LUN (no well-known LUNs exist here), 01h lists well-known LUNs (none),
10h-12h concern administrative logical units (none: an empty list). With nothing mapped, LUN 0 is reported (as
LIO does; SPC-4 requires LUN 0 to be accessible). LUNs are encoded by `target.pdu.lun` (peripheral addressing
below 256, flat space above). REPORT LUNS also clears REPORTED LUNS DATA HAS CHANGED for the nexus on every
LU it reaches (SPC-4 5.11 / 6.33).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from target.pdu.lun import MAX_LUN, lun_bytes
from target.scsi.command import LunAccess, Nexus, ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.opcodes import CommandSpec, Direction, usage
from target.scsi.sense import Asc, CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

_SELECT_ALL = (0x00, 0x02)
_SELECT_EMPTY = (0x01, 0x10, 0x11, 0x12)


def report_luns_data(cdb: bytes, lun_map: Mapping[int, LunAccess], nexus: Nexus | None = None) -> bytes:
    """The REPORT LUNS parameter data (truncated to the allocation length); clears the LUNs-changed UA."""
    if len(cdb) < 12:
        raise CheckCondition.invalid_cdb(0)
    select = cdb[2]
    alloc = int.from_bytes(cdb[6:10], "big")
    if select in _SELECT_ALL:
        luns = sorted(n for n in lun_map if 0 <= n <= MAX_LUN) or [0]
    elif select in _SELECT_EMPTY:
        luns = []
    else:
        raise CheckCondition.invalid_cdb(2)
    if nexus is not None:
        for access in lun_map.values():
            ua = getattr(access.lu, "ua", None)
            if ua is not None:
                ua.clear(nexus, Asc.REPORTED_LUNS_DATA_HAS_CHANGED)
    # only build what the initiator can take (thousands of LUNs are fine either way)
    room = max(0, (alloc - 8) // 8 + 1) if alloc > 8 else 0
    body = b"".join(lun_bytes(n) for n in luns[:room])
    data = (8 * len(luns)).to_bytes(4, "big") + bytes(4) + body
    return data[:alloc]


async def report_luns(ctx: CommandContext) -> ScsiResult:
    return ScsiResult(data_in=report_luns_data(ctx.cdb, ctx.request.lun_map, ctx.nexus))


COMMANDS = [
    CommandSpec(
        opcode=0xA0,
        name="REPORT LUNS",
        cdb_length=12,
        usage=usage(0xA0, 0x00, 0xFF, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00),
        handler=report_luns,
        direction=Direction.IN,
        ua_exempt=True,
        pr_class=PrClass.ALLOWED,
        alua_class=AluaClass.ANY,
        spc2_allowed=True,
        alloc_len=(6, 4),
    )
]
