"""The JSON formats: a JSON object asked for in the prompt, optionally with the signature's schema as
`response_format` (the provider then constrains decoding to it)."""

from __future__ import annotations

import functools
import re
from typing import Any

import dspy

from refed_dspy.adapters.base import RepairingAdapter
from refed_dspy.adapters.contract import output_schema
from refed_dspy.adapters.dialects import schema_for

# Providers that put a response_format schema in front of the model (it is billed as input); a grammar server
# (llama.cpp, vLLM, SGLang) only constrains decoding with it, so there the prompt keeps the types and bounds.
SCHEMA_IN_CONTEXT = ("openai", "anthropic", "gemini")


@functools.lru_cache(maxsize=512)
def _placeholders(signature: type[dspy.Signature]) -> type[dspy.Signature]:
    """`signature` with every output typed `str`: its structure block then shows bare `{field}` placeholders."""
    shown = signature
    for name in signature.output_fields:
        shown = shown.with_updated_fields(name, type_=str)
    return shown


@functools.lru_cache(maxsize=512)
def response_format(signature: type[dspy.Signature], dialect: str) -> dict[str, Any]:
    """The `response_format` that asks for `signature`'s outputs as a JSON schema in `dialect`."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", signature.__name__)[:64] or "outputs"
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "strict": True, "schema": schema_for(output_schema(signature), dialect)},
    }


class RefedJSONAdapter(RepairingAdapter, dspy.JSONAdapter):
    """JSONAdapter that sends what it is told to (no capability guessing): with `schema`, a json_schema
    response_format in `dialect`; without, a json_object one (none for Anthropic, which has no such mode)."""

    def __init__(self, schema: bool = True, dialect: str = "full", max_repairs: int = 1, **kwargs: Any):
        super().__init__(max_repairs=max_repairs, **kwargs)
        self.schema = schema
        self.dialect = dialect

    @property
    def mode(self) -> str:  # type: ignore[override]
        return "json_schema" if self.schema else "json"

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        # where the provider shows the model the schema itself, repeating it in the prompt is paid for twice
        if self.schema and self.dialect in SCHEMA_IN_CONTEXT:
            return super().format_field_structure(_placeholders(signature))
        return super().format_field_structure(signature)

    def request_options(self, signature: type[dspy.Signature]) -> dict[str, Any]:
        if self.schema:
            return {"response_format": response_format(signature, self.dialect)}
        if self.dialect == "anthropic":
            return {}
        return {"response_format": {"type": "json_object"}}
