"""Pure conversions of sample records into fine-tuning shapes, and the grouped train/validation split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from refed_dspy.store.records import final_response

FORMATS = ("messages", "sharegpt", "alpaca", "parquet", "hf", "hub")
RESPONSES = ("improved", "draft")


def chosen_response(sample: dict[str, Any], which: str = "improved") -> str:
    """The response to export: 'improved' (falling back to the draft when a method has no improvement) or 'draft'."""
    if which == "draft":
        return (sample.get("response") or "").strip()
    return final_response(sample)


def to_messages(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """OpenAI chat fine-tuning row: {"messages": [system?, user, assistant]}."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [
        {"role": "user", "content": sample["instruction"]},
        {"role": "assistant", "content": chosen_response(sample, which)},
    ]
    return {"messages": msgs}


def to_sharegpt(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """ShareGPT row: {"conversations": [{"from": "system"?|"human"|"gpt", "value": ...}]}."""
    conv = [{"from": "system", "value": system}] if system else []
    conv += [
        {"from": "human", "value": sample["instruction"]},
        {"from": "gpt", "value": chosen_response(sample, which)},
    ]
    return {"conversations": conv}


def to_alpaca(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """Alpaca row: {"instruction", "input", "output"} (+ "system" when given)."""
    row = {"instruction": sample["instruction"], "input": "", "output": chosen_response(sample, which)}
    if system:
        row["system"] = system
    return row


def to_flat(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """The full row for Hugging Face datasets and Parquet: chat messages plus provenance columns."""
    meta = sample["meta"]
    return {
        "id": meta["id"],
        "instruction": sample["instruction"],
        "response": chosen_response(sample, which),
        "draft_response": sample.get("response"),
        "improved_response": sample.get("improved_response"),
        "messages": to_messages(sample, which, system)["messages"],
        "reference_id": meta.get("reference_id"),
        "feature": meta.get("feature"),
        "method": meta.get("method"),
        "teacher": meta.get("teacher"),
    }


CONVERTERS = {"messages": to_messages, "sharegpt": to_sharegpt, "alpaca": to_alpaca}


def sample_reference(sample: dict[str, Any]) -> str:
    """The group a sample belongs to in a split: its reference (its own id when it has none)."""
    return sample["meta"].get("reference_id") or sample["meta"]["id"]


def split_by_reference(
    samples: list, val_fraction: float, seed: int = 0, key: Callable[[Any], str] = sample_reference
) -> tuple[list, list]:
    """Train/validation split that keeps all items of one reference (`key`) on the same side.

    References are shuffled with `seed` and moved to validation until it holds at least `val_fraction`
    of the items (so the fraction is met or exceeded by less than one reference's items), never all
    of them. Both sides keep the input order.
    """
    if not samples or val_fraction <= 0:
        return list(samples), []
    groups: dict[str, int] = defaultdict(int)
    for s in samples:
        groups[key(s)] += 1
    refs = sorted(groups)
    random.Random(seed).shuffle(refs)
    target = val_fraction * len(samples)
    val_refs: set[str] = set()
    count = 0
    for ref in refs:
        if count >= target or len(val_refs) == len(refs) - 1:
            break
        val_refs.add(ref)
        count += groups[ref]
    return [s for s in samples if key(s) not in val_refs], [s for s in samples if key(s) in val_refs]
