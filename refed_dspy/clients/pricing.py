"""Token prices and cost arithmetic. Prices are USD per 1M tokens: LiteLLM's price map by default (hundreds of
models, read offline), the config's prices over it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens: uncached input, cached input, output."""

    input: float
    cached_input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """Cost of one call. `prompt_tokens` includes `cached_tokens`, as OpenAI reports it."""
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.input + cached * self.cached_input + completion_tokens * self.output
        ) / 1e6

    def scaled(self, factor: float) -> Price:
        """This price times `factor` (a batch API's discount)."""
        return Price(self.input * factor, self.cached_input * factor, self.output * factor)


_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def _price_map() -> dict[str, Any]:
    """LiteLLM's price map, read from the copy it ships (never downloaded: LITELLM_LOCAL_MODEL_COST_MAP)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm

    return litellm.model_cost


def _names(model: str) -> list[str]:
    """The names a model may have in the price map: as given, without its provider prefix, without a date suffix."""
    bare = model.split("/", 1)[1] if "/" in model else model
    names = [model, bare, _DATED.sub("", model), _DATED.sub("", bare)]
    return list(dict.fromkeys(n for n in names if n))


def default_price(model: str) -> Price | None:
    """The list price of `model` in LiteLLM's price map (provider prefix and date suffix ignored when the map has no
    entry under the full name), or None when the map does not know it (or prices it at nothing)."""
    table = _price_map()
    for name in _names(model):
        entry = table.get(name)
        if not isinstance(entry, dict):
            continue
        inp, out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if not inp and not out:
            continue
        cached = entry.get("cache_read_input_token_cost")
        per_m = [round(float(v or 0) * 1e6, 6) for v in (inp, cached if cached is not None else inp, out)]
        return Price(*per_m)
    return None


def resolve_price(
    model: str, input_usd: float | None, cached_usd: float | None, output_usd: float | None
) -> Price | None:
    """Config prices where given, else LiteLLM's price map; None when input or output price is unknown."""
    base = default_price(model)
    inp = input_usd if input_usd is not None else (base.input if base else None)
    out = output_usd if output_usd is not None else (base.output if base else None)
    if inp is None or out is None:
        return None
    cached = cached_usd if cached_usd is not None else (base.cached_input if base and input_usd is None else inp)
    return Price(inp, cached, out)
