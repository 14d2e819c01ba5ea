"""Token and cost accounting over CallInfo lists, and how its figures are written (an amount of money wherever refed
prints one: `usd`, `usd_up_to`); pure, no I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from refed_dspy.clients.calls import CallInfo
from refed_dspy.providers.prices import UNSTATED, Price

COUNT_FIELDS = (  # the counts of a usage dict, whole numbers (ledger/lines.py checks them so)
    "calls",
    "cached_calls",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "parse_failures",
    "repairs",
    "failed_calls",
    "interrupted_calls",
    "unmetered_calls",
)


def _priced(price: Price, tokens: dict[str, Any]) -> float:
    """The cost of `tokens` (calls, prompt, completion, cache reads and writes, reasoning, as a usage dict has them) at
    `price`, its calls at their mean prompt's length."""
    return price.cost(
        int(tokens.get("prompt_tokens") or 0),
        int(tokens.get("completion_tokens") or 0),
        int(tokens.get("cached_tokens") or 0),
        int(tokens.get("cache_write_tokens") or 0),
        int(tokens.get("reasoning_tokens") or 0),
        max(1, int(tokens.get("calls") or 0)),
    )


# counts present only when some call has them: a usage dict of a run without service tiers stays as it was
_SOME = ("tier_unavailable", "flex_fallbacks")


def _zero() -> dict[str, Any]:
    return {**dict.fromkeys(COUNT_FIELDS, 0), "interrupted_cost_usd": 0.0}


def zero_usage() -> dict[str, Any]:
    """A usage dict of no calls (every figure 0)."""
    return {**_zero(), "cost_usd": 0.0}


def _tally(bucket: dict[str, Any], key: str, n: int = 1) -> None:
    bucket[key] = bucket.get(key, 0) + n


def _call_cost(call: CallInfo, price: Price | None) -> float | None:
    """A paid call's cost: its own where it carries one (another model's LM), else at `price` on the tier that served
    it (see Price.at); None when neither is known."""
    if call.cost_usd is not None or price is None or call.tokens_unknown:
        return call.cost_usd
    return call.cost_at(price.at(call.service_tier))


def usage_of(calls: Iterable[CallInfo], price: Price | None) -> dict[str, Any]:
    """Usage of a group of calls: counts and tokens of paid calls, cache hits apart, cost, per stage.

    Cache hits (answers replayed from the run's cache) are counted in `cached_calls` and cost nothing.
    `reasoning_tokens` are the completion tokens a reasoning model spent thinking: inside `completion_tokens`, billed
    as output, said apart.
    Of the paid calls, `parse_failures` counts replies that broke their format or contract and `repairs`
    the calls that asked again; `lm_seconds` sums their latencies. `failed_calls` are requests that got no
    reply (429, 5xx, resets; not in `calls`). `interrupted_calls` were in flight when their work was cancelled, or
    given up at the client's timeout: counted in `calls` as paid, their tokens unknown; `interrupted_cost_usd` is the
    most they can have cost (each at its `cost_bound_usd`), outside `cost_usd`; `worker_lost_calls` (present only when
    there are some) are those of them that were in flight on a Ray worker when it was lost. `unmetered_calls` were
    answered by an LM that reported no token usage: counted in `calls`, their tokens unknown. A call that carries its own
    `cost_usd` (made by an LM of another model than `price` is for) costs that. `cost_usd` is None when the
    model's price is unknown, or when some call's tokens are.
    """
    total: dict[str, Any] = _zero()
    by_stage: dict[str, dict[str, Any]] = defaultdict(_zero)
    costs: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])  # per bucket: the paid calls' cost, those unpriced
    for call in calls:
        cost = _call_cost(call, price) if call.error is None and not call.interrupted else None
        for bucket in (total, by_stage[call.stage]):
            if call.error is not None:
                bucket["failed_calls"] += 1
                if call.tier_unavailable:
                    _tally(bucket, "tier_unavailable")
                continue
            if call.interrupted:
                bucket["calls"] += 1
                bucket["interrupted_calls"] += 1
                if call.lost_with:  # in flight on a Ray worker that was lost: said apart (only when there are some)
                    bucket["worker_lost_calls"] = bucket.get("worker_lost_calls", 0) + 1
                bucket["interrupted_cost_usd"] += call.cost_bound_usd or 0.0
                continue
            if call.cache_hit:
                bucket["cached_calls"] += 1
                continue
            bucket["calls"] += 1
            bucket["unmetered_calls"] += call.tokens_unknown
            bucket["prompt_tokens"] += call.prompt_tokens
            bucket["completion_tokens"] += call.completion_tokens
            bucket["cached_tokens"] += call.cached_tokens
            bucket["cache_write_tokens"] += call.cache_write_tokens
            bucket["reasoning_tokens"] += call.reasoning_tokens
            bucket["parse_failures"] += call.parse_error
            bucket["repairs"] += call.repair
            bucket["lm_seconds"] = round(bucket.get("lm_seconds", 0.0) + call.seconds, 3)
            if call.service_tier is not None:
                bucket.setdefault("by_tier", {})
                _tally(bucket["by_tier"], call.service_tier)
            if call.fallback:
                _tally(bucket, "flex_fallbacks")
            paid = costs[id(bucket)]
            paid[0] += cost or 0.0
            paid[1] += cost is None
    for bucket in (total, *by_stage.values()):
        paid = costs.get(id(bucket), [0.0, 0])
        priced = price is not None or id(bucket) in costs
        bucket["cost_usd"] = None if bucket["unmetered_calls"] or paid[1] or not priced else paid[0]
    total["by_stage"] = dict(by_stage)
    return total


def prompt_cache_share(*usages: dict[str, Any] | None) -> dict[str, Any]:
    """Of the prompt tokens of `usages` (usage dicts, summed), those read from the provider's prompt cache and those
    written to it, and their shares (None before any prompt token)."""
    prompt = sum(int((u or {}).get("prompt_tokens") or 0) for u in usages)
    read = sum(int((u or {}).get("cached_tokens") or 0) for u in usages)
    written = sum(int((u or {}).get("cache_write_tokens") or 0) for u in usages)
    return {
        "prompt_tokens": prompt,
        "read_tokens": read,
        "written_tokens": written,
        "read_share": round(read / prompt, 4) if prompt else None,
        "written_share": round(written / prompt, 4) if prompt else None,
    }


def prompt_cache_text(share: dict[str, Any]) -> str:
    """What `prompt_cache_share` says, in words ('' when nothing was read from the cache or written to it)."""
    if share["read_share"] is None or not (share["read_tokens"] or share["written_tokens"]):
        return ""
    text = f"{share['read_share']:.1%} of prompt tokens read from the provider's cache"
    if share["written_tokens"]:
        text += f", {share['written_share']:.1%} written to it"
    return text


class Totals:
    """Running totals of usage dicts (as stored in records), by stage; owned by one task."""

    def __init__(self) -> None:
        self.total: dict[str, Any] = {**_zero(), "cost_usd": 0.0}
        self.by_stage: dict[str, dict[str, Any]] = {}
        self.cost_known = True
        self.unpriced_stages: set[str] = set()  # stages with a call of unknown cost: their cost is unknown too

    def add(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self._merge(self.total, usage)
        for name, part in (usage.get("by_stage") or {}).items():
            bucket = self.by_stage.setdefault(name, {**_zero(), "cost_usd": 0.0})
            self._merge(bucket, part)
            if part.get("cost_usd") is None and part.get("calls"):
                self.unpriced_stages.add(name)

    def _merge(self, bucket: dict[str, Any], usage: dict[str, Any]) -> None:
        for key in COUNT_FIELDS:
            bucket[key] += int(usage.get(key) or 0)
        if usage.get("worker_lost_calls"):
            bucket["worker_lost_calls"] = bucket.get("worker_lost_calls", 0) + int(usage["worker_lost_calls"])
        if usage.get("lm_seconds"):
            bucket["lm_seconds"] = round(bucket.get("lm_seconds", 0.0) + float(usage["lm_seconds"]), 3)
        bucket["interrupted_cost_usd"] = bucket.get("interrupted_cost_usd", 0.0) + float(
            usage.get("interrupted_cost_usd") or 0.0
        )
        if usage.get("lost_in_flight"):  # calls in flight when a process was killed (refed_dspy.ledger.call_log)
            bucket["lost_in_flight"] = bucket.get("lost_in_flight", 0) + int(usage["lost_in_flight"])
        for key in _SOME:
            if usage.get(key):
                _tally(bucket, key, int(usage[key]))
        for tier, n in (usage.get("by_tier") or {}).items():
            _tally(bucket.setdefault("by_tier", {}), tier, int(n))
        cost = usage.get("cost_usd")
        if cost is None and usage.get("calls"):
            self.cost_known = False
        bucket["cost_usd"] += float(cost or 0.0)

    @property
    def calls(self) -> int:
        return self.total["calls"]

    @property
    def cost(self) -> float:
        return self.total["cost_usd"]

    @property
    def cost_bound(self) -> float:
        """The most the calls cut off (by a stop or the client's timeout) can have cost, on top of `cost`."""
        return self.total["interrupted_cost_usd"]

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.total)
        if not self.cost_known:
            out["cost_usd"] = None
        out["by_stage"] = {
            name: {**bucket, "cost_usd": None} if name in self.unpriced_stages else bucket
            for name, bucket in self.by_stage.items()
        }
        return out


def tier_text(usage: dict[str, Any] | None) -> str | None:
    """How a usage dict's calls went on the providers' service tiers, in words ("58 calls on flex, 2 on default, each
    priced at the list price of the tier that served it; 5 requests found no capacity on their tier ..."); None when
    every call was on the default tier and none found a tier without capacity."""
    u = usage or {}
    tiers = {tier: n for tier, n in (u.get("by_tier") or {}).items() if n}
    unavailable, fallbacks = int(u.get("tier_unavailable") or 0), int(u.get("flex_fallbacks") or 0)
    if set(tiers) <= {"default"} and not unavailable and not fallbacks:
        return None
    named = [f"{n} on {tier}" for tier, n in sorted(tiers.items(), key=lambda kv: -kv[1]) if tier != UNSTATED]
    if named:
        named[0] = named[0].replace(" on ", " calls on ", 1)
    parts = [f"{', '.join(named)}, each priced at the list price of the tier that served it"] if named else []
    if tiers.get(UNSTATED):
        parts.append(
            f"{tiers[UNSTATED]} whose reply named no tier, priced at the dearer of the tier asked for and the default"
        )
    if unavailable:
        parts.append(f"{unavailable} requests found no capacity on their tier (not billed; sent again after a wait)")
    if fallbacks:
        parts.append(f"{fallbacks} sent on the default tier after that (flex_fallback)")
    return "; ".join(parts)


# what a provider bills: counts (reasoning tokens are part of the completion tokens, said apart)
BILLED_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
CACHE_WRITE = "cache_write_tokens"  # billed too, where a provider writes to its prompt cache: said only when some were


def with_unrecorded(usage: dict[str, Any], answered: dict[str, dict[str, int]], price: Price | None) -> dict[str, Any]:
    """`usage` (what a run's records hold, as `Totals.as_dict` gives it) raised, stage by stage, to what the provider
    answered (`answered`: stage -> calls and tokens it billed). The difference is the paid calls no record holds
    (their work was cut off by a kill; a resume replays their answers from the cache): it is added to the stage and
    the total, and said apart under `unrecorded`. `usage` itself is not changed."""
    out = {**usage, "by_stage": {name: dict(bucket) for name, bucket in (usage.get("by_stage") or {}).items()}}
    fields = BILLED_FIELDS + ((CACHE_WRITE,) if any(b.get(CACHE_WRITE) for b in answered.values()) else ())
    gap_total = dict.fromkeys(fields, 0)
    for name, billed in answered.items():
        bucket = out["by_stage"].setdefault(name, {**_zero(), "cost_usd": 0.0})
        gap = {f: max(0, int(billed.get(f, 0)) - int(bucket.get(f) or 0)) for f in fields}
        if not any(gap.values()):
            continue
        cost = _priced(price, gap) if price else None
        for target in (bucket, out):
            for f in fields:
                target[f] = int(target.get(f) or 0) + gap[f]
            if target.get("cost_usd") is not None:
                target["cost_usd"] = target["cost_usd"] + cost if cost is not None else None
        for f in fields:
            gap_total[f] += gap[f]
    if any(gap_total.values()):
        cost = _priced(price, gap_total) if price else None
        said = {f: n for f, n in gap_total.items() if n or f != "reasoning_tokens"}  # reasoning where there is some
        out["unrecorded"] = {**said, "cost_usd": cost}
    return out


def usage_beyond(now: dict[str, Any] | None, before: dict[str, Any] | None) -> dict[str, Any]:
    """What usage `now` holds beyond `before` (a part of it): its counts, its cost (None when either is unknown) and
    the most its calls cut off could cost; what one invocation added to a command's whole spend."""
    now, before = now or {}, before or {}
    out: dict[str, Any] = {key: max(0, int(now.get(key) or 0) - int(before.get(key) or 0)) for key in COUNT_FIELDS}
    costs = (now.get("cost_usd", 0.0), before.get("cost_usd", 0.0))
    out["cost_usd"] = None if None in costs else max(0.0, float(costs[0] or 0.0) - float(costs[1] or 0.0))
    bound = float(now.get("interrupted_cost_usd") or 0.0) - float(before.get("interrupted_cost_usd") or 0.0)
    out["interrupted_cost_usd"] = max(0.0, bound)
    return out


def usd(cost: float | None, unknown: str = "cost unknown") -> str:
    """`$0.0123`, or `unknown` when the cost is not known (no price for the model, or an LM that reports no usage)."""
    return unknown if cost is None else f"${cost:.4f}"


def usd_up_to(cost: float | None, bound: float | None, unknown: str = "cost unknown") -> str:
    """`$0.0487`, or `$0.0487 (up to $0.0514)` when calls of unknown tokens (cut off, in flight when a process was
    killed, in a batch still open) may have cost up to `bound` more: what they were paid for is not known, only its
    most."""
    if cost is None or not bound:
        return usd(cost, unknown)
    return f"{usd(cost)} (up to {usd(cost + bound)})"


def larger_usage(ledger: dict[str, Any] | None, summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The larger of what a command's write-ahead ledger and its last summary say it spent (by calls, then cost): the
    summary holds what a ledger cut back by its last invocations would hide, the ledger what an invocation under way
    or killed since the summary paid."""
    if not summary or not ledger:
        return ledger or summary
    key = lambda u: (int(u.get("calls") or 0), float(u.get("cost_usd") or 0.0))  # noqa: E731 - used twice
    return summary if key(summary) > key(ledger) else ledger
