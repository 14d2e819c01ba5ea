"""What a filter is: one pydantic model per filter (its settings), whose `apply` keeps some samples and says why it
removed the others. Filters are pure: samples are dicts as in samples.jsonl, judgments as in judgments.jsonl, and
nothing is modified; the kept samples keep their input order.

The filter chain (`FilterChain`): filters applied in order, each to what the one before kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from refed_dspy.config.section import Section
from refed_dspy.store.records import final_response

Sample = dict[str, Any]
Judgments = dict[str, dict[str, Any]]
UNJUDGED = ("keep", "drop")  # what a judge-based filter does with a sample that has no judgment


@dataclass
class FilterResult:
    """What one filter kept and removed (with the reason for each removal)."""

    kept: list[Sample]
    removed: list[tuple[Sample, str]] = field(default_factory=list)


def sample_id(sample: Sample) -> str:
    return sample["meta"]["id"]


def split(samples: list[Sample], reasons: dict[str, str]) -> FilterResult:
    """Samples with a removal reason are removed (with it); the rest are kept, in input order."""
    return FilterResult(
        [s for s in samples if sample_id(s) not in reasons],
        [(s, reasons[sample_id(s)]) for s in samples if sample_id(s) in reasons],
    )


def text_of(sample: Sample, which: str) -> str:
    """'instruction', 'draft' (the generated response) or 'response' (the final one: improved when present).

    Args:
        sample: a sample as samples.jsonl holds it.
        which: which text: "instruction", "draft" or "response".

    Returns:
        That text ("" when the sample has none).
    """
    if which == "instruction":
        return sample.get("instruction") or ""
    if which == "draft":
        return sample.get("response") or ""
    return final_response(sample)


class Filter(Section):
    """One step of the filter chain. Subclass it in one module of refed_dspy.filters with a `name: Literal[...]`
    field and register it with `@FILTERS.register`; `[[filters]] name = "<name>"` then applies it.

    `judge_part`: the part of a judgment the filter reads ("pairwise", "pointwise"), None when it reads none.
    """

    judge_part: ClassVar[str | None] = None
    rank: ClassVar[int] = 100

    def configured(self, config: Any) -> Filter:
        """This filter with the settings it leaves to the run's config (a refed_dspy.config.Config) taken from there;
        `refed filter` calls it before the chain runs. A filter that reads no section of the config returns itself.

        Args:
            config: the run's config.

        Returns:
            The configured filter (a copy, or this filter when it takes nothing from the config).
        """
        return self

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        """Keep some of `samples` (`unjudged`: what a judge-based filter does with a sample it has no judgment of).

        Args:
            samples: the samples, as samples.jsonl holds them.
            judgments: sample id -> its judgment, as judgments.jsonl holds it.
            unjudged: "keep" or "drop": what a judge-based filter does with a sample that has no judgment.

        Returns:
            The kept samples, in input order, and the removed ones, each with its reason.

        Raises:
            NotImplementedError: always, here; each filter overrides it.
        """
        raise NotImplementedError


def unjudged_ids(samples: list[Sample], judgments: Judgments, part: str) -> list[str]:
    """Ids of the samples whose judgment lacks `part` ('pairwise' or 'pointwise'), in input order.

    Args:
        samples: the samples, as samples.jsonl holds them.
        judgments: sample id -> its judgment, as judgments.jsonl holds it.
        part: the part of a judgment looked for: "pairwise" or "pointwise".

    Returns:
        The ids of the samples with no judgment or none of that part.
    """
    return [sample_id(s) for s in samples if (judgments.get(sample_id(s)) or {}).get(part) is None]


def apply_chain(
    specs: list[Filter], samples: list[Sample], judgments: Judgments, unjudged: str = "drop"
) -> tuple[list[Sample], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run filters in order, each on what the previous kept. Returns (kept, reject rows, per-step counts).

    Args:
        specs: the filters, in the order they are applied.
        samples: the samples, as samples.jsonl holds them.
        judgments: sample id -> its judgment, as judgments.jsonl holds it.
        unjudged: "keep" or "drop": what judge-based filters do with a sample that has no judgment.

    Returns:
        The samples the last filter kept, in input order; one reject row per removed sample (its filter, step,
            reason, id, reference id and instruction); and per step, the filter, its parameters and its samples in,
            kept and removed.
    """
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
    """Removed samples per filter name.

    Args:
        rejects: reject rows, as `apply_chain` gives them.

    Returns:
        Filter name -> how many samples it removed.
    """
    return dict(Counter(r["filter"] for r in rejects))
