"""What providers charge, and on which service tier: token prices and cost arithmetic. Prices are USD per 1M tokens:
LiteLLM's price map by default (hundreds of models, read offline), the config's prices over it (`resolve_price`): a
role's own section for the model it names, and the `[prices]` table for any model (refed_dspy.config.lm: an LM
handed in from Python, a teleprompter's or a metric's own LM).

A model may have a price on each of its provider's service tiers (LiteLLM's `*_flex` and `*_priority` prices; the
config's `tier_prices`): a `Price` is the price of one tier and carries the others (`Price.at`), so that a call is
priced at the tier its reply says served it. Each tier's price has its own cache-write price (LiteLLM's
`cache_creation_input_token_cost`, and its `_flex`/`_priority` variants).

An LM is priced by its own model, never by a role's section that names another one.

The tiers a model offers: its provider must have tiers (`Provider.tiers`: OpenAI's and Azure OpenAI's flex
and priority) and the model a known price on the tier asked for (LiteLLM's `*_flex` / `*_priority` prices, or the
config's own `tier_prices`). A tier nobody can price is refused before any call: a run on it could not be priced, and
the provider would answer it with an error (OpenAI: 400 for a model without flex) or on another tier.

Pure functions over the registered providers and the price map: nothing here makes a request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from refed_dspy.providers.base import MarkedCache
from refed_dspy.providers.litellm_table import litellm_models, table_names
from refed_dspy.providers.registry import PROVIDERS, provider_for

SERVICE_TIERS = ("default", "flex", "priority")  # the tiers a config may ask for (refed_dspy.providers.prices)
UNSTATED = "unstated"  # a call's tier when one was asked for and its reply named none (priced never below the default)
# USD per 1M tokens on one tier: uncached input, cached input, output, cache write (None: at the input price)
_Prices = tuple[float, float, float, float | None]
_Given = tuple[float | None, float | None, float | None, float | None]  # a config's, None where unset


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens on one service tier (`tier`): uncached input, cached input (read from the provider's prompt
    cache), output, and prompt tokens written to the provider's prompt cache (`cache_write`; None: at the input price,
    as OpenAI's automatic cache writes them; Anthropic charges 1.25x its input price). `table` holds the model's
    prices on every tier known (this one's included), so that `at` can price a call another tier served."""

    input: float
    cached_input: float
    output: float
    cache_write: float | None = None
    tier: str = "default"
    table: tuple[tuple[str, _Prices], ...] = field(default=(), compare=False)

    @property
    def written(self) -> float:
        """USD per 1M prompt tokens written to the provider's cache."""
        return self.input if self.cache_write is None else self.cache_write

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, written_tokens: int = 0
    ) -> float:
        """Cost of one call. `prompt_tokens` includes the tokens read from the provider's cache (`cached_tokens`) and
        those written to it (`written_tokens`), as refed counts them for every provider."""
        cached = min(cached_tokens, prompt_tokens)
        written = min(written_tokens, prompt_tokens - cached)
        return (
            (prompt_tokens - cached - written) * self.input
            + cached * self.cached_input
            + written * self.written
            + completion_tokens * self.output
        ) / 1e6

    def bound(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The most one call of `prompt_tokens` and `completion_tokens` can cost: every prompt token at the dearer of
        the input and cache-write prices (a call whose prompt the provider writes to its cache pays more than one
        that reads nothing)."""
        return (prompt_tokens * max(self.input, self.written) + completion_tokens * self.output) / 1e6

    def scaled(self, factor: float) -> Price:
        """This price times `factor` (a batch API's discount), on every tier."""
        table = tuple((name, _scaled(parts, factor)) for name, parts in self.table)
        own = _scaled((self.input, self.cached_input, self.output, self.cache_write), factor)
        return Price(*own, tier=self.tier, table=table)

    def at(self, tier: str | None) -> Price:
        """The price of a call served on `tier` (None: this price's own tier). A tier whose price is not known (a
        reply naming a tier refed has no price for, or UNSTATED: none where a tier was asked for): never less than
        this price nor the default tier's, the dearer of the two, part by part (its cache-write price too)."""
        if tier is None or tier == self.tier:
            return self
        known = dict(self.table)
        if tier in known:
            return Price(*known[tier], tier=tier, table=self.table)
        mine = (self.input, self.cached_input, self.output, self.cache_write)
        base = known.get("default", mine)
        parts = [max(a, b) for a, b in zip(mine[:3], base[:3], strict=True)]
        writes = [w for w in (mine[3], base[3]) if w is not None]
        write = max([*writes, parts[0]]) if writes else None
        return Price(*parts, write, tier=tier, table=self.table)

    @property
    def tiers(self) -> tuple[str, ...]:
        """The service tiers this model has a known price on (just this price's own when no table was given)."""
        return tuple(name for name, _ in self.table) or (self.tier,)

    def dearer_than(self, other: Price) -> float:
        """How many times `other` this price is at most, part by part (1 when it is not dearer): what a reservation
        made at `other` is raised by for a call at this price."""
        pairs = ((self.input, other.input), (self.written, other.written), (self.output, other.output))
        return max([1.0, *(a / b for a, b in pairs if b > 0)])


def _scaled(parts: _Prices, factor: float) -> _Prices:
    """One tier's prices times `factor` (an unset cache-write price stays unset: at the scaled input price)."""
    inp, cached, out, write = parts
    return (inp * factor, cached * factor, out * factor, None if write is None else write * factor)


_KEYS = (
    "input_cost_per_token",
    "cache_read_input_token_cost",
    "output_cost_per_token",
    "cache_creation_input_token_cost",
)


@functools.lru_cache(maxsize=1)
def _price_map() -> dict[str, dict[str, _Given]]:
    """LiteLLM's price map: {model: {tier: (input, cached input, output, cache write) USD per token}}, the tiers being
    those it prices (`default` from its plain keys, `flex` and `priority` from the keys ending `_flex` and
    `_priority`), from its model table (refed_dspy.providers.litellm_table: read without importing LiteLLM)."""
    out: dict[str, dict[str, _Given]] = {}
    for name, e in litellm_models().items():
        if not isinstance(e, dict):
            continue
        tiers = {}
        for tier in SERVICE_TIERS:
            end = "" if tier == "default" else f"_{tier}"
            found = tuple(e.get(key + end) for key in _KEYS)
            if tier == "default" or found[0] is not None or found[2] is not None:
                tiers[tier] = found
        out[name] = tiers
    return out


def list_prices(model: str) -> dict[str, _Prices]:
    """The list prices of `model` in LiteLLM's price map, USD per 1M tokens by service tier (provider prefix and date
    suffix ignored when the map has no entry under the full name); {} when the map does not know it (or prices it at
    nothing). A tier is there when both its input and output prices are (a cached price it lacks is its input's). A
    tier without a cache-write price of its own has the default tier's ratio of cache write to input (None: at its
    input price)."""
    table = _price_map()
    for name in table_names(model):
        tiers = table.get(name) or {}
        inp, _, out, _ = tiers.get("default", (None, None, None, None))
        if not inp and not out:
            continue
        d_in, _, _, d_write = tiers["default"]
        ratio = float(d_write) / float(d_in) if d_write is not None and d_in else None
        found = {}
        for tier, (i, c, o, w) in tiers.items():
            if tier != "default" and (i is None or o is None):
                continue
            if w is None and ratio is not None and i is not None:
                w = float(i) * ratio
            per_m = tuple(round(float(v or 0) * 1e6, 6) for v in (i, c if c is not None else i, o))
            found[tier] = (*per_m, None if w is None else round(float(w) * 1e6, 6))
        return found
    return {}


def default_price(model: str) -> Price | None:
    """The list price of `model` in LiteLLM's price map on the default tier (carrying its other tiers' prices), or
    None when the map does not know it (or prices it at nothing)."""
    return resolve_price(model, None, None, None)


def close_priced_names(model: str, n: int = 1) -> list[str]:
    """Names in LiteLLM's price map close to `model` (a typo's likely meaning), with `model`'s provider prefix where it
    had one and the map's name has none; [] when none is close."""
    import difflib

    prefix, bare = model.split("/", 1) if "/" in model else ("", model)
    table = _price_map()
    plain = [name for name in table if "/" not in name]  # the map's own names of a provider's models
    # a bare name with a path of its own (an organisation's model, `meta-llama/Llama-3.1-8B`) is no typo of the map's
    near = difflib.get_close_matches(bare, plain, n, 0.85) if "/" not in bare else []
    found = [f"{prefix}/{name}" if prefix else name for name in near]
    # a name under another provider's prefix is another provider's model, not a typo of this one
    prefixed = [name for name in table if "/" in name and (not prefix or name.startswith(f"{prefix}/"))]
    found = found or difflib.get_close_matches(model, prefixed, n=n, cutoff=0.85)
    return [name for name in found if name != model]


def _resolved(own: Sequence[float | None], listed: _Prices | None, marked: MarkedCache | None) -> _Prices | None:
    """One tier's prices: the config's where given, else the list's; None when its input or output stays unknown. An
    unset cached price is the list's when the input's is the list's too, else the input's. An unset cache-write price
    keeps the list's ratio of cache write to input (Anthropic: 1.25x), so that a write is never priced below what the
    provider charges for it. A model the list does not price, of a provider that caches what a request marks
    (`marked`), has its unset cached and cache-write prices at that provider's factors of its input price."""
    inp_usd, cached_usd, out_usd, write_usd = (*own, None, None, None, None)[:4]
    inp = inp_usd if inp_usd is not None else (listed[0] if listed else None)
    out = out_usd if out_usd is not None else (listed[2] if listed else None)
    if inp is None or out is None:
        return None
    if listed is None and marked is not None:
        cached = cached_usd if cached_usd is not None else inp * marked.read_factor
        return (inp, cached, out, write_usd if write_usd is not None else inp * marked.write_factor)
    cached = cached_usd if cached_usd is not None else (listed[1] if listed and inp_usd is None else inp)
    write = write_usd
    if write is None and listed is not None and listed[3] is not None:
        write = listed[3] if inp_usd is None or not listed[0] else listed[3] / listed[0] * inp
    return (inp, cached, out, write)


def resolve_price(
    model: str,
    input_usd: float | None,
    cached_usd: float | None,
    output_usd: float | None,
    write_usd: float | None = None,
    tier_prices: Mapping[str, Sequence[float | None]] | None = None,
    tier: str = "default",
) -> Price | None:
    """The price of `model` on service tier `tier`: config prices where given (the default tier's from the price
    arguments, another tier's from `tier_prices`: (input, cached input, output[, cache write])), else LiteLLM's price
    map; None when that tier's input or output price is unknown. The Price carries every tier whose price is known."""
    listed = list_prices(model)
    marked = provider_for(model).marked_cache
    own = {"default": (input_usd, cached_usd, output_usd, write_usd), **(tier_prices or {})}
    table: dict[str, _Prices] = {}
    for name in SERVICE_TIERS:
        found = _resolved(own.get(name, ()), listed.get(name), marked)
        base = table.get("default")
        if found is not None and found[3] is None and base is not None and base[3] is not None and base[0]:
            found = (*found[:3], base[3] / base[0] * found[0])  # a tier's write costs what the default's does, pro rata
        if found is not None:
            table[name] = found
    if tier not in table:
        return None
    return Price(*table[tier], tier=tier, table=tuple(table.items()))


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
