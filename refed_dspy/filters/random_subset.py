"""random_subset (the paper's control for filtering): keep a uniformly random k samples."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split
from refed_dspy.registry import FILTERS


def random_subset(samples: list[Sample], k: int, seed: int = 0) -> FilterResult:
    """Keep a uniformly random `k` of the samples, in input order.

    Args:
        samples: the samples, as samples.jsonl holds them.
        k: how many samples to keep (all of them when there are no more).
        seed: the random seed.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    if k >= len(samples):
        return FilterResult(list(samples))
    chosen = set(random.Random(seed).sample(range(len(samples)), k))
    return split(
        samples,
        {
            sample_id(s): f"not in the random subset of {k} (seed {seed})"
            for i, s in enumerate(samples)
            if i not in chosen
        },
    )


@FILTERS.register
class RandomSubset(Filter):
    """Keep a random `k` samples."""

    rank = 5
    name: Literal["random_subset"] = Field("random_subset", description="This filter's name.")
    k: int = Field(gt=0, description="How many samples to keep.")
    seed: int = Field(0, description="Random seed.")

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        return random_subset(samples, self.k, self.seed)
