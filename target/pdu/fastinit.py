"""A faster `__init__` for frozen, slotted dataclasses (the PDUs and connection events on the hot path).

A frozen dataclass's generated `__init__` stores each field with `object.__setattr__(self, name, value)`, the
generic attribute protocol with a string name: ~4.6 us for a 17-field Data-In on this machine, against
~0.8 us for a plain dataclass. `fast_frozen_init` swaps in an `__init__` with the same signature (field
order, defaults) that stores through each slot's member descriptor directly (~1.4 us). Everything else (the
frozen `__setattr__`, eq, hash, repr, match args) stays the dataclass's own. Classes this does not cover
(default factories, InitVars, keyword-only fields, `__post_init__`, no slots) keep their generated
`__init__`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_frozen_init"]

T = TypeVar("T")


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Class decorator (apply above `@dataclass(frozen=True, slots=True)`)."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        return cls
    if hasattr(cls, "__post_init__"):
        return cls
    fields = dataclasses.fields(cls)
    namespace: dict[str, Any] = {}
    params: list[str] = []
    body: list[str] = []
    seen_default = False
    for i, f in enumerate(fields):
        if f.default_factory is not dataclasses.MISSING or f.kw_only:
            return cls
        descriptor = cls.__dict__.get(f.name)
        if descriptor is None or not hasattr(descriptor, "__set__"):
            return cls
        namespace[f"_set{i}"] = descriptor.__set__
        if f.init:
            if f.default is not dataclasses.MISSING:
                namespace[f"_default{i}"] = f.default
                params.append(f"{f.name}=_default{i}")
                seen_default = True
            elif seen_default:  # pragma: no cover - dataclass itself forbids this order
                return cls
            else:
                params.append(f.name)
            body.append(f"    _set{i}(self, {f.name})")
        else:
            if f.default is dataclasses.MISSING:
                return cls  # an init=False field without a default is left unset by the dataclass too
            namespace[f"_default{i}"] = f.default
            body.append(f"    _set{i}(self, _default{i})")
    source = f"def __init__(self, {', '.join(params)}) -> None:\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # generated from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - replacing a method on the class
    return cls
