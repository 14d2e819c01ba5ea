"""judge_prefers_improved (the paper's LLM-judge filter): keep a sample when the judge prefers its improved response."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split
from refed_dspy.registry import FILTERS


def judge_prefers_improved(samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
    """Keep a sample only when the judge (both orders) prefers its improved response to the draft. A sample with no
    pairwise judgment is removed, saying so (`unjudged="keep"`: kept).

    Args:
        samples: the samples, as samples.jsonl holds them.
        judgments: sample id -> its judgment, as judgments.jsonl holds it.
        unjudged: "keep" or "drop": what becomes of a sample with no pairwise judgment.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    reasons = {}
    for s in samples:
        pair = (judgments.get(sample_id(s)) or {}).get("pairwise")
        if pair is None:
            if unjudged == "drop":
                reasons[sample_id(s)] = "no pairwise judgment (run `refed judge` with judging.pairwise = true)"
        elif pair["winner"] != "improved":
            reasons[sample_id(s)] = f"judge verdict: {pair['winner']} (verdicts {'/'.join(pair.get('verdicts', []))})"
    return split(samples, reasons)


@FILTERS.register
class JudgePrefersImproved(Filter):
    """Keep samples whose improved response the judge prefers to the draft in both orders."""

    judge_part = "pairwise"
    rank = 0
    name: Literal["judge_prefers_improved"] = Field("judge_prefers_improved", description="This filter's name.")

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        return judge_prefers_improved(samples, judgments, unjudged)
