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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from refed_dspy.providers.base import MarkedCache
from refed_dspy.providers.litellm_table import litellm_models, table_names
from refed_dspy.providers.registry import PROVIDERS, provider_for

SERVICE_TIERS = ("default", "flex", "priority")  # the tiers a config may ask for (refed_dspy.providers.prices)
UNSTATED = "unstated"  # a call's tier when one was asked for and its reply named none (priced never below the default)


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens on one service tier (`tier`): uncached input, cached input (read from the provider's prompt
    cache), output, and prompt tokens written to the provider's prompt cache (`cache_write`; None: at the input price,
    as OpenAI's automatic cache writes them; Anthropic charges 1.25x its input price). Some models charge more: for
    hidden reasoning tokens (`reasoning`; None: at the output price), a fee per request whatever its tokens
    (`per_call`, USD: a search model's), and for every token of a call whose prompt is long (`above`: (n, the price
    of a call of n prompt tokens or more), ascending; gpt-5.4 past 272k, Gemini 2.5 Pro past 200k). `table` holds the
    model's price on every tier known (this one's included), so that `at` can price a call another tier served."""

    input: float
    cached_input: float
    output: float
    cache_write: float | None = None
    tier: str = "default"
    table: tuple[tuple[str, Price], ...] = field(default=(), compare=False)
    reasoning: float | None = None
    per_call: float = 0.0
    above: tuple[tuple[int, Price], ...] = ()

    @property
    def written(self) -> float:
        """USD per 1M prompt tokens written to the provider's cache."""
        return self.input if self.cache_write is None else self.cache_write

    @property
    def reasoned(self) -> float:
        """USD per 1M hidden reasoning tokens."""
        return self.output if self.reasoning is None else self.reasoning

    def for_prompt(self, prompt_tokens: float) -> Price:
        """The price of a call of `prompt_tokens` prompt tokens: the step of `above` it reaches, else this one (a
        prompt of exactly a step's length at the step's price, never below what any provider charges for it)."""
        found = self
        for n, price in self.above:
            if prompt_tokens >= n:
                found = price
        return found

    def cost(
        self,
        prompt_tokens: float,
        completion_tokens: float,
        cached_tokens: float = 0,
        written_tokens: float = 0,
        reasoning_tokens: float = 0,
        calls: float = 1,
    ) -> float:
        """Cost of `calls` calls (one by default) of these tokens in all. `prompt_tokens` includes the tokens read
        from the provider's cache (`cached_tokens`) and those written to it (`written_tokens`), and
        `completion_tokens` the hidden reasoning tokens (`reasoning_tokens`), as refed counts them for every
        provider. Calls of more than one are priced at their mean prompt's length."""
        p = self.for_prompt(prompt_tokens / max(calls, 1))
        cached = min(cached_tokens, prompt_tokens)
        written = min(written_tokens, prompt_tokens - cached)
        reasoning = min(reasoning_tokens, completion_tokens)
        return (
            (prompt_tokens - cached - written) * p.input
            + cached * p.cached_input
            + written * p.written
            + (completion_tokens - reasoning) * p.output
            + reasoning * p.reasoned
        ) / 1e6 + calls * p.per_call

    def bound(self, prompt_tokens: float, completion_tokens: float, calls: float = 1) -> float:
        """The most `calls` calls (one by default) of `prompt_tokens` and `completion_tokens` in all can cost: every
        prompt token at the dearer of the input and cache-write prices (a call whose prompt the provider writes to its
        cache pays more than one that reads nothing), every output token at the dearer of the output and reasoning
        prices, and each call's fee."""
        p = self.for_prompt(prompt_tokens / max(calls, 1))
        tokens = prompt_tokens * max(p.input, p.written) + completion_tokens * max(p.output, p.reasoned)
        return tokens / 1e6 + calls * p.per_call

    def scaled(self, factor: float) -> Price:
        """This price times `factor` (a batch API's discount), on every tier; a fee per request stays as it is."""
        return _scaled(self, factor, tuple((name, _scaled(price, factor, ())) for name, price in self.table))

    def at(self, tier: str | None) -> Price:
        """The price of a call served on `tier` (None: this price's own tier). A tier whose price is not known (a
        reply naming a tier refed has no price for, or UNSTATED: none where a tier was asked for): never less than
        this price nor the default tier's, the dearer of the two, part by part (its cache-write price too)."""
        if tier is None or tier == self.tier:
            return self
        known = dict(self.table)
        if tier in known:
            return replace(known[tier], table=self.table)
        return replace(_dearer(self, known.get("default", self), tier), table=self.table)

    @property
    def tiers(self) -> tuple[str, ...]:
        """The service tiers this model has a known price on (just this price's own when no table was given)."""
        return tuple(name for name, _ in self.table) or (self.tier,)

    @functools.cached_property
    def dearest_tier(self) -> str | None:
        """The tier dearest above this price's own that this model has a known price on (an OpenAI model's priority
        tier, which a project set to it serves a request naming no tier on); None when none is dearer. Asked before
        each call: worked out once a price."""
        dearer = [(self.at(t).dearer_than(self), t) for t in self.tiers if t != self.tier]
        return max((d for d in dearer if d[0] > 1), default=(1.0, None))[1]

    def dearer_than(self, other: Price) -> float:
        """How many times `other` this price is at most, part by part and at every prompt length (1 when it is not
        dearer): what a reservation made at `other` is raised by for a call at this price."""
        lengths = sorted({0, *(n for n, _ in self.above), *(n for n, _ in other.above)})
        return max(_ratio(self.for_prompt(n), other.for_prompt(n)) for n in lengths)


def _ratio(a: Price, b: Price) -> float:
    """How many times `b` one-length price `a` is at most, part by part (1 when it is not dearer)."""
    pairs = ((a.input, b.input), (a.written, b.written), (a.output, b.output), (a.reasoned, b.reasoned))
    return max([1.0, *(x / y for x, y in pairs if y > 0), a.per_call / b.per_call if b.per_call else 1.0])


def _scaled(price: Price, factor: float, table: tuple[tuple[str, Price], ...]) -> Price:
    """`price` times `factor` with its steps (an unset cache-write or reasoning price stays unset: at the scaled
    input or output price), carrying `table`."""
    return replace(
        price,
        input=price.input * factor,
        cached_input=price.cached_input * factor,
        output=price.output * factor,
        cache_write=None if price.cache_write is None else price.cache_write * factor,
        reasoning=None if price.reasoning is None else price.reasoning * factor,
        above=tuple((n, _scaled(step, factor, ())) for n, step in price.above),
        table=table,
    )


def _dearer(a: Price, b: Price, tier: str) -> Price:
    """The dearer of `a` and `b` part by part, at every prompt length, as a price on `tier`."""
    parts = [max(x, y) for x, y in ((a.input, b.input), (a.cached_input, b.cached_input), (a.output, b.output))]
    writes = [w for w in (a.cache_write, b.cache_write) if w is not None]
    reasonings = [r for r in (a.reasoning, b.reasoning) if r is not None]
    lengths = sorted({n for n, _ in a.above + b.above})
    return Price(
        *parts,
        max([*writes, parts[0]]) if writes else None,
        tier=tier,
        reasoning=max([*reasonings, parts[2]]) if reasonings else None,
        per_call=max(a.per_call, b.per_call),
        above=tuple((n, _dearer(a.for_prompt(n), b.for_prompt(n), tier)) for n in lengths),
    )


_KEYS = (
    "input_cost_per_token",
    "cache_read_input_token_cost",
    "output_cost_per_token",
    "cache_creation_input_token_cost",
)
_STEP = re.compile(r"^input_cost_per_token_above_(\d+)(k?)_tokens$")
# a fee on every request, not on the search tool a request may ask for (Gemini's grounding): search models' own
_SEARCHES = re.compile(r"(^|/)(sonar|[^/]*search)")
_RESEARCHES = re.compile(r"deep-research")  # a model that searches as often as it likes within one request


@functools.lru_cache(maxsize=1)
def _price_map() -> dict[str, dict[str, Price]]:
    """LiteLLM's price map: {model: {tier: Price}} (no table), the tiers being those it prices (`default` from its
    plain keys, `flex` and `priority` from the keys ending `_flex` and `_priority`) where both its input and output
    prices are known and not both nothing, from its model table (refed_dspy.providers.litellm_table: read without
    importing LiteLLM)."""
    out: dict[str, dict[str, Price]] = {}
    for name, e in litellm_models().items():
        if not isinstance(e, dict):
            continue
        default = _listed(name, e, "", None)
        if default is None:
            continue
        tiers = {"default": default}
        for tier in SERVICE_TIERS[1:]:
            found = _listed(name, e, f"_{tier}", default)
            if found is not None:
                tiers[tier] = replace(found, tier=tier)
        out[name] = tiers
    return out


def _listed(name: str, e: dict, end: str, default: Price | None) -> Price | None:
    """The price map's price of one tier of model `name` (entry `e`, its keys ending `end`), USD per 1M tokens, or None
    when its input or output price is unknown (or both nothing). Its long-prompt steps are its own keys', else the
    `default` tier's, each part moved as this tier's base price is to the default's; a model LiteLLM prices by the
    prompt's range (`tiered_pricing`) has a step at the start of each range."""
    if _RESEARCHES.search(name) or "citation_cost_per_token" in e:
        return None  # searches (and citations) a request makes as many as it likes: no price holds for its calls
    fee = _fee(name, e)
    ranged = sorted(
        (t for t in e.get("tiered_pricing") or () if isinstance(t, dict) and _range_start(t) is not None),
        key=_range_start,
    )
    if ranged and not end:  # LiteLLM prices a prompt by the range it falls in, whatever the plain keys say
        parts = [(int(_range_start(t)), _parts(t, "", None, fee)) for t in ranged]
        if any(part is None for _, part in parts):
            return None
        base = replace(parts[0][1], above=tuple((n, part) for n, part in parts[1:]))
    else:
        base = _parts(e, end, default, fee)
        if base is None:
            return None
        steps = _steps(e, end, base) or tuple(
            (n, _as(step, base, default)) for n, step in (default.above if default else ())
        )
        base = replace(base, above=steps)
    return None if default is None and not base.input and not base.output else base


def _range_start(tier: dict) -> float | None:
    """Where a `tiered_pricing` range starts, in prompt tokens (None: a range it does not state as numbers)."""
    span = tier.get("range")
    try:
        return float(span[0]) if isinstance(span, (list, tuple)) and span else None
    except (TypeError, ValueError):
        return None


def _parts(d: dict, end: str, default: Price | None, fee: float) -> Price | None:
    """One price from the keys of `d` ending `end` (None when its input or output price is not there): a cached price
    it lacks is its input's, a cache-write or reasoning price it lacks keeps the `default` tier's ratio to its input or
    output price."""
    inp, cached, out, write = (d.get(key + end) for key in _KEYS)
    if inp is None or out is None:
        return None
    i, c, o = _per_m(inp, inp if cached is None else cached, out)
    w = None if write is None else _per_m(write)[0]
    if w is None and default is not None and default.cache_write is not None and default.input:
        w = i * default.cache_write / default.input
    r = d.get("output_cost_per_reasoning_token" + end)
    reasoning = _per_m(r)[0] if r is not None else None
    if reasoning is None and default is not None and default.reasoning is not None:
        reasoning = default.reasoning * o / default.output if default.output else default.reasoning
    return Price(i, c, o, w, reasoning=reasoning, per_call=fee)


def _fee(name: str, e: dict) -> float:
    """USD a request of model `name` pays whatever its tokens: a search model's fee per query at the dearest search
    context size (refed cannot tell which the provider used), and a fee per request."""
    fees = e.get("search_context_cost_per_query") if _SEARCHES.search(name) else None
    per_query = max(fees.values(), default=0.0) if isinstance(fees, dict) else 0.0
    return float(per_query) + float(e.get("input_cost_per_request") or 0.0)


def _steps(e: dict, end: str, base: Price) -> tuple[tuple[int, Price], ...]:
    """The long-prompt steps of a tier (`end`) in entry `e`: each step's parts it lacks at `base`'s, raised by the
    step's own input ratio."""
    steps = []
    for key in e:
        m = _STEP.match(key.removesuffix(end)) if key.endswith(end) else None
        if m is None or e.get(key) is None:
            continue
        n = int(m[1]) * (1000 if m[2] else 1)
        above = f"_above_{m[1]}{m[2]}_tokens{end}"
        inp = _per_m(e[key])[0]
        raise_ = inp / base.input if base.input else 1.0
        own = [e.get(part + above) for part in _KEYS]
        steps.append(
            (
                n,
                replace(
                    base,
                    input=inp,
                    cached_input=_per_m(own[1])[0] if own[1] is not None else base.cached_input * raise_,
                    output=_per_m(own[2])[0] if own[2] is not None else base.output,
                    cache_write=_per_m(own[3])[0]
                    if own[3] is not None
                    else (None if base.cache_write is None else base.cache_write * raise_),
                ),
            )
        )
    return tuple(sorted(steps, key=lambda step: step[0]))


def _per_m(*usd_per_token: float) -> tuple[float, ...]:
    return tuple(round(float(v or 0) * 1e6, 6) for v in usd_per_token)


def list_prices(model: str) -> dict[str, Price]:
    """The list prices of `model` in LiteLLM's price map by service tier (provider prefix and date suffix ignored when
    the map has no entry under the full name); {} when the map does not know it (or prices it at nothing)."""
    table = _price_map()
    for name in table_names(model):
        if name in table:
            return table[name]
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


def _resolved(own: Sequence[float | None], listed: Price | None, marked: MarkedCache | None, tier: str) -> Price | None:
    """One tier's price: the config's where given, else the list's; None when its input or output stays unknown. An
    unset cached price is the list's when the input's is the list's too, else the input's. An unset cache-write price
    keeps the list's ratio of cache write to input (Anthropic: 1.25x), so that a write is never priced below what the
    provider charges for it. The list's reasoning price, fee per request and long-prompt steps stay, each part raised
    or lowered as the config's price of it is to the list's. A model the list does not price, of a provider that
    caches what a request marks (`marked`), has its unset cached and cache-write prices at that provider's factors of
    its input price."""
    inp_usd, cached_usd, out_usd, write_usd = (*own, None, None, None, None)[:4]
    inp = inp_usd if inp_usd is not None else (listed.input if listed else None)
    out = out_usd if out_usd is not None else (listed.output if listed else None)
    if inp is None or out is None:
        return None
    if listed is None:
        if marked is not None:
            cached = cached_usd if cached_usd is not None else inp * marked.read_factor
            return Price(inp, cached, out, write_usd if write_usd is not None else inp * marked.write_factor, tier=tier)
        return Price(inp, cached_usd if cached_usd is not None else inp, out, write_usd, tier=tier)
    cached = cached_usd if cached_usd is not None else (listed.cached_input if inp_usd is None else inp)
    write = write_usd
    if write is None and listed.cache_write is not None:
        write = listed.cache_write if inp_usd is None or not listed.input else listed.cache_write / listed.input * inp
    price = Price(inp, cached, out, write, tier=tier)
    return replace(_as(listed, price), above=tuple((n, _as(step, price, listed)) for n, step in listed.above))


def _as(listed: Price, own: Price, base: Price | None = None) -> Price:
    """`listed` (a list price, or one of its long-prompt steps over the list price `base`) with each part raised or
    lowered as `own` is to the list's price of it; its reasoning price as the output's, its fee per request as it is."""
    base = base or listed

    def part(value: float | None, mine: float | None, theirs: float | None) -> float | None:
        if value is None or mine is None or mine == theirs:
            return mine if value is None else value
        return value * mine / theirs if theirs else mine

    write = part(listed.cache_write, own.cache_write, base.cache_write)
    if listed is not base and listed.cache_write is None and own.cache_write is not None and base.input:
        write = own.cache_write * listed.input / base.input  # a step's write costs more as its input does
    return Price(
        part(listed.input, own.input, base.input),
        part(listed.cached_input, own.cached_input, base.cached_input),
        part(listed.output, own.output, base.output),
        write,
        tier=own.tier,
        reasoning=None
        if listed.reasoning is None
        else listed.reasoning * (own.output / base.output if base.output else 1),
        per_call=listed.per_call,
    )


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
    table: dict[str, Price] = {}
    for name in SERVICE_TIERS:
        found = _resolved(own.get(name, ()), listed.get(name), marked, name)
        base = table.get("default")
        if found is not None and found.cache_write is None and base is not None and base.cache_write is not None:
            # a tier's write costs what the default's does, pro rata
            found = replace(found, cache_write=base.cache_write / base.input * found.input if base.input else None)
        if found is not None:
            table[name] = found
    if tier not in table:
        return None
    return replace(table[tier], table=tuple(table.items()))


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
