"""The names a config takes from a registry (a method, an optimizer, a target): the validator that checks them."""

from __future__ import annotations

import difflib

from pydantic import ValidationInfo
from pydantic_core import PydanticCustomError

from refed_dspy.registry import Registry


class Registered:
    """A validator (`AfterValidator(Registered(METHODS))`) that accepts the names `registry` holds when the value is
    validated (so an entry registered after this module was imported counts, and the registry's package is imported
    on that first question, not before), refusing others as a Literal would, with the nearest name. A run dir's own
    config.toml (validated with context {"record": True}) is a record of what ran: any name reads there."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __call__(self, value: str, info: ValidationInfo) -> str:
        if value in self.registry or (info.context or {}).get("record"):
            return value
        names = self.registry.names()
        near = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": one_of(names), "nearest": near}
        )


def one_of(names: tuple[str, ...]) -> str:
    """'a', 'b' or 'c': the choices, as pydantic names a Literal's."""
    quoted = [repr(n) for n in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else "".join(quoted)
