"""What the transport hands the SCSI layer, and what it gets back (SAM-5 "Execute Command" procedure call).

The iSCSI layer builds a `ScsiRequest` once all of a command's Data-Out has arrived, awaits
`target.scsi.dispatch.Dispatcher.execute(request)` and turns the `ScsiResult` into Data-In / SCSI Response PDUs.
Transport-independent: nothing here knows about PDUs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ScsiStatus(enum.IntEnum):
    """SAM-5 5.3."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class TaskAttr(enum.IntEnum):
    """SAM-5 8.6 task attributes (same values as the iSCSI ATTR field)."""

    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


@dataclass(frozen=True, slots=True)
class Nexus:
    """An I_T nexus (SAM-5 4.7): the SCSI initiator port and the SCSI target port.

    For iSCSI (RFC 7143 10.1 / SPC-4 TransportID): initiator port name is "<iname>,i,0x<isid 12 hex>",
    target port name is "<tname>,t,0x<tpgt 4 hex>". `relative_port_id` is the target port's relative
    port identifier (VPD 83h); `tpg_tag` the iSCSI target portal group tag.
    """

    initiator_name: str
    isid: int
    target_name: str
    tpg_tag: int
    relative_port_id: int = 1
    # The nexus is a dict key on the per-command path (task set, unit attentions, ALUA group cache): its hash
    # is computed once, and comparing a nexus with itself (the session reuses one object) is an identity check.
    _hash: int = field(init=False, repr=False, compare=False, hash=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_hash",
            hash((self.initiator_name, self.isid, self.target_name, self.tpg_tag, self.relative_port_id)),
        )

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not Nexus:
            return NotImplemented
        assert isinstance(other, Nexus)
        return (
            self._hash == other._hash
            and self.initiator_name == other.initiator_name
            and self.isid == other.isid
            and self.target_name == other.target_name
            and self.tpg_tag == other.tpg_tag
            and self.relative_port_id == other.relative_port_id
        )

    @property
    def initiator_port(self) -> str:
        return f"{self.initiator_name},i,0x{self.isid:012x}"

    @property
    def target_port(self) -> str:
        return f"{self.target_name},t,0x{self.tpg_tag:04x}"


@dataclass(slots=True)
class ScsiRequest:
    nexus: Nexus
    lun: int  # the LUN number as addressed (decoded from the 8-byte LUN field)
    cdb: bytes
    tag: int  # task tag (iSCSI ITT), unique per nexus while the task is outstanding
    attr: TaskAttr = TaskAttr.SIMPLE
    data_out: bytes | bytearray | memoryview = b""  # all write data, already gathered
    expected_in_length: int = 0  # how much Data-In the initiator accepts (EDTL of a read)
    expected_out_length: int = 0  # EDTL of a write (for residual computation)
    # transport-specific: for REPORT LUNS and for LUN-level access (set by the transport from the ACL)
    lun_map: dict[int, LunAccess] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LunAccess:
    """How one LUN is visible to an initiator: which logical unit, and whether it is write-protected."""

    lu: object  # target.scsi.device.LogicalUnit (kept untyped here to avoid an import cycle)
    read_only: bool = False


@dataclass(slots=True)
class ScsiResult:
    status: ScsiStatus = ScsiStatus.GOOD
    data_in: bytes | bytearray | memoryview = b""
    sense: bytes = b""  # sense data (fixed or descriptor format) for CHECK CONDITION
    # residuals are computed by the transport from data_in length vs expected lengths, except when
    # the command itself transferred less data-out than sent (then the handler sets it)
    out_residual: int = 0
    # Data-Out the command's transfer length asked for beyond the EDTL (a write overflow, RFC 7143 11.4.5.1
    # O bit); set by the handler because only it knows the SCSI transfer length. 0 = none.
    out_overflow: int = 0
