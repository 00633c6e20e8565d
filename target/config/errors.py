"""Configuration errors: one exception carrying every problem found, each prefixed with its JSON path."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is invalid. `errors` lists every problem ("path: message"), in document order."""

    def __init__(self, errors: list[str], *, source: str = "") -> None:
        self.errors = list(errors) or ["invalid configuration"]
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        n = len(self.errors)
        head = f"{n} configuration error{'s' if n != 1 else ''}{where}:"
        return "\n".join([head, *(f"  - {e}" for e in self.errors)])
