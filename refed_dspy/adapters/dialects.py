"""A schema in a dialect: the part of JSON Schema a provider accepts in `response_format`.

Our schemas carry every bound (maxLength, minimum/maximum, minItems/maxItems). Providers differ in which of these
keywords their structured-output modes take; each provider's dialect says which it does not
(refed_dspy.providers: `Dialect.dropped`). A keyword a dialect cannot take is removed from the schema and stated in
the property's description instead, so the model still reads the bound, and parsing checks it in every dialect (see
contract.py).
"""

from __future__ import annotations

import copy
from typing import Any

from refed_dspy.adapters.contract import bound_words
from refed_dspy.providers.base import Dialect
from refed_dspy.providers.registry import dialect_named


def _translate(node: Any, dialect: Dialect) -> Any:
    if isinstance(node, list):
        return [_translate(v, dialect) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            out[key] = {name: _translate(sub, dialect) for name, sub in value.items()}
        elif dialect.drops(key, value):
            moved[key] = value
        else:
            out[key] = _translate(value, dialect)
    said = bound_words(moved)
    if said:
        note = "Must be " + ", ".join(said) + "."
        out["description"] = f"{out['description']} {note}" if out.get("description") else note
    return out


def schema_for(schema: dict[str, Any], dialect: str) -> dict[str, Any]:
    """`schema` as `dialect` accepts it: unsupported keywords moved into descriptions (a new dict). ValueError for a
    dialect no provider has."""
    known = dialect_named(dialect)
    if not known.dropped:
        return copy.deepcopy(schema)
    return _translate(schema, known)
