"""dedup: remove exact (normalized) duplicate instructions and, with a threshold, ROUGE-L near-duplicates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split, text_of
from refed_dspy.registry import FILTERS
from refed_dspy.text.overlap import Deduper


def dedup(samples: list[Sample], threshold: float | None = None) -> FilterResult:
    """In input order, the first occurrence of an instruction wins; later exact duplicates (and, with `threshold`,
    near-duplicates) are removed.

    Args:
        samples: the samples, as samples.jsonl holds them.
        threshold: ROUGE-L F1 at or above which an instruction is a near-duplicate; None: exact (normalized)
            duplicates only.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    dd = Deduper(threshold if threshold is not None else 1.01)
    reasons = {}
    for s in samples:
        why = dd.offer(text_of(s, "instruction"))
        if why is not None:
            reasons[sample_id(s)] = (
                "duplicate instruction"
                if why == "duplicate"
                else f"near-duplicate instruction (ROUGE-L >= {threshold})"
            )
    return split(samples, reasons)


@FILTERS.register
class Dedup(Filter):
    """Remove duplicate (and, with `threshold`, near-duplicate) instructions; the first one wins."""

    rank = 4
    name: Literal["dedup"] = Field("dedup", description="This filter's name.")
    threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="ROUGE-L F1 at or above which an instruction counts as a near-duplicate. "
        "Unset: exact (normalized) duplicates only.",
    )

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        return dedup(samples, self.threshold)
