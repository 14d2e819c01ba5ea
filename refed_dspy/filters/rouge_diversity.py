"""rouge_diversity (the paper's diversity filter): greedy, from a random start, by the instructions' ROUGE-L."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split, text_of
from refed_dspy.registry import FILTERS
from refed_dspy.text.overlap import Deduper


def rouge_diversity(samples: list[Sample], threshold: float, seed: int = 0) -> FilterResult:
    """From a random starting sample, walk the samples in order (wrapping around) and keep one only if its
    instruction's highest ROUGE-L F1 against the instructions already kept is below `threshold`.

    Args:
        samples: the samples, as samples.jsonl holds them.
        threshold: ROUGE-L F1 at or above which an instruction is a near-duplicate of a kept one.
        seed: the random seed that picks the starting sample.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    if not samples:
        return FilterResult([])
    start = random.Random(seed).randrange(len(samples))
    dedup = Deduper(threshold)
    reasons = {}
    for s in samples[start:] + samples[:start]:
        why = dedup.offer(text_of(s, "instruction"))
        if why is not None:
            reasons[sample_id(s)] = (
                f"{why}: instruction ROUGE-L >= {threshold} against a kept one"
                if why == "near_duplicate"
                else "duplicate instruction"
            )
    return split(samples, reasons)


@FILTERS.register
class RougeDiversity(Filter):
    """Keep samples whose instruction is not a near-duplicate (ROUGE-L) of one kept before it."""

    rank = 1
    name: Literal["rouge_diversity"] = Field("rouge_diversity", description="This filter's name.")
    threshold: float = Field(
        gt=0, le=1, description="ROUGE-L F1 at or above which a sample counts as a near-duplicate."
    )
    seed: int = Field(0, description="Random seed of the starting sample.")

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        return rouge_diversity(samples, self.threshold, self.seed)
