"""Schema dialects: the part of JSON Schema each kind of provider accepts in `response_format`.

Our schemas carry every bound (maxLength, minimum/maximum, minItems/maxItems). Providers differ in
which of these keywords their structured-output modes take: a grammar-based OpenAI-compatible
server (llama.cpp, vLLM, SGLang, Ollama) enforces all of them; OpenAI's strict mode rejects string
lengths; Anthropic rejects numeric, length and item-count bounds; Gemini takes numeric and item
bounds but not string lengths. A keyword a dialect cannot take is removed from the schema and
stated in the property's description instead, so the model still reads the bound, and parsing
checks it in every dialect (see contract.py).
"""

from __future__ import annotations

import copy
from typing import Any

from refed_dspy.adapters.contract import bound_words
from refed_dspy.providers.dialects import DIALECTS, UNSUPPORTED


def _translate(node: Any, dropped: frozenset[str], dialect: str) -> Any:
    if isinstance(node, list):
        return [_translate(v, dropped, dialect) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            out[key] = {name: _translate(sub, dropped, dialect) for name, sub in value.items()}
        elif key in dropped and not (dialect == "anthropic" and key == "minItems" and value in (0, 1)):
            moved[key] = value
        else:
            out[key] = _translate(value, dropped, dialect)
    said = bound_words(moved)
    if said:
        note = "Must be " + ", ".join(said) + "."
        out["description"] = f"{out['description']} {note}" if out.get("description") else note
    return out


def schema_for(schema: dict[str, Any], dialect: str) -> dict[str, Any]:
    """`schema` as `dialect` accepts it: unsupported keywords moved into descriptions (a new dict)."""
    if dialect not in UNSUPPORTED:
        raise ValueError(f"unknown schema dialect '{dialect}'; known: {', '.join(DIALECTS)}")
    if not UNSUPPORTED[dialect]:
        return copy.deepcopy(schema)
    return _translate(schema, UNSUPPORTED[dialect], dialect)
