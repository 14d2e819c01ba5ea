"""The `[prices]` table of a config: what a model costs (`ModelPrice`; on a service tier, `TierPrice`), and how any
LM of a run is priced by its own model (`PriceBook`: the table's entry, else LiteLLM's price map)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from refed_dspy.config.section import Section
from refed_dspy.providers.prices import SERVICE_TIERS, Price, resolve_price

PRICED_TIERS = tuple(t for t in SERVICE_TIERS if t != "default")  # the tiers priced apart from a section's own prices


class TierPrice(Section):
    """What a model costs on one service tier (`[teacher.tier_prices.flex]`, `[prices."MODEL".tier_prices.flex]`): USD
    per 1M tokens."""

    input_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M uncached prompt tokens on this tier. Unset: LiteLLM's price map."
    )
    cached_input_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M cached prompt tokens on this tier. Unset: LiteLLM's price map, else the input price.",
    )
    output_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M completion tokens on this tier. Unset: LiteLLM's price map."
    )

    def triple(self) -> tuple[float | None, float | None, float | None]:
        """(input, cached input, output) as given (None where unset)."""
        return (self.input_usd_per_mtok, self.cached_input_usd_per_mtok, self.output_usd_per_mtok)


TIER_PRICES_HELP = (
    "Prices on a service tier, by tier: `[teacher.tier_prices.flex]` with input_usd_per_mtok, output_usd_per_mtok "
    "(cached_input_usd_per_mtok optional). Unset: LiteLLM's price map (its *_flex and *_priority prices)."
)


def tier_triples(tiers: dict[str, TierPrice] | None) -> dict[str, tuple[float | None, float | None, float | None]]:
    """A `tier_prices` table as resolve_price takes it."""
    return {name: entry.triple() for name, entry in (tiers or {}).items()}


class ModelPrice(Section):
    """What one model costs, for the `[prices]` table (`[prices."openai/my-finetune"]`): USD per 1M tokens."""

    input_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M uncached prompt tokens in USD. Unset: LiteLLM's price map."
    )
    cached_input_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M cached prompt tokens in USD. Unset: LiteLLM's price map, else the input price.",
    )
    output_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M completion tokens in USD. Unset: LiteLLM's price map."
    )
    cache_write_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M prompt tokens written to the provider's prompt cache in USD. Unset: LiteLLM's price map (scaled with input_usd_per_mtok when that is set), else the input price.",
    )
    tier_prices: dict[Literal[PRICED_TIERS], TierPrice] = Field(default_factory=dict, description=TIER_PRICES_HELP)

    def resolve(self, model: str) -> Price | None:
        """This entry's prices over LiteLLM's for `model` (default tier, carrying the others known); None when input or
        output price stays unknown."""
        return resolve_price(
            model,
            self.input_usd_per_mtok,
            self.cached_input_usd_per_mtok,
            self.output_usd_per_mtok,
            self.cache_write_usd_per_mtok,
            tier_triples(self.tier_prices),
        )


@dataclass(frozen=True)
class PriceBook:
    """How any LM of a run is priced by its own model: the `[prices]` table's entry for it, else LiteLLM's map."""

    table: dict[str, ModelPrice] | None = None

    def __post_init__(self) -> None:
        # a table built in Python is held to what a config's [prices] is: each entry validated as a ModelPrice (a
        # plain dict read as one), so that a price of inf, nan or below 0 is refused here (pydantic's
        # ValidationError) and never turns a cost into NaN
        if self.table:
            checked = {model: ModelPrice.model_validate(_plain(entry)) for model, entry in self.table.items()}
            object.__setattr__(self, "table", checked)

    def of(self, model: str) -> Price | None:
        """The price of `model` (None: unknown)."""
        entry = (self.table or {}).get(model)
        return entry.resolve(model) if entry is not None else resolve_price(model, None, None, None)

    def entry(self, model: str) -> ModelPrice | None:
        """The `[prices]` entry for `model`, if the table has one."""
        return (self.table or {}).get(model)


def _plain(entry: ModelPrice | dict) -> dict:
    """A `[prices]` entry's fields (of a ModelPrice, made with model_construct or not, or of a plain dict)."""
    return entry.model_dump() if isinstance(entry, ModelPrice) else entry
