"""Which service tier a model offers: its provider must have tiers (`Provider.tiers`: OpenAI's and Azure OpenAI's flex
and priority) and the model a known price on the tier asked for (LiteLLM's `*_flex` / `*_priority` prices, or the
config's own `tier_prices`). A tier nobody can price is refused before any call: a run on it could not be priced, and
the provider would answer it with an error (OpenAI: 400 for a model without flex) or on another tier.

Pure functions over the registered providers and the price map: nothing here makes a request.
"""

from __future__ import annotations

from collections.abc import Mapping

from refed_dspy.providers.prices import list_prices, resolve_price
from refed_dspy.providers.registry import PROVIDERS, provider_for

DEFAULT = "default"


def tier_problem(
    model: str,
    tier: str,
    own: Mapping[str, tuple[float | None, float | None, float | None]] | None = None,
    role: str = "teacher",
) -> str | None:
    """Why `model` cannot be asked for service tier `tier` (None: it can). `own`: the config's prices by tier
    (`tier_prices`), which make a tier of a model the price map does not know (a server of one's own) priced."""
    if tier == DEFAULT:
        return None
    provider = provider_for(model)
    if provider.tiers is None or tier not in provider.tiers.names:
        offering = [p.title for p in PROVIDERS.values() if p.tiers is not None and tier in p.tiers.names]
        return (
            f"{provider.title} has no {tier} tier refed can ask for (service tiers are sent to "
            f'{" and ".join(offering) or "no provider"}): set {role}.service_tier = "default"'
        )
    if resolve_price(model, None, None, None, tier_prices=own, tier=tier) is not None:
        return None
    listed = sorted(list_prices(model))
    known = (
        f" (LiteLLM's price map knows its {', '.join(listed)} price{'s' if len(listed) > 1 else ''})" if listed else ""
    )
    return (
        f"'{model}' offers no {tier} tier{known}: use a model with a {tier} price (openai/gpt-5-mini, for one), set "
        f'{role}.service_tier = "default", or, for a server of your own with such a tier, give its prices in '
        f"[{role}.tier_prices.{tier}] (input_usd_per_mtok, output_usd_per_mtok)"
    )
