"""The JSON formats: a JSON object asked for in the prompt, optionally with the signature's schema as
`response_format` (the provider then constrains decoding to it)."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import dspy
from dspy.adapters.utils import translate_field_type
from pydantic.fields import FieldInfo

from refed_dspy.adapters.base import RepairingAdapter
from refed_dspy.adapters.contract import output_schema
from refed_dspy.adapters.dialects import schema_for
from refed_dspy.providers.registry import dialect_named


def _key_line(name: str, field: FieldInfo, schema_shown: bool) -> str:
    """One output key as the prompt lists it: its name, and what its type requires (unless the model is shown the
    schema itself)."""
    note = translate_field_type(name, field).removeprefix(f"{{{name}}}").strip()
    if not note:
        need = "text"
    elif schema_shown:
        need = "see the response schema"
    else:
        need = note.removeprefix("# note: the value you produce ")
    return f'- "{name}" ({need})'


def schema_name(signature: type[dspy.Signature]) -> str:
    """The response_format's name: the output fields' names (OpenAI's pattern, at most 64 characters). Not the class
    name: DSPy rebuilds a signature whose instructions are set (a loaded or an optimized program) as
    `StringSignature`, so the same prompts would go out as different requests, and the cache would not know them."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(signature.output_fields)) or "outputs"
    if len(name) > 64:
        name = f"{name[:55]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


@functools.lru_cache(maxsize=512)
def response_format(signature: type[dspy.Signature], dialect: str) -> dict[str, Any]:
    """The `response_format` that asks for `signature`'s outputs as a JSON schema in `dialect`."""
    name = schema_name(signature)
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "strict": True, "schema": schema_for(output_schema(signature), dialect)},
    }


class RefedJSONAdapter(RepairingAdapter, dspy.JSONAdapter):
    """JSONAdapter that sends what it is told to (no capability guessing): with `schema`, a json_schema
    response_format in `dialect`; without, a json_object one (none where the dialect's provider has no such mode)."""

    def __init__(self, schema: bool = True, dialect: str = "full", max_repairs: int = 1, **kwargs: Any):
        super().__init__(max_repairs=max_repairs, **kwargs)
        self.schema = schema
        self.dialect = dialect

    @property
    def mode(self) -> str:  # type: ignore[override]
        return "json_schema" if self.schema else "json"

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        if not self.schema:  # nothing constrains the reply: DSPy's filled-in JSON template shows its shape
            return super().format_field_structure(signature)
        # The schema fixes the reply's shape, so the prompt names the keys without a template to fill in: a small
        # model shown `{"response": "{response}"}` hands the placeholder back as its answer. Where the provider
        # shows the model the schema itself (its dialect says so: a grammar server only constrains decoding with it),
        # the types are not repeated (they would be paid for twice). The input
        # markers are not listed here either: the user's message shows them, and a small model that reads them twice
        # echoes them as its answer (SmolLM2, bench/echo_rate.py: 10 of 160 replies degenerate with a sentence naming
        # them, 2 of 160 without).
        schema_shown = dialect_named(self.dialect).shown
        keys = "\n".join(_key_line(name, field, schema_shown) for name, field in signature.output_fields.items())
        return f"Reply with one JSON object holding these keys, in this order:\n{keys}"

    def request_options(self, signature: type[dspy.Signature]) -> dict[str, Any]:
        if self.schema:
            return {"response_format": response_format(signature, self.dialect)}
        if not dialect_named(self.dialect).json_object:
            return {}
        return {"response_format": {"type": "json_object"}}
