"""How a signature's prompt is worded: each field and each bound stated once, and nothing the model does not need.

A system message is the signature's instructions; then one line for each input whose description says more than its
name (the user message shows every input under its `[[ ## name ## ]]` marker, so the rest need no line); then the
reply's format, unless the provider shows the model the response schema itself, in which case the schema says it
all (each output's description included) and the text repeats none of it. The reply's format lists each output with
its type, the bounds it must meet and its description, in a few words a line (`sketch`): a JSON object's keys in
order, or DSPy's `[[ ## name ## ]]` markers in the chat format. The user message ends with a one-line reminder of the
format where the text states one.

What an output must meet is told (`told_schema`): a range of scores, a choice of literals, an exact count of items.
The caps that only stop runaway decoding (a text's length, a list's most items: signatures/bounds.py calls them
generous) are guards: a grammar server enforces them from the schema, every reply is checked against them
(contract.py), and no model is told them. Pure functions.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import dspy

# the bounds no model is told: string lengths (and, in `_guards`, a list's most items where it is not an exact count)
_STRING_GUARDS = ("minLength", "maxLength")
CHAT_END = "[[ ## completed ## ]]"


def _guards(node: dict[str, Any]) -> set[str]:
    """The keywords of one schema node that are guards, not contracts."""
    found = {k for k in _STRING_GUARDS if k in node}
    if "maxItems" in node and node.get("minItems") != node["maxItems"]:
        found.add("maxItems")
    return found


def told_schema(schema: Any) -> Any:
    """`schema` as a model is told it: without its guards and without descriptions (what the prompt says of an output
    is its signature's: `output_descs`; a field of an output's type is told by its name, type and bounds, and the
    type's descriptions document the record), each `$ref` written out where it stands (a schema whose definitions
    refer to themselves keeps them). A new object."""
    defs = schema.get("$defs") if isinstance(schema, dict) else None
    if defs and "$ref" not in json.dumps(defs):
        schema = _inlined({k: v for k, v in schema.items() if k != "$defs"}, defs)
    return _unguarded(schema)


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return {k: _inlined(v, defs) for k, v in node.items()}


def _unguarded(node: Any) -> Any:
    if isinstance(node, list):
        return [_unguarded(v) for v in node]
    if not isinstance(node, dict):
        return node
    drop = _guards(node) | {"description"}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            out[key] = {name: _unguarded(sub) for name, sub in value.items()}
        elif key not in drop:
            out[key] = _unguarded(value)
    return out


def field_desc(name: str, field: Any) -> str:
    """A DSPy field's description, '' where it has none (DSPy fills in `${name}`)."""
    desc = (field.json_schema_extra or {}).get("desc") if isinstance(field.json_schema_extra, dict) else None
    return "" if not isinstance(desc, str) or desc == f"${{{name}}}" else desc.strip()


def task_text(signature: type[dspy.Signature]) -> str:
    """The signature's instructions, as written (without the docstring's indentation)."""
    return textwrap.dedent(signature.instructions or "").strip()


def input_notes(signature: type[dspy.Signature]) -> str:
    """One line for each input whose description says more than its name ('' for none)."""
    return "\n".join(
        f"`{name}`: {desc}" for name, field in signature.input_fields.items() if (desc := field_desc(name, field))
    )


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return {**defs.get(node["$ref"].rsplit("/", 1)[-1], {}), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _count(node: dict[str, Any]) -> str:
    low, high = node.get("minItems"), node.get("maxItems")
    if low is not None and low == high:
        return f"exactly {low} "
    if low and high is not None:
        return f"{low} to {high} "
    if low:
        return f"at least {low} "
    return f"at most {high} " if high is not None else ""


def _kind(node: dict[str, Any], defs: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """What a schema node is, in a few words, and the object whose keys go under it (None: none)."""
    node = _resolve(node, defs)
    if "enum" in node:
        return "one of " + ", ".join(f'"{v}"' for v in node["enum"]), None
    options = node.get("anyOf") or node.get("oneOf")
    if options:
        return " or ".join(_kind(o, defs)[0] for o in options), None
    kind = node.get("type")
    if kind == "array":
        item, under = _kind(node.get("items") or {}, defs)
        plural = {"a string": "strings", "an object": "objects", "an integer": "integers", "a number": "numbers"}
        return f"a list of {_count(node)}{plural.get(item, item)}", under
    if kind == "object":
        return "an object", node
    if kind in ("integer", "number"):
        low, high = node.get("minimum"), node.get("maximum")
        word = "an integer" if kind == "integer" else "a number"
        if low is not None and high is not None:
            return f"{word} from {low} to {high}", None
        if low is not None or high is not None:
            return f"{word} {'at least ' + str(low) if low is not None else 'at most ' + str(high)}", None
        return word, None
    if kind == "boolean":
        return "true or false", None
    return "a string", None


def sketch(
    schema: dict[str, Any],
    descs: dict[str, str],
    key: str = '"{name}"',
    indent: str = "",
    as_json: frozenset[str] = frozenset(),
) -> list[str]:
    """One line for each key of an object `schema` (a told one): `- "name" (what it is): description`, the keys of a
    nested object on indented lines under it. `descs` are the top-level keys' descriptions (a nested key's is its
    schema's); `key` is how a top-level key is written; the keys `as_json` are said to be written as JSON."""
    defs = schema.get("$defs") or {}
    lines = []
    for name, node in (schema.get("properties") or {}).items():
        kind, under = _kind(node, defs)
        kind += ", as JSON" if name in as_json else ""
        desc = descs.get(name) or _resolve(node, defs).get("description", "")
        lines.append(f"{indent}- {key.format(name=name)} ({kind}){': ' + desc if desc else ''}")
        if under is not None:
            lines += sketch({**under, "$defs": defs}, {}, '"{name}"', indent + "  ")
    return lines


def output_descs(signature: type[dspy.Signature]) -> dict[str, str]:
    """Each output's description, by name ('' where it has none)."""
    return {name: field_desc(name, field) for name, field in signature.output_fields.items()}


def reply_format(signature: type[dspy.Signature], schema: dict[str, Any], chat: bool) -> str:
    """The reply's format, for a model that is not shown the schema: each output with its type, its bounds and its
    description, as a JSON object's keys or as chat markers (`schema`: the told output schema)."""
    descs = output_descs(signature)
    if not chat:
        head = "Reply with one JSON object holding these keys, in this order:"
        return "\n".join([head, *sketch(schema, descs)])
    defs = schema.get("$defs") or {}
    structured = frozenset(
        name
        for name, node in (schema.get("properties") or {}).items()
        if _resolve(node, defs).get("type") in ("array", "object")
    )
    head = f"Reply with each output under its marker, in this order, then {CHAT_END}:"
    return "\n".join([head, *sketch(schema, descs, "[[ ## {name} ## ]]", as_json=structured)])


def reminder(signature: type[dspy.Signature], chat: bool) -> str:
    """The line that ends a user message: the reply's format in brief."""
    if not chat:
        return "Respond with a JSON object as described above."
    markers = ", then ".join(f"`[[ ## {name} ## ]]`" for name in signature.output_fields)
    return f"Respond with {markers}, then `{CHAT_END}`."
