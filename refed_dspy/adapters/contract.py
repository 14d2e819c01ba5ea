"""Output contracts: the bounds a signature's outputs carry, as a JSON schema and as a check.

A signature states each output's contract in its type (`Annotated[int, Field(ge=1, le=10)]`, a
`Literal`, a list of bounded strings) or, for free text kept as plain `str` so DSPy reads it
verbatim, in its field (`dspy.OutputField(max_length=...)`). One pydantic model per signature holds
both: its JSON schema is what a provider is asked to follow, and validating a parsed reply against
it is how every adapter checks what came back.
"""

from __future__ import annotations

import copy
import functools
from typing import Annotated, Any

import dspy
import pydantic
from pydantic import BaseModel, ConfigDict, ValidationError

# keys pydantic writes that carry nothing for a provider (every property is required anyway)
_NOISE = ("title", "default")


class ContractError(ValueError):
    """A parsed reply breaks its signature's output contract; the message says how, in one line."""


@functools.lru_cache(maxsize=512)
def output_model(signature: type[dspy.Signature]) -> type[BaseModel]:
    """A pydantic model of `signature`'s outputs, with every type and field constraint they declare."""
    fields: dict[str, Any] = {}
    for name, field in signature.output_fields.items():
        annotation = field.annotation
        if field.metadata:  # field-level bounds (max_length=..., ge=...) join the type
            annotation = Annotated[(annotation, *field.metadata)]
        fields[name] = (annotation, ...)
    return pydantic.create_model(f"{signature.__name__}Outputs", __config__=ConfigDict(extra="ignore"), **fields)


def _tidy(node: Any, model: bool = False) -> Any:
    """Every object closed (all properties required, no others) and pydantic's titles and defaults dropped, and a
    model's docstring (`model`: a node of `$defs`), which documents the code, not the output."""
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):  # maps of names: a property may be called "title"
            out[key] = {name: _tidy(sub, model=key == "$defs") for name, sub in value.items()}
        elif key not in _NOISE and not (model and key == "description"):
            out[key] = _tidy(value)
    if out.get("type") == "object":
        props = out.setdefault("properties", {})
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=512)
def _schema(signature: type[dspy.Signature]) -> dict[str, Any]:
    return _tidy(output_model(signature).model_json_schema())


def output_schema(signature: type[dspy.Signature]) -> dict[str, Any]:
    """The JSON schema of `signature`'s outputs, bounds included (a fresh copy: callers may change it).

    Args:
        signature: the signature whose output fields the schema describes.

    Returns:
        The schema: an object with every output required, no other properties, and no titles or defaults.
    """
    return copy.deepcopy(_schema(signature))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_validation_error(err: ValidationError, limit: int = 4) -> str:
    """One line naming each broken bound: `field.sub: what was expected (got ...)`."""
    parts = []
    for e in err.errors()[:limit]:
        where = ".".join(str(p) for p in e["loc"])
        got = "" if e["type"] == "missing" else f" (got {_short(e.get('input'))})"
        what = f"{e['msg'][:1].lower()}{e['msg'][1:]}{got}"
        parts.append(f"{where}: {what}" if where else what)
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def check_outputs(signature: type[dspy.Signature], values: dict[str, Any]) -> dict[str, Any]:
    """`values` validated against `signature`'s output contract (text stripped); ContractError when it breaks it.

    Args:
        signature: the signature whose output contract applies.
        values: the parsed output values by field name (keys that are not outputs are ignored).

    Returns:
        The validated value of each output field, by name, in the signature's order.

    Raises:
        ContractError: a value breaks its bounds or type, or an output is missing; the message names each in one line.
    """
    values = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
    try:
        checked = output_model(signature).model_validate(values)
    except ValidationError as err:
        raise ContractError(describe_validation_error(err)) from None
    return {name: getattr(checked, name) for name in signature.output_fields}


def _count(n: Any, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _range(low: Any, high: Any, unit: str) -> str | None:
    if low is not None and high is not None:
        return f"exactly {_count(low, unit)}" if low == high else f"{low} to {_count(high, unit)}"
    if low is not None:
        return f"at least {_count(low, unit)}"
    if high is not None:
        return f"at most {_count(high, unit)}"
    return None


def bound_words(schema: dict[str, Any]) -> list[str]:
    """The bounds one schema node states, in words ("1 to 4000 characters", "at most 10")."""
    out = [
        _range(schema.get("minLength"), schema.get("maxLength"), "character"),
        _range(schema.get("minItems"), schema.get("maxItems"), "item"),
    ]
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        out.append(
            f"from {low} to {high}"
            if low is not None and high is not None
            else f"at least {low}"
            if low is not None
            else f"at most {high}"
        )
    out += [
        f"more than {schema['exclusiveMinimum']}" if "exclusiveMinimum" in schema else None,
        f"less than {schema['exclusiveMaximum']}" if "exclusiveMaximum" in schema else None,
        f"a multiple of {schema['multipleOf']}" if "multipleOf" in schema else None,
        f"matching /{schema['pattern']}/" if "pattern" in schema else None,
        f"in {schema['format']} format" if "format" in schema else None,
        "no repeated items" if schema.get("uniqueItems") else None,
    ]
    return [w for w in out if w]
