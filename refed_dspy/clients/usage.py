"""Token and cost accounting over CallInfo lists; pure arithmetic, no I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from refed_dspy.clients.lm import CallInfo
from refed_dspy.clients.pricing import Price

_FIELDS = (
    "calls",
    "cached_calls",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "parse_failures",
    "repairs",
    "failed_calls",
    "interrupted_calls",
)


def usage_of(calls: Iterable[CallInfo], price: Price | None) -> dict[str, Any]:
    """Usage of a group of calls: counts and tokens of paid calls, cache hits apart, cost, per stage.

    Cache hits (answers replayed from the run's cache) are counted in `cached_calls` and cost nothing.
    Of the paid calls, `parse_failures` counts replies that broke their format or contract and `repairs`
    the calls that asked again; `lm_seconds` sums their latencies. `failed_calls` are requests that got no
    reply (429, 5xx, timeouts, resets; not in `calls`). `interrupted_calls` were in flight when their work
    was cancelled: counted in `calls` as paid, their tokens unknown. `cost_usd` is None when the model's
    price is unknown.
    """
    total: dict[str, Any] = dict.fromkeys(_FIELDS, 0)
    by_stage: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(_FIELDS, 0))
    for call in calls:
        for bucket in (total, by_stage[call.stage]):
            if call.error is not None:
                bucket["failed_calls"] += 1
                continue
            if call.interrupted:
                bucket["calls"] += 1
                bucket["interrupted_calls"] += 1
                continue
            if call.cache_hit:
                bucket["cached_calls"] += 1
                continue
            bucket["calls"] += 1
            bucket["prompt_tokens"] += call.prompt_tokens
            bucket["completion_tokens"] += call.completion_tokens
            bucket["cached_tokens"] += call.cached_tokens
            bucket["parse_failures"] += call.parse_error
            bucket["repairs"] += call.repair
            bucket["lm_seconds"] = round(bucket.get("lm_seconds", 0.0) + call.seconds, 3)
    for bucket in (total, *by_stage.values()):
        bucket["cost_usd"] = (
            price.cost(bucket["prompt_tokens"], bucket["completion_tokens"], bucket["cached_tokens"]) if price else None
        )
    total["by_stage"] = dict(by_stage)
    return total


class Totals:
    """Running totals of usage dicts (as stored in records), by stage; owned by one task."""

    def __init__(self) -> None:
        self.total: dict[str, Any] = dict.fromkeys(_FIELDS, 0)
        self.total["cost_usd"] = 0.0
        self.by_stage: dict[str, dict[str, Any]] = {}
        self.cost_known = True

    def add(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self._merge(self.total, usage)
        for name, part in (usage.get("by_stage") or {}).items():
            bucket = self.by_stage.setdefault(name, {**dict.fromkeys(_FIELDS, 0), "cost_usd": 0.0})
            self._merge(bucket, part)

    def _merge(self, bucket: dict[str, Any], usage: dict[str, Any]) -> None:
        for key in _FIELDS:
            bucket[key] += int(usage.get(key) or 0)
        if usage.get("lm_seconds"):
            bucket["lm_seconds"] = round(bucket.get("lm_seconds", 0.0) + float(usage["lm_seconds"]), 3)
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

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.total)
        if not self.cost_known:
            out["cost_usd"] = None
        out["by_stage"] = self.by_stage
        return out
