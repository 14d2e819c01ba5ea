"""What a provider answered in a run's batches, by stage: the calls and tokens it bills.

A batch run's records carry the usage of the calls their work made; a call answered by a batch whose work a kill
cut off is in no record (the resumed run finds its answer in the cache and pays nothing for it again). The batch
store holds every answer the provider gave, so a summary reads what was billed from it. Pure reading of the store.
"""

from __future__ import annotations

from typing import Any

from refed_dspy.clients.usage import BILLED_FIELDS, CACHE_WRITE
from refed_dspy.engine.batch_store import BatchStore
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


def answered_usage(store: BatchStore) -> dict[str, dict[str, int]]:
    """Stage -> the calls (successful answers) and tokens the provider gave in this store's batches."""
    out: dict[str, dict[str, int]] = {}
    for result in store.results.values():
        if result.lost or result.status != 200:
            continue
        entry = store.batches.get(result.batch)
        # an answer whose batch the journal lost (a torn line): read as one of the first batch API (by rank)
        api, stage = (entry.api, entry.stage) if entry is not None else (next(iter(batch_apis()), None), "unknown")
        prompt, completion, cached = tokens_of(api, result.body)
        bucket = out.setdefault(stage, dict.fromkeys((*BILLED_FIELDS, CACHE_WRITE), 0))
        bucket["calls"] += 1
        bucket["prompt_tokens"] += prompt
        bucket["completion_tokens"] += completion
        bucket["cached_tokens"] += cached
        bucket[CACHE_WRITE] += written_of(api, result.body)
        bucket["reasoning_tokens"] += reasoning_of(api, result.body)
    return out
