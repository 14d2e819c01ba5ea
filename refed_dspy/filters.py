"""The paper's data filters and the usual hygiene filters, as pure functions over sample records.

Every filter takes samples (dicts, as in samples.jsonl) and returns a FilterResult: the kept samples
in their input order, and the removed ones with a reason. Nothing is modified.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from refed_dspy.config import FilterSpec
from refed_dspy.errors import ConfigError
from refed_dspy.store.records import final_response
from refed_dspy.text import Deduper

Sample = dict[str, Any]


@dataclass
class FilterResult:
    """What one filter kept and removed (with the reason for each removal)."""

    kept: list[Sample]
    removed: list[tuple[Sample, str]] = field(default_factory=list)


def _sid(sample: Sample) -> str:
    return sample["meta"]["id"]


def _split(samples: list[Sample], reasons: dict[str, str]) -> FilterResult:
    return FilterResult(
        [s for s in samples if _sid(s) not in reasons], [(s, reasons[_sid(s)]) for s in samples if _sid(s) in reasons]
    )


def text_of(sample: Sample, which: str) -> str:
    """'instruction', 'draft' (the generated response) or 'response' (the final one: improved when present)."""
    if which == "instruction":
        return sample.get("instruction") or ""
    if which == "draft":
        return sample.get("response") or ""
    return final_response(sample)


# the judge-based filters and the part of a judgment each one reads
JUDGE_PARTS = {"judge_prefers_improved": "pairwise", "min_score": "pointwise"}
UNJUDGED = ("keep", "drop")


def unjudged_ids(samples: list[Sample], judgments: dict[str, dict[str, Any]], part: str) -> list[str]:
    """Ids of the samples whose judgment lacks `part` ('pairwise' or 'pointwise'), in input order."""
    return [_sid(s) for s in samples if (judgments.get(_sid(s)) or {}).get(part) is None]


def judge_prefers_improved(
    samples: list[Sample], judgments: dict[str, dict[str, Any]], unjudged: str = "drop"
) -> FilterResult:
    """The paper's LLM-judge filter: keep a sample only when the judge (both orders) prefers its improved response
    to the draft. A sample with no pairwise judgment is removed, saying so (`unjudged="keep"`: kept)."""
    reasons = {}
    for s in samples:
        pair = (judgments.get(_sid(s)) or {}).get("pairwise")
        if pair is None:
            if unjudged == "drop":
                reasons[_sid(s)] = "no pairwise judgment (run `refed judge` with judging.pairwise = true)"
        elif pair["winner"] != "improved":
            reasons[_sid(s)] = f"judge verdict: {pair['winner']} (verdicts {'/'.join(pair.get('verdicts', []))})"
    return _split(samples, reasons)


def rouge_diversity(samples: list[Sample], threshold: float, seed: int = 0) -> FilterResult:
    """The paper's diversity filter: from a random starting sample, walk the samples in order (wrapping
    around) and keep one only if its instruction's highest ROUGE-L F1 against the instructions already
    kept is below `threshold`."""
    if not samples:
        return FilterResult([])
    start = random.Random(seed).randrange(len(samples))
    dedup = Deduper(threshold)
    reasons = {}
    for s in samples[start:] + samples[:start]:
        why = dedup.offer(text_of(s, "instruction"))
        if why is not None:
            reasons[_sid(s)] = (
                f"{why}: instruction ROUGE-L >= {threshold} against a kept one"
                if why == "near_duplicate"
                else "duplicate instruction"
            )
    return _split(samples, reasons)


def min_score(
    samples: list[Sample], judgments: dict[str, dict[str, Any]], threshold: float, unjudged: str = "drop"
) -> FilterResult:
    """Keep samples whose mean pointwise judge score is at least `threshold` (and, with `unjudged="keep"`, those
    with no pointwise judgment)."""
    reasons = {}
    for s in samples:
        point = (judgments.get(_sid(s)) or {}).get("pointwise")
        if point is None:
            if unjudged == "drop":
                reasons[_sid(s)] = "no pointwise judgment (run `refed judge` with judging.pointwise = true)"
        elif point["overall"] < threshold:
            reasons[_sid(s)] = f"mean judge score {point['overall']} < {threshold}"
    return _split(samples, reasons)


def length(
    samples: list[Sample], which: str = "response", min_words: int | None = None, max_words: int | None = None
) -> FilterResult:
    """Keep samples whose `which` text has between min_words and max_words words (inclusive)."""
    reasons = {}
    for s in samples:
        n = len(text_of(s, which).split())
        if min_words is not None and n < min_words:
            reasons[_sid(s)] = f"{which} has {n} words < {min_words}"
        elif max_words is not None and n > max_words:
            reasons[_sid(s)] = f"{which} has {n} words > {max_words}"
    return _split(samples, reasons)


def dedup(samples: list[Sample], threshold: float | None = None) -> FilterResult:
    """Remove exact (normalized) duplicate instructions and, with a threshold, ROUGE-L near-duplicates; in input
    order, the first occurrence wins."""
    dd = Deduper(threshold if threshold is not None else 1.01)
    reasons = {}
    for s in samples:
        why = dd.offer(text_of(s, "instruction"))
        if why is not None:
            reasons[_sid(s)] = (
                "duplicate instruction"
                if why == "duplicate"
                else f"near-duplicate instruction (ROUGE-L >= {threshold})"
            )
    return _split(samples, reasons)


def random_subset(samples: list[Sample], k: int, seed: int = 0) -> FilterResult:
    """Keep a uniformly random `k` of the samples (the paper's control for filtering), in input order."""
    if k >= len(samples):
        return FilterResult(list(samples))
    chosen = set(random.Random(seed).sample(range(len(samples)), k))
    reasons = {
        _sid(s): f"not in the random subset of {k} (seed {seed})" for i, s in enumerate(samples) if i not in chosen
    }
    return _split(samples, reasons)


def apply_filter(
    spec: FilterSpec, samples: list[Sample], judgments: dict[str, dict[str, Any]], unjudged: str = "drop"
) -> FilterResult:
    """Run one configured filter (`unjudged`: what a judge-based filter does with a sample it has no judgment of)."""
    if spec.name == "judge_prefers_improved":
        return judge_prefers_improved(samples, judgments, unjudged)
    if spec.name == "rouge_diversity":
        return rouge_diversity(samples, spec.threshold, spec.seed)
    if spec.name == "min_score":
        return min_score(samples, judgments, spec.min_score, unjudged)
    if spec.name == "length":
        return length(samples, spec.field, spec.min_words, spec.max_words)
    if spec.name == "dedup":
        return dedup(samples, spec.threshold)
    if spec.name == "random_subset":
        return random_subset(samples, spec.k, spec.seed)
    raise ConfigError(f"unknown filter '{spec.name}'")


def apply_chain(
    specs: list[FilterSpec], samples: list[Sample], judgments: dict[str, dict[str, Any]], unjudged: str = "drop"
):
    """Run filters in order, each on what the previous kept. Returns (kept, reject rows, per-step counts)."""
    kept = list(samples)
    rejects: list[dict[str, Any]] = []
    steps = []
    for i, spec in enumerate(specs):
        result = apply_filter(spec, kept, judgments, unjudged)
        for sample, reason in result.removed:
            rejects.append(
                {
                    "stage": "filter",
                    "filter": spec.name,
                    "step": i,
                    "reason": reason,
                    "item_id": _sid(sample),
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


def parse_filter(text: str) -> FilterSpec:
    """'rouge_diversity:threshold=0.7,seed=1' -> FilterSpec (values read as numbers when they are)."""
    from refed_dspy.config import config_from_dict

    name, _, rest = text.partition(":")
    params: dict[str, Any] = {"name": name.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in part:
            raise ConfigError(f"--apply {text!r}: expected name:key=value,...")
        key, value = (x.strip() for x in part.split("=", 1))
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        params[key] = value
    return config_from_dict({"filters": [params]}).filters[0]


def reject_counts(rejects: list[dict[str, Any]]) -> dict[str, int]:
    """Removed samples per filter name."""
    return dict(Counter(r["filter"] for r in rejects))
