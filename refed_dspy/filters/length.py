"""length: keep samples whose instruction, draft or final response has a number of words within bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split, text_of
from refed_dspy.registry import FILTERS


def length(
    samples: list[Sample], which: str = "response", min_words: int | None = None, max_words: int | None = None
) -> FilterResult:
    """Keep samples whose `which` text has between min_words and max_words words (inclusive).

    Args:
        samples: the samples, as samples.jsonl holds them.
        which: the text measured: "instruction", "draft" or "response" (the final one).
        min_words: the fewest words a kept sample's text has; None: no lower bound.
        max_words: the most words a kept sample's text has; None: no upper bound.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    reasons = {}
    for s in samples:
        n = len(text_of(s, which).split())
        if min_words is not None and n < min_words:
            reasons[sample_id(s)] = f"{which} has {n} words < {min_words}"
        elif max_words is not None and n > max_words:
            reasons[sample_id(s)] = f"{which} has {n} words > {max_words}"
    return split(samples, reasons)


@FILTERS.register
class Length(Filter):
    """Keep samples whose `field` text has between min_words and max_words words."""

    rank = 3
    name: Literal["length"] = Field("length", description="This filter's name.")
    field: Literal["instruction", "response", "draft"] = Field(
        "response", description="Which text to measure (response = the final response)."
    )
    min_words: int | None = Field(None, ge=0, description="Minimum words.")
    max_words: int | None = Field(None, gt=0, description="Maximum words.")

    @model_validator(mode="after")
    def _bounded(self) -> Length:
        if self.min_words is None and self.max_words is None:
            raise ValueError("filter 'length' needs min_words or max_words")
        return self

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        return length(samples, self.field, self.min_words, self.max_words)
