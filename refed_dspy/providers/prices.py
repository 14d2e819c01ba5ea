"""What providers charge: token prices and cost arithmetic. Prices are USD per 1M tokens: LiteLLM's price map by
default (hundreds of models, read offline), the config's prices over it (`resolve_price`): a role's own section for
the model it names, and the `[prices]` table for any model (refed_dspy.config.prices: an LM handed in from Python, a
teleprompter's or a metric's own LM).

An LM is priced by its own model, never by a role's section that names another one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from refed_dspy.providers.model_table import litellm_models, table_names


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


@functools.lru_cache(maxsize=1)
def _price_map() -> dict[str, tuple[float | None, float | None, float | None]]:
    """LiteLLM's price map: {model: (input, cached input, output) USD per token}, from its model table
    (refed_dspy.providers.model_table: read without importing LiteLLM)."""
    table = litellm_models()
    return {
        name: (e.get("input_cost_per_token"), e.get("cache_read_input_token_cost"), e.get("output_cost_per_token"))
        for name, e in table.items()
        if isinstance(e, dict)
    }


def default_price(model: str) -> Price | None:
    """The list price of `model` in LiteLLM's price map (provider prefix and date suffix ignored when the map has no
    entry under the full name), or None when the map does not know it (or prices it at nothing)."""
    table = _price_map()
    for name in table_names(model):
        inp, cached, out = table.get(name, (None, None, None))
        if not inp and not out:
            continue
        per_m = [round(float(v or 0) * 1e6, 6) for v in (inp, cached if cached is not None else inp, out)]
        return Price(*per_m)
    return None


def close_priced_names(model: str, n: int = 1) -> list[str]:
    """Names in LiteLLM's price map close to `model` (a typo's likely meaning), with `model`'s provider prefix where it
    had one and the map's name has none; [] when none is close."""
    import difflib

    prefix, bare = model.split("/", 1) if "/" in model else ("", model)
    table = _price_map()
    plain = [name for name in table if "/" not in name]  # the map's own names of a provider's models
    found = [f"{prefix}/{name}" if prefix else name for name in difflib.get_close_matches(bare, plain, n, 0.85)]
    found = found or difflib.get_close_matches(model, [name for name in table if "/" in name], n=n, cutoff=0.85)
    return [name for name in found if name != model]


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
