"""Token prices and cost arithmetic. Prices are USD per 1M tokens; the config can override them."""

from __future__ import annotations

import re
from dataclasses import dataclass


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


# List prices of common models (USD / 1M tokens), as published by the providers.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.075, 0.60),
    "gpt-4o": Price(2.50, 1.25, 10.00),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.025, 0.40),
    "gpt-3.5-turbo": Price(0.50, 0.50, 1.50),
    "claude-3-5-haiku": Price(0.80, 0.08, 4.00),
    "claude-3-5-sonnet": Price(3.00, 0.30, 15.00),
    "claude-sonnet-4": Price(3.00, 0.30, 15.00),
    "claude-3-haiku": Price(0.25, 0.03, 1.25),
}


def _base_name(model: str) -> str:
    name = model.split("/")[-1].lower()
    name = re.sub(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$", "", name)
    return name


def default_price(model: str) -> Price | None:
    """The built-in price of `model` (provider prefix and date suffix ignored), or None."""
    name = _base_name(model)
    if name in DEFAULT_PRICES:
        return DEFAULT_PRICES[name]
    # longest known prefix, so "gpt-4o-mini-search" does not match "gpt-4o"
    for known in sorted(DEFAULT_PRICES, key=len, reverse=True):
        if name.startswith(known + "-"):
            return DEFAULT_PRICES[known]
    return None


def resolve_price(
    model: str, input_usd: float | None, cached_usd: float | None, output_usd: float | None
) -> Price | None:
    """Config prices where given, else the built-in table; None when input or output price is unknown."""
    base = default_price(model)
    inp = input_usd if input_usd is not None else (base.input if base else None)
    out = output_usd if output_usd is not None else (base.output if base else None)
    if inp is None or out is None:
        return None
    cached = cached_usd if cached_usd is not None else (base.cached_input if base and input_usd is None else inp)
    return Price(inp, cached, out)
