"""min_score: keep samples whose mean pointwise judge score reaches a threshold."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split
from refed_dspy.registry import FILTERS


def min_score(samples: list[Sample], judgments: Judgments, threshold: float, unjudged: str = "drop") -> FilterResult:
    """Keep samples whose mean pointwise judge score is at least `threshold` (and, with `unjudged="keep"`, those
    with no pointwise judgment).

    Args:
        samples: the samples, as samples.jsonl holds them.
        judgments: sample id -> its judgment, as judgments.jsonl holds it.
        threshold: the lowest mean pointwise score a kept sample has.
        unjudged: "keep" or "drop": what becomes of a sample with no pointwise judgment.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    reasons = {}
    for s in samples:
        point = (judgments.get(sample_id(s)) or {}).get("pointwise")
        if point is None:
            if unjudged == "drop":
                reasons[sample_id(s)] = "no pointwise judgment (run `refed judge` with judging.pointwise = true)"
        elif point["overall"] < threshold:
            # one reason for all (the report counts rejects by reason); each sample's score is in judgments.jsonl
            reasons[sample_id(s)] = f"mean judge score below {threshold:g}"
    return split(samples, reasons)


@FILTERS.register
class MinScore(Filter):
    """Keep samples whose mean pointwise judge score is at least `min_score`."""

    judge_part = "pointwise"
    rank = 2
    name: Literal["min_score"] = Field("min_score", description="This filter's name.")
    min_score: float = Field(ge=1, le=10, description="The lowest mean pointwise score (1-10) a kept sample has.")

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        return min_score(samples, judgments, self.min_score, unjudged)
