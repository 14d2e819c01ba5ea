"""Pure conversions of sample records into fine-tuning shapes, and the grouped train/validation split."""

from __future__ import annotations

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
