"""What a provider answered in a run's batches, and what it may still bill: by stage, against what the records hold.

A batch run's records carry the usage of the calls their work made; a call answered by a batch whose work a kill
cut off is in no record (the resumed run finds its answer in the cache and pays nothing for it again), and a request
in a batch still open at the provider may yet be answered and billed. The batch store holds every answer the provider
gave, and each request's bound (the most it can cost, written to the journal before its batch is sent), so what was
billed is read from it: by a summary (`answered_usage`, `open_requests`), and by the budget while the run goes on
(`BatchLedger`). Reading only: nothing here writes the store.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refed_dspy.clients.prompt_cache import count_text
from refed_dspy.launch.batch.store import BatchStore, StoredResult
from refed_dspy.ledger.usage import BILLED_FIELDS, CACHE_WRITE, with_unrecorded, zero_usage
from refed_dspy.providers.prices import Price
from refed_dspy.providers.registry import batch_apis


def tokens_of(api: str | None, body: Any) -> tuple[int, int, int]:
    """(prompt, completion, cached) tokens of one answered request's body from the batch API called `api`, counted as
    DSPy counts an online reply of its format (`Wire.usage`); (0, 0, 0) for an API no provider has."""
    known = batch_apis().get(api or "")
    return known.wire.tokens(body) if known is not None else (0, 0, 0)


def written_of(api: str | None, body: Any) -> int:
    """Prompt tokens of one answered request's body from the batch API called `api` written to the provider's prompt
    cache (0: none reported)."""
    known = batch_apis().get(api or "")
    return known.wire.cache_written(body) if known is not None else 0


def reasoning_of(api: str | None, body: Any) -> int:
    """The hidden reasoning tokens of one answered request's body (inside its completion tokens; 0 unsaid)."""
    known = batch_apis().get(api or "")
    return known.wire.reasoning_tokens(body) if known is not None else 0


def _zero() -> dict[str, int]:
    return dict.fromkeys((*BILLED_FIELDS, CACHE_WRITE), 0)


def billed_of(store: BatchStore, result: StoredResult) -> tuple[str, dict[str, int]]:
    """(stage, what the provider bills for it: one call and its tokens) of one successful answer in `store`."""
    entry = store.batches.get(result.batch)
    # an answer whose batch the journal lost (a torn line): read as one of the first batch API (by rank)
    api, stage = (entry.api, entry.stage) if entry is not None else (next(iter(batch_apis()), None), "unknown")
    prompt, completion, cached = tokens_of(api, result.body)
    return stage, {
        "calls": 1,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        CACHE_WRITE: written_of(api, result.body),
        "reasoning_tokens": reasoning_of(api, result.body),
    }


def _add(bucket: dict[str, int], figures: dict[str, int], sign: int = 1) -> None:
    for key, n in figures.items():
        bucket[key] = bucket.get(key, 0) + sign * n


def answered_usage(store: BatchStore) -> dict[str, dict[str, int]]:
    """Stage -> the calls (successful answers) and tokens the provider gave in this store's batches."""
    out: dict[str, dict[str, int]] = {}
    for result in store.results.values():
        if not result.lost and result.status == 200:
            stage, figures = billed_of(store, result)
            _add(out.setdefault(stage, _zero()), figures)
    return out


def answered_costs(store: BatchStore, price: Price | None) -> list[float]:
    """What each successful answer in `store` cost at `price` ([] without a price)."""
    if price is None:
        return []
    out = []
    for result in store.results.values():
        if not result.lost and result.status == 200:
            _, billed = billed_of(store, result)
            out.append(
                price.cost(
                    billed["prompt_tokens"], billed["completion_tokens"], billed["cached_tokens"], billed[CACHE_WRITE]
                )
            )
    return out


@dataclass(frozen=True)
class OpenRequest:
    """A request in a batch not yet collected, with no answer stored: the provider may answer and bill it."""

    custom_id: str
    stage: str
    bound: float | None  # the most it can cost, as its batch's plan wrote it (None: a plan written without bounds)


def open_requests(store: BatchStore) -> list[OpenRequest]:
    """The requests of the store's open batches that have no answer stored (each may still be billed)."""
    out = []
    for entry in store.open_batches():
        bounds = entry.bounds or [None] * len(entry.custom_ids)
        for cid, bound in zip(entry.custom_ids, bounds, strict=False):
            found = store.results.get(cid)
            if found is None or found.lost:
                out.append(OpenRequest(cid, entry.stage, bound))
    return out


def with_open(usage: dict[str, Any], requests: list[OpenRequest]) -> dict[str, Any]:
    """`usage` with the requests in open batches (`requests`) counted as calls in flight: paid at the most they can
    cost, their tokens unknown (`interrupted_calls`, `interrupted_cost_usd`), said apart as `in_open_batches`; a
    request whose bound is not known makes the cost unknown. `usage` itself is not changed."""
    if not requests:
        return usage
    out = {**usage, "by_stage": {name: dict(bucket) for name, bucket in (usage.get("by_stage") or {}).items()}}
    for req in requests:
        for bucket in (out, out["by_stage"].setdefault(req.stage, zero_usage())):
            for key in ("calls", "interrupted_calls", "in_open_batches"):
                bucket[key] = int(bucket.get(key) or 0) + 1
            bucket["interrupted_cost_usd"] = float(bucket.get("interrupted_cost_usd") or 0.0) + (req.bound or 0.0)
            if req.bound is None:
                bucket["cost_usd"] = None
    return out


def request_bound(price: Price | None, max_tokens: int) -> Callable[[dict[str, Any]], float]:
    """How the most one batch request can cost is reckoned from its body (the JSON the provider is sent): every token
    of the body, as counted before sending, priced as prompt (written to the provider's cache where that is dearer),
    and the output limit it asks for (`max_tokens` where it asks none) priced as output. 0 for an LM without a price."""

    def bound(body: dict[str, Any]) -> float:
        if price is None:
            return 0.0
        asked = body.get("max_tokens") or body.get("max_completion_tokens") or max_tokens
        return round(price.bound(count_text(json.dumps(body, ensure_ascii=False)), int(asked or 0)), 8)

    return bound


class BatchLedger:
    """What the run's batches paid, or may still bill, that no record holds and no piece of work of this invocation
    asked for: answers whose work a kill cut off (at their tokens' price, as a summary says them under
    `usage.unrecorded`) and requests of batches an earlier invocation left open (at their bound, until they are
    answered or asked for again). The budget charges it on top of what the records hold (CallBudget.apart), so that
    a run killed and resumed is stopped by what the provider bills, not by what its records hold.

    A request asked for by a piece of work of this invocation is that work's: its reservation covers it, and its
    record will hold it; it leaves this ledger (`claim`). An answer collected for a request nobody here asked for
    joins it (`collected`). `recorded` is what the records held when the run started, against which the answers of
    earlier invocations are weighed stage by stage (refed_dspy.ledger.usage.with_unrecorded)."""

    def __init__(self, store: BatchStore, recorded: dict[str, Any], price: Price | None, resubmits: int):
        self.store = store
        self.recorded = copy.deepcopy(recorded)
        self.price = price
        self.resubmits = resubmits
        self.unclaimed: dict[str, dict[str, int]] = {}  # stage -> answers no piece of work here asked for
        self.counted: set[str] = set()  # the custom_ids of those answers
        self.open = {req.custom_id: req for req in open_requests(store)}
        self.claimed: set[str] = set()  # the base ids asked for by this invocation's pieces of work
        for cid, result in store.results.items():
            self._answered(cid, result)
        self._figures: tuple[int, float, float] | None = None

    def _answered(self, cid: str, result: StoredResult) -> None:
        if cid in self.counted or result.lost or result.status != 200:
            return
        stage, figures = billed_of(self.store, result)
        _add(self.unclaimed.setdefault(stage, _zero()), figures)
        self.counted.add(cid)

    def claim(self, base: str) -> None:
        """A piece of work of this invocation asked for the request of custom_id family `base`: it is that work's."""
        if base in self.claimed:
            return
        self.claimed.add(base)
        for k in range(self.resubmits + 1):
            cid = f"{base}-{k}"
            self.open.pop(cid, None)
            if cid in self.counted:
                self.counted.discard(cid)
                stage, figures = billed_of(self.store, self.store.results[cid])
                _add(self.unclaimed[stage], figures, -1)
        self._figures = None

    def collected(self, results: list[StoredResult]) -> None:
        """Results of a batch are stored: those of requests nobody here asked for join the ledger as paid (answered) or
        leave it (unanswered: not billed)."""
        for result in results:
            if result.custom_id.rsplit("-", 1)[0] in self.claimed:
                continue
            self.open.pop(result.custom_id, None)
            self._answered(result.custom_id, result)
        self._figures = None

    def figures(self) -> tuple[int, float, float]:
        """(calls, their known cost, the most the open ones can cost): what the budget charges apart."""
        if self._figures is None:
            found = with_unrecorded(self.recorded, self.unclaimed, self.price).get("unrecorded") or {}
            bound = sum(req.bound or 0.0 for req in self.open.values())
            self._figures = (int(found.get("calls") or 0) + len(self.open), float(found.get("cost_usd") or 0.0), bound)
        return self._figures
