"""How our calls talk to an LM: the output format per role, contract checks, and repairs.

`build_adapter(spec)` makes the adapter a role's config asks for (`adapter` = chat | json |
json_schema | auto); `choose_adapter(spec)` says what `auto` resolves to, and why.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

from refed_dspy.adapters.base import DegenerateOutputError, RepairingAdapter, describe_parse_error
from refed_dspy.adapters.chat import RefedChatAdapter
from refed_dspy.adapters.contract import ContractError, check_outputs, output_schema
from refed_dspy.adapters.degenerate import Instructs, Revises, degenerate_outputs, degenerate_reason, junk_reason
from refed_dspy.adapters.json_schema import RefedJSONAdapter, response_format, schema_for
from refed_dspy.config.lm import LMSpec
from refed_dspy.providers.dialects import DIALECTS, dialect_for
from refed_dspy.providers.registry import dialect_named, provider_for

__all__ = [
    "DIALECTS",
    "AdapterChoice",
    "ContractError",
    "DegenerateOutputError",
    "Instructs",
    "RefedChatAdapter",
    "RefedJSONAdapter",
    "RepairingAdapter",
    "Revises",
    "build_adapter",
    "check_outputs",
    "choose_adapter",
    "degenerate_outputs",
    "degenerate_reason",
    "describe_parse_error",
    "dialect_for",
    "junk_reason",
    "output_schema",
    "response_format",
    "schema_for",
]


@dataclass(frozen=True)
class AdapterChoice:
    """The output format a role uses: mode (chat | json | json_schema), schema dialect, whether the provider shows
    the model the response schema (json_schema only), and why."""

    mode: str
    dialect: str
    reason: str
    schema_shown: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=64)
def _provider_enforces_schema(model: str) -> bool:
    """Whether LiteLLM's (local) model table says the provider enforces a response schema for `model`."""
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    try:
        import litellm

        litellm.suppress_debug_info = True
        return bool(litellm.supports_response_schema(model=model))
    except Exception:  # noqa: BLE001 - an unknown model: no schema
        return False


def _shown(spec: LMSpec, dialect: str) -> tuple[bool, str]:
    """Whether the provider shows the model the response schema, and why: the config's word, else the dialect's."""
    if spec.schema_shown is not None:
        return spec.schema_shown, f"schema_shown = {str(spec.schema_shown).lower()} in the config"
    if dialect_named(dialect).shown:
        return True, "the provider shows the model the schema"
    return False, "the schema only constrains decoding (schema_shown = true for a gateway that shows it to the model)"


def choose_adapter(spec: LMSpec) -> AdapterChoice:
    """What `spec.adapter` means for this model and server (`auto` resolved): the model's provider is asked for its
    schema dialect, whether it shows the model the schema, and whether it has a table of the models that enforce a
    schema.

    Args:
        spec: the role's LM config (its model, server, `adapter`, `schema_dialect` and `schema_shown`).

    Returns:
        The chosen mode, schema dialect, whether the schema is shown to the model, and why.
    """
    provider = provider_for(spec.model)
    found, why = provider.schema_dialect(spec.model, spec.primary_api_base)
    dialect = found.name
    if spec.schema_dialect != "auto":
        dialect, why = spec.schema_dialect, "set in the config"
    if spec.adapter != "auto":
        mode, reason = spec.adapter, f"set in the config; schema dialect {dialect}: {why}"
    elif dialect == "full":
        mode, reason = "json_schema", f"auto: {why}"
    elif provider.schema_table and _provider_enforces_schema(spec.model):
        mode, reason = "json_schema", f"auto: the provider enforces JSON schemas for this model; {why}"
    else:
        mode, reason = "chat", "auto: no schema enforcement known for this model, so DSPy's chat format"
    if mode != "json_schema":
        return AdapterChoice(mode, dialect, reason)
    shown, because = _shown(spec, dialect)
    return AdapterChoice(mode, dialect, f"{reason}; {because}", shown)


def build_adapter(spec: LMSpec, choice: AdapterChoice | None = None) -> RepairingAdapter:
    """The adapter for one role; its `choice` attribute says which format and why.

    Args:
        spec: the role's LM config (its `max_repairs` too).
        choice: the output format to use; None: `choose_adapter(spec)`.

    Returns:
        A RefedChatAdapter for the chat mode, else a RefedJSONAdapter (with a schema for json_schema).
    """
    choice = choice or choose_adapter(spec)
    if choice.mode == "chat":
        adapter: RepairingAdapter = RefedChatAdapter(max_repairs=spec.max_repairs)
    else:
        adapter = RefedJSONAdapter(
            schema=choice.mode == "json_schema",
            dialect=choice.dialect,
            max_repairs=spec.max_repairs,
            shown=choice.schema_shown,
        )
    adapter.choice = choice
    return adapter
