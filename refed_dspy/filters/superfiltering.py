"""superfiltering (Superfiltering, Li et al. 2024): keep the pairs whose instruction helps a small model predict the
response, ranked by IFD (the response's perplexity given the instruction over its perplexity alone; the scorer,
refed_dspy.scoring, measures it with a local model). A pair at IFD 1 or above is removed: the instruction does not help
(a response to another question, or one that ignores it). Of the rest, `keep` keeps that share, the highest IFD first:
the pairs whose instruction the model finds hardest to follow, as Superfiltering selects."""

from __future__ import annotations

import math
import sys
from typing import Any, Literal

from pydantic import Field

from refed_dspy.config.judging import ScoringConfig
from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split, text_of
from refed_dspy.registry import FILTERS
from refed_dspy.scoring import PairScore, Scorer, open_scorer


def superfiltering(
    samples: list[Sample],
    scorer: Scorer,
    max_ifd: float = 1.0,
    keep: float | None = None,
    response: str = "response",
) -> FilterResult:
    """Remove the samples whose (instruction, `response`) pair has IFD >= `max_ifd`; with `keep`, keep only that share
    of the rest, highest IFD first. Each reason names the figures and the scoring model.

    Args:
        samples: the samples, as samples.jsonl holds them.
        scorer: the scorer that measures each pair's IFD, as `open_scorer` gives one.
        max_ifd: the IFD from which a pair is removed.
        keep: the share of the pairs under `max_ifd` to keep, highest IFD first; None: all of them.
        response: which response is scored: "response" (the final one) or "draft".

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    pairs = [(text_of(s, "instruction"), text_of(s, response)) for s in samples]
    scores = scorer.score(pairs, show_progress=sys.stderr.isatty())
    reasons: dict[str, str] = {}
    below: list[tuple[float, int]] = []
    for i, (s, score) in enumerate(zip(samples, scores, strict=True)):
        if not math.isfinite(score.ifd) or score.ifd >= max_ifd:
            reasons[sample_id(s)] = _above(score, max_ifd, scorer.label)
        else:
            below.append((score.ifd, i))
    if keep is not None and below:
        below.sort(key=lambda x: (-x[0], x[1]))
        kept = max(1, round(keep * len(below)))
        cut = below[kept - 1][0]
        for ifd, i in below[kept:]:
            reasons[sample_id(samples[i])] = (
                f"IFD {ifd:.3f}: outside the {keep:.0%} of highest IFD under {max_ifd:g} kept "
                f"({kept} of {len(below)}, the last at {cut:.3f}; {scorer.label})"
            )
    return split(samples, reasons)


def _above(score: PairScore, max_ifd: float, model: str) -> str:
    return (
        f"IFD {score.ifd:.3f} >= {max_ifd:g}: the instruction does not help predict the response (perplexity "
        f"{score.response_ppl_given_instruction:.2f} given it, {score.response_ppl:.2f} alone; {model})"
    )


@FILTERS.register
class Superfiltering(Filter):
    """Remove pairs the instruction does not help predict (IFD at or above max_ifd, measured by the [scoring] model),
    and keep a share of the rest, highest IFD first (Superfiltering). Needs the scorer extra."""

    rank = 7
    name: Literal["superfiltering"] = Field("superfiltering", description="This filter's name.")
    max_ifd: float = Field(
        1.0, gt=0, description="The IFD from which a pair is removed: at 1 the instruction no longer helps at all."
    )
    keep: float | None = Field(
        None,
        gt=0,
        le=1,
        description="The share of the pairs under max_ifd to keep, highest IFD first (Superfiltering keeps 5-15% of "
        "Alpaca). Unset: all of them.",
    )
    response: Literal["response", "draft"] = Field(
        "response", description="Which response is scored: the final one (improved when there is one), or the draft."
    )
    scoring: ScoringConfig | None = Field(None, description="The scoring model and its settings. Unset: [scoring].")

    def configured(self, config: Any) -> Superfiltering:
        """This filter with the scoring settings it leaves unset taken from `config.scoring`."""
        return self if self.scoring is not None else self.model_copy(update={"scoring": config.scoring})

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        scorer = open_scorer(self.scoring or ScoringConfig())
        return superfiltering(samples, scorer, self.max_ifd, self.keep, self.response)
