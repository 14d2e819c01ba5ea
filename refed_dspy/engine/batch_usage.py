"""What a provider answered in a run's batches, by stage: the calls and tokens it bills.

A batch run's records carry the usage of the calls their work made; a call answered by a batch whose work a kill
cut off is in no record (the resumed run finds its answer in the cache and pays nothing for it again). The batch
store holds every answer the provider gave, so a summary reads what was billed from it. Pure reading of the store.
"""

from __future__ import annotations

from typing import Any

from refed_dspy.clients.usage import BILLED_FIELDS
from refed_dspy.engine.batch_store import BatchStore


def tokens_of(api: str, body: Any) -> tuple[int, int, int]:
    """(prompt, completion, cached) tokens of one answered request's body, counted as DSPy counts an online reply
    (an Anthropic prompt includes the cache reads and writes)."""
    usage = (body.get("usage") or {}) if isinstance(body, dict) else {}
    if api == "anthropic":
        read = int(usage.get("cache_read_input_tokens") or 0)
        written = int(usage.get("cache_creation_input_tokens") or 0)
        return int(usage.get("input_tokens") or 0) + read + written, int(usage.get("output_tokens") or 0), read
    details = usage.get("prompt_tokens_details") or {}
    return (
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0),
    )


def answered_usage(store: BatchStore) -> dict[str, dict[str, int]]:
    """Stage -> the calls (successful answers) and tokens the provider gave in this store's batches."""
    out: dict[str, dict[str, int]] = {}
    for result in store.results.values():
        if result.lost or result.status != 200:
            continue
        entry = store.batches.get(result.batch)
        api, stage = (entry.api, entry.stage) if entry is not None else ("openai", "unknown")
        prompt, completion, cached = tokens_of(api, result.body)
        bucket = out.setdefault(stage, dict.fromkeys(BILLED_FIELDS, 0))
        bucket["calls"] += 1
        bucket["prompt_tokens"] += prompt
        bucket["completion_tokens"] += completion
        bucket["cached_tokens"] += cached
    return out
