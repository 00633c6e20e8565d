"""What a command handler gets: the logical unit, the request, the parsed spec, and small helpers.

A handler is `async def handler(ctx: CommandContext) -> ScsiResult`. Typical use:

    async def read_capacity_10(ctx: CommandContext) -> ScsiResult:
        lu = ctx.lu
        data = (lu.num_blocks - 1).to_bytes(4, "big") + lu.block_size.to_bytes(4, "big")
        return ctx.respond(data)            # truncated to the ALLOCATION LENGTH if the spec declares one

    async def unmap(ctx: CommandContext) -> ScsiResult:
        params = ctx.parameters()           # Data-Out, limited to the PARAMETER LIST LENGTH
        if len(params) < 8:
            ctx.invalid_param(0)            # raises CheckCondition with a field pointer

Handlers raise `CheckCondition` (or `StatusError`) for failures; the device encodes the sense in the format the
control mode page selects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from target.scsi.command import Nexus, ScsiRequest, ScsiResult, ScsiStatus
from target.scsi.sense import Asc, CheckCondition, SenseKey

if TYPE_CHECKING:
    from target.scsi.device import LogicalUnit, LuRegistry
    from target.scsi.opcodes import CommandSpec


@dataclass
class CommandContext:
    request: ScsiRequest
    lu: LogicalUnit
    spec: CommandSpec
    #: the LUN is write-protected for this initiator (mapped LUN write_protect, or a read-only storage object)
    read_only: bool = False
    #: all logical units of the process (EXTENDED COPY finds copy targets by designator); None in unit tests
    registry: LuRegistry | None = None

    # --- the request ---------------------------------------------------------------------------------------

    @property
    def cdb(self) -> bytes:
        return self.request.cdb

    @property
    def nexus(self) -> Nexus:
        return self.request.nexus

    @property
    def data_out(self) -> bytes | bytearray | memoryview:
        return self.request.data_out

    @property
    def block_size(self) -> int:
        return self.lu.block_size

    def cdb_int(self, offset: int, width: int) -> int:
        """A big-endian unsigned field of the CDB."""
        return int.from_bytes(self.request.cdb[offset : offset + width], "big")

    @property
    def allocation_length(self) -> int:
        """The ALLOCATION LENGTH field (0 when the command has none)."""
        return self.spec.field(self.request.cdb, self.spec.alloc_len)

    @property
    def parameter_list_length(self) -> int:
        """The PARAMETER LIST LENGTH field; for commands without one, the Data-Out length."""
        if self.spec.param_len is None:
            return len(self.request.data_out)
        return self.spec.field(self.request.cdb, self.spec.param_len)

    def parameters(self) -> bytes:
        """The parameter list: Data-Out limited to the PARAMETER LIST LENGTH. Raises PARAMETER LIST LENGTH ERROR
        when the initiator sent less than the CDB announces (the transport gathers at most EDTL bytes)."""
        n = self.parameter_list_length
        data = self.request.data_out
        if len(data) < n:
            raise CheckCondition.param_list_length_error()
        return bytes(data[:n])

    # --- results -------------------------------------------------------------------------------------------

    def respond(self, data: bytes | bytearray | memoryview) -> ScsiResult:
        """GOOD with Data-In, truncated to the ALLOCATION LENGTH when the spec has one (SPC-4 4.2.5.6)."""
        if self.spec.alloc_len is not None:
            data = data[: self.allocation_length]
        return ScsiResult(status=ScsiStatus.GOOD, data_in=data)

    @staticmethod
    def good() -> ScsiResult:
        return ScsiResult(status=ScsiStatus.GOOD)

    # --- failures (each raises CheckCondition) ---------------------------------------------------------------

    @staticmethod
    def invalid_cdb(byte: int, bit: int | None = None) -> NoReturn:
        raise CheckCondition.invalid_cdb(byte, bit)

    @staticmethod
    def invalid_param(byte: int, bit: int | None = None) -> NoReturn:
        raise CheckCondition.invalid_param(byte, bit)

    @staticmethod
    def fail(key: SenseKey, asc: Asc, *, information: int | None = None) -> NoReturn:
        raise CheckCondition(key, asc, information=information)

    @property
    def descriptor_sense(self) -> bool:
        """D_SENSE of the control mode page: descriptor-format sense wanted."""
        return self.lu.d_sense
