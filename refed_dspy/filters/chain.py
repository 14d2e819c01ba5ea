"""The filter chain: filters applied in order, each to what the one before kept."""

from __future__ import annotations

from collections import Counter
from typing import Any

from refed_dspy.filters.base import Filter, Judgments, Sample, sample_id


def unjudged_ids(samples: list[Sample], judgments: Judgments, part: str) -> list[str]:
    """Ids of the samples whose judgment lacks `part` ('pairwise' or 'pointwise'), in input order."""
    return [sample_id(s) for s in samples if (judgments.get(sample_id(s)) or {}).get(part) is None]


def apply_chain(
    specs: list[Filter], samples: list[Sample], judgments: Judgments, unjudged: str = "drop"
) -> tuple[list[Sample], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run filters in order, each on what the previous kept. Returns (kept, reject rows, per-step counts)."""
    kept = list(samples)
    rejects: list[dict[str, Any]] = []
    steps = []
    for i, spec in enumerate(specs):
        result = spec.apply(kept, judgments, unjudged)
        for sample, reason in result.removed:
            rejects.append(
                {
                    "stage": "filter",
                    "filter": spec.name,
                    "step": i,
                    "reason": reason,
                    "item_id": sample_id(sample),
                    "reference_id": sample["meta"].get("reference_id"),
                    "instruction": sample.get("instruction"),
                }
            )
        steps.append(
            {
                "step": i,
                "filter": spec.name,
                "params": spec.model_dump(exclude_none=True),
                "in": len(kept),
                "kept": len(result.kept),
                "removed": len(result.removed),
            }
        )
        kept = result.kept
    return kept, rejects, steps


def reject_counts(rejects: list[dict[str, Any]]) -> dict[str, int]:
    """Removed samples per filter name."""
    return dict(Counter(r["filter"] for r in rejects))
