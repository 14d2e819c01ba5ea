"""The JSON formats: a JSON object asked for in the prompt, optionally with the signature's schema as
`response_format` (the provider then constrains decoding to it, and may show it to the model).

The schema in a dialect (`schema_for`): the part of JSON Schema a provider accepts in `response_format`.

Our schemas carry every bound (maxLength, minimum/maximum, minItems/maxItems). Providers differ in which of these
keywords their structured-output modes take; each provider's dialect says which it does not
(refed_dspy.providers: `Dialect.dropped`). A keyword a dialect cannot take is removed from the schema and stated in
the property's description instead, so the model still reads the bound, and parsing checks it in every dialect (see
contract.py).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from typing import Any

import dspy

from refed_dspy.adapters.base import RepairingAdapter
from refed_dspy.adapters.contract import bound_words, output_schema
from refed_dspy.adapters.wording import output_descs, told_schema
from refed_dspy.providers.base import Dialect
from refed_dspy.providers.registry import dialect_named


def schema_name(signature: type[dspy.Signature]) -> str:
    """The response_format's name: the first output field's name (OpenAI's pattern, at most 64 characters; the
    provider shows it to the model, so it is short). Not the class name: DSPy rebuilds a signature whose instructions
    are set (a loaded or an optimized program) as `StringSignature`, so the same prompts would go out as different
    requests, and the cache would not know them."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", next(iter(signature.output_fields), "")) or "outputs"
    if len(name) > 64:
        name = f"{name[:55]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


@functools.lru_cache(maxsize=512)
def response_format(signature: type[dspy.Signature], dialect: str, shown: bool = False) -> dict[str, Any]:
    """The `response_format` that asks for `signature`'s outputs as a JSON schema in `dialect`. Where the provider
    shows the model the schema (`shown`), it is the prompt's statement of the outputs: each output's description is
    in it and its guards are not (wording.told_schema); elsewhere it carries every bound, for a grammar to enforce."""
    schema = output_schema(signature)
    if shown:
        schema = told_schema(schema)
        for name, desc in output_descs(signature).items():
            prop = schema["properties"][name]
            if desc and "$ref" not in prop:
                prop["description"] = desc
    name = schema_name(signature)
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema_for(schema, dialect)}}


class RefedJSONAdapter(RepairingAdapter, dspy.JSONAdapter):
    """JSONAdapter that sends what it is told to (no capability guessing): with `schema`, a json_schema
    response_format in `dialect`; without, a json_object one (none where the dialect's provider has no such mode).
    `shown`: the provider shows the model the schema (None: as `dialect` says), so the text states no output."""

    def __init__(
        self,
        schema: bool = True,
        dialect: str = "full",
        max_repairs: int = 1,
        shown: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(max_repairs=max_repairs, **kwargs)
        self.schema = schema
        self.dialect = dialect
        self.schema_shown = schema and (dialect_named(dialect).shown if shown is None else shown)

    @property
    def mode(self) -> str:  # type: ignore[override]
        return "json_schema" if self.schema else "json"

    # The reply's format (wording.py) names the keys without a template to fill in: a small model shown
    # `{"response": "{response}"}` hands the placeholder back as its answer. The input markers are not listed either:
    # the user's message shows them, and a small model that reads them twice echoes them as its answer (SmolLM2,
    # bench/echo_rate.py: 10 of 160 replies degenerate with a sentence naming them, 2 of 160 without).

    def request_options(self, signature: type[dspy.Signature]) -> dict[str, Any]:
        if self.schema:
            return {"response_format": response_format(signature, self.dialect, self.schema_shown)}
        if not dialect_named(self.dialect).json_object:
            return {}
        return {"response_format": {"type": "json_object"}}


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
    dialect no provider has.

    Args:
        schema: a JSON schema, such as `output_schema`'s; it is not changed.
        dialect: the name of a provider's schema dialect (refed_dspy.providers).

    Returns:
        A new schema without the keywords the dialect drops, each bound stated in its property's description.

    Raises:
        ValueError: `dialect` is not a known schema dialect.
    """
    known = dialect_named(dialect)
    if not known.dropped:
        return copy.deepcopy(schema)
    return _translate(schema, known)
