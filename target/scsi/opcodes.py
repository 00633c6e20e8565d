"""The opcode table: one `CommandSpec` per (operation code, service action), with everything the device needs to
parse a CDB and run the gates before the handler (LIO's "parse first, execute later", `sbc_parse_cdb`).

Theory of operation: `OpcodeTable.lookup(cdb)` finds the spec (unknown opcode -> ILLEGAL REQUEST / INVALID COMMAND
OPERATION CODE; known opcode with an unknown service action -> INVALID FIELD IN CDB at byte 1), then
`CommandSpec.check_cdb(cdb)` rejects any set bit the CDB usage data does not allow, with a field pointer to it
(SPC-4 6.35.3: the usage data is exactly what REPORT SUPPORTED OPERATION CODES returns, so what we accept and what
we report cannot drift apart). The gates (unit attention, write protect, reservations, ALUA) read the spec's flags
and classes; then the handler runs:

    async def handler(ctx: CommandContext) -> ScsiResult

SPC handlers live in `target.scsi.spc` (`SPC_COMMANDS`), SBC handlers in `target.scsi.sbc` (`SBC_COMMANDS`).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target.scsi.command import ScsiResult
from target.scsi.gates import AluaClass, PrClass
from target.scsi.sense import CheckCondition

if TYPE_CHECKING:
    from target.scsi.context import CommandContext

Handler = Callable[["CommandContext"], Awaitable[ScsiResult]]

#: opcodes that carry a service action in CDB byte 1, bits 4-0 (SPC-4 4.2.5.1)
SERVICE_ACTION_IN_BYTE1 = frozenset({0x48, 0x5E, 0x5F, 0x83, 0x84, 0x8C, 0x8D, 0x9E, 0x9F, 0xA3, 0xA4})
#: variable-length CDB (SPC-4 4.2.5.2): service action in bytes 8-9
VARIABLE_LENGTH_OPCODE = 0x7F
#: the NACA bit of the CONTROL byte (SAM-5 5.2): every command accepts it (ACA is supported, target.scsi.aca)
CONTROL_NACA = 0x04


class Direction(enum.Enum):
    """Data transfer direction, from the initiator's point of view."""

    NONE = "none"
    IN = "in"  # device -> initiator (Data-In, a read)
    OUT = "out"  # initiator -> device (Data-Out, a write)
    BIDI = "bidi"


def cdb_length_for(opcode: int) -> int:
    """CDB length implied by the operation code's group code (SPC-4 4.2.5.1, table 8); 0 when variable/vendor."""
    group = opcode >> 5
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(group, 0)


def service_action_of(cdb: bytes | bytearray | memoryview) -> int | None:
    """The SERVICE ACTION field of a CDB whose opcode has one, else None."""
    op = cdb[0]
    if op in SERVICE_ACTION_IN_BYTE1:
        return cdb[1] & 0x1F if len(cdb) > 1 else 0
    if op == VARIABLE_LENGTH_OPCODE:
        return int.from_bytes(cdb[8:10], "big") if len(cdb) >= 10 else 0
    return None


@dataclass(frozen=True)
class CommandSpec:
    """Everything static about one command. `usage` is the CDB usage data (SPC-4 6.35.3): byte 0 the opcode,
    the SERVICE ACTION bits holding the service action, every other bit set where the CDB may have a one.
    The NACA bit of the CONTROL byte is added to every command's usage data (SAM-5 5.9: ACA is supported)."""

    opcode: int
    name: str
    cdb_length: int
    usage: bytes
    handler: Handler
    direction: Direction = Direction.NONE
    service_action: int | None = None
    #: seconds, for the RSOC command timeouts descriptor (SPC-4 6.35.4); 0 = not specified
    nominal_timeout: int = 0
    recommended_timeout: int = 0
    #: processed while a unit attention is pending, without reporting it (SPC-4 5.11: INQUIRY, REPORT LUNS,
    #: REQUEST SENSE; REQUEST SENSE then reports the UA itself)
    ua_exempt: bool = False
    #: modifies the medium (or its mapping): rejected with DATA PROTECT / WRITE PROTECTED on a read-only LUN
    medium_write: bool = False
    #: persistent reservation conflict class (SPC-4 5.13.1 table 62, SBC-3 4.17.1 table 13)
    pr_class: PrClass = PrClass.WRITE
    #: target port asymmetric access states in which the command is processed (SPC-4 5.15.2.4)
    alua_class: AluaClass = AluaClass.ACTIVE_ONLY
    #: processed despite an SPC-2 RESERVE held by another I_T nexus (SPC-2 5.5.1: INQUIRY, REQUEST SENSE,
    #: REPORT LUNS, RELEASE, ...)
    spc2_allowed: bool = False
    #: (byte offset, width) of the ALLOCATION LENGTH field: `ctx.respond()` truncates Data-In to it
    alloc_len: tuple[int, int] | None = None
    #: (byte offset, width) of the PARAMETER LIST LENGTH field: `ctx.parameters()` reads that much Data-Out
    param_len: tuple[int, int] | None = None
    #: whether the LU supports the command now (e.g. UNMAP only with emulate_tpu); called with the LogicalUnit.
    #: A disabled command is answered like an unknown opcode and not listed by REPORT SUPPORTED OPERATION CODES.
    enabled: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if len(self.usage) != self.cdb_length:
            raise ValueError(f"{self.name}: usage data is {len(self.usage)} bytes, CDB is {self.cdb_length}")
        if self.usage[0] != self.opcode:
            raise ValueError(f"{self.name}: usage data byte 0 must be the opcode")
        sa_byte1 = self.service_action is not None and self.opcode in SERVICE_ACTION_IN_BYTE1
        if sa_byte1 and self.usage[1] & 0x1F != self.service_action:
            raise ValueError(f"{self.name}: usage data byte 1 must hold the service action")
        control = 1 if self.opcode == VARIABLE_LENGTH_OPCODE else self.cdb_length - 1
        if control > 0 and not self.usage[control] & CONTROL_NACA:
            with_naca = bytearray(self.usage)
            with_naca[control] |= CONTROL_NACA
            object.__setattr__(self, "usage", bytes(with_naca))

    @property
    def key(self) -> tuple[int, int | None]:
        return (self.opcode, self.service_action)

    def is_enabled(self, lu: Any) -> bool:
        return self.enabled is None or bool(self.enabled(lu))

    def check_cdb(self, cdb: bytes | bytearray | memoryview) -> None:
        """Reject a short CDB or a bit set outside the usage data (ILLEGAL REQUEST / INVALID FIELD IN CDB,
        field pointer to the most significant offending bit). The CONTROL byte is checked like any other; its
        NACA bit is in every command's usage data (see the class docstring)."""
        if len(cdb) < self.cdb_length:
            raise CheckCondition.invalid_cdb(len(cdb) if cdb else 0)
        for i in range(1, self.cdb_length):
            bad = cdb[i] & ~self.usage[i] & 0xFF
            if bad:
                raise CheckCondition.invalid_cdb(i, bad.bit_length() - 1)

    def field(self, cdb: bytes | bytearray | memoryview, where: tuple[int, int] | None) -> int:
        if where is None:
            return 0
        off, width = where
        return int.from_bytes(cdb[off : off + width], "big")


def usage(*octets: int) -> bytes:
    """Build CDB usage data from octets (a readability helper for spec tables)."""
    return bytes(octets)


class OpcodeTable:
    """All commands a logical unit understands, keyed by (opcode, service action)."""

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self._specs: dict[tuple[int, int | None], CommandSpec] = {}
        self._sa_opcodes: set[int] = set()
        for spec in specs:
            if spec.key in self._specs:
                raise ValueError(f"duplicate command {spec.name} ({spec.opcode:#04x}/{spec.service_action})")
            if spec.service_action is None and spec.opcode in self._sa_opcodes:
                raise ValueError(f"{spec.name}: opcode {spec.opcode:#04x} has service actions")
            if spec.service_action is not None:
                if (spec.opcode, None) in self._specs:
                    raise ValueError(f"{spec.name}: opcode {spec.opcode:#04x} has no service actions")
                self._sa_opcodes.add(spec.opcode)
            self._specs[spec.key] = spec

    @classmethod
    def standard(cls) -> OpcodeTable:
        """SPC commands plus whatever SBC commands the sbc package contributes."""
        from target.scsi.spc import SPC_COMMANDS

        specs = list(SPC_COMMANDS)
        try:
            from target.scsi import sbc
        except ImportError:  # the sbc package is optional for SPC-only tests
            pass
        else:
            specs.extend(getattr(sbc, "SBC_COMMANDS", []))
        return cls(specs)

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: (s.opcode, s.service_action or 0)))

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, key: object) -> bool:
        return key in self._specs

    def has_service_actions(self, opcode: int) -> bool:
        return opcode in self._sa_opcodes

    def get(self, opcode: int, service_action: int | None = None) -> CommandSpec | None:
        if opcode in self._sa_opcodes:
            return self._specs.get((opcode, service_action)) if service_action is not None else None
        return self._specs.get((opcode, None))

    def lookup(self, cdb: bytes | bytearray | memoryview, lu: Any = None) -> CommandSpec:
        """The spec for this CDB (opcode + service action), enabled for `lu`; checks its length and usage bits."""
        if not cdb:
            raise CheckCondition.invalid_opcode()
        op = cdb[0]
        if op in self._sa_opcodes:
            sa = service_action_of(cdb)
            spec = self._specs.get((op, sa))
            if spec is None:
                # SPC-4 4.2.5.1: an unsupported service action is an invalid field in byte 1 (bits 4-0)
                byte = 8 if op == VARIABLE_LENGTH_OPCODE else 1
                raise CheckCondition.invalid_cdb(byte, None if op == VARIABLE_LENGTH_OPCODE else 4)
        else:
            found = self._specs.get((op, None))
            if found is None:
                raise CheckCondition.invalid_opcode()
            spec = found
        if lu is not None and not spec.is_enabled(lu):
            if spec.service_action is not None:
                raise CheckCondition.invalid_cdb(1, 4)
            raise CheckCondition.invalid_opcode()
        spec.check_cdb(cdb)
        return spec
