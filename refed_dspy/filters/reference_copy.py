"""reference_copy: remove samples that copy their own reference, its instruction or its response, by ROUGE-L or by long
runs of words found word for word in it (refed_dspy.text.closeness says how each is measured)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from refed_dspy.errors import ConfigError
from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split
from refed_dspy.registry import FILTERS, rewrites_reference
from refed_dspy.store.records import final_response
from refed_dspy.store.seeds import read_seeds
from refed_dspy.text.closeness import COPY_THRESHOLD, SPAN_WORDS, Closeness, closeness, copy_reason

log = logging.getLogger(__name__)
References = Mapping[str, tuple[str, str]]  # reference id -> (instruction, response)
PARTS = ("instruction", "response")


def seed_references(seeds: Any) -> dict[str, tuple[str, str]]:
    """Reference id -> (instruction, response) of the references a config's [seeds] names (SeedError when they cannot
    be read)."""
    refs, _ = read_seeds(seeds)
    return {r.id: (r.instruction, r.response) for r in refs}


def sample_closeness(sample: Sample, reference: tuple[str, str], span: int = SPAN_WORDS) -> dict[str, Closeness]:
    """How close a sample's instruction and final response (the improved one when there is one) are to its
    reference's instruction and response."""
    return {
        "instruction": closeness(sample.get("instruction") or "", reference[0], span),
        "response": closeness(final_response(sample), reference[1], span),
    }


@dataclasses.dataclass
class Measured:
    """Samples beside their references: (sample, reference, closeness by part) for each one measured, and how many were
    not: no reference text (`unknown`), or a method that rewrites its reference (`rewrites`: reflection)."""

    rows: list[tuple[Sample, tuple[str, str], dict[str, Closeness]]] = dataclasses.field(default_factory=list)
    unknown: int = 0
    rewrites: int = 0


def measure_samples(samples: list[Sample], references: References, span: int = SPAN_WORDS) -> Measured:
    """Each sample's closeness to its own reference (`sample_closeness`), for the filter and the report alike."""
    out = Measured()
    for s in samples:
        meta = s["meta"]
        if rewrites_reference(meta.get("method")):
            out.rewrites += 1
            continue
        ref = references.get(meta.get("reference_id"))
        if ref is None:
            out.unknown += 1
            continue
        out.rows.append((s, ref, sample_closeness(s, ref, span)))
    return out


def reference_copy(
    samples: list[Sample],
    references: References,
    threshold: float = COPY_THRESHOLD,
    field: str = "both",
    span: int = SPAN_WORDS,
) -> FilterResult:
    """Remove the samples whose instruction or final response (`field`: instruction, response or both) reaches
    `threshold` of closeness to its reference's (ROUGE-L or a verbatim share of runs of `span`+ words), with a reason
    naming the part and the measure. A sample whose reference is not in `references` is kept (and counted in one
    log line); one of a method that rewrites its reference (reflection) is kept.

    Args:
        samples: the samples, as samples.jsonl holds them.
        references: reference id -> (instruction, response).
        threshold: the closeness to the reference at or above which a sample is a copy.
        field: what is compared with the reference's: "instruction", "response" or "both".
        span: the shortest run of words the verbatim share counts.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.
    """
    parts = PARTS if field == "both" else (field,)
    reasons = {}
    measured = measure_samples(samples, references, span)
    for s, _, closeness_of in measured.rows:
        for part in parts:
            reason = copy_reason(part, closeness_of[part], threshold)
            if reason is not None:
                reasons[sample_id(s)] = reason
                break
    if measured.unknown:
        log.warning(
            "reference_copy: %d samples have no reference text among the seeds; they were kept", measured.unknown
        )
    return split(samples, reasons)


@FILTERS.register
class ReferenceCopy(Filter):
    """Remove samples whose instruction or response copies their own reference's (ROUGE-L, or long verbatim runs).

    `refed filter` gives it the run's references, read from its config's [seeds] (`configured`); in Python, pass
    them with `with_references` (reference id -> (instruction, response)), or a config with `configured`.
    """

    rank = 6
    name: Literal["reference_copy"] = Field("reference_copy", description="This filter's name.")
    threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Closeness to the reference at or above which a sample is a copy: its ROUGE-L F1, or the share of "
        "its words (or of the reference's) in runs of span_words+ words found word for word in the other. Unset: "
        "the run's quality.copy_threshold (0.8 by default).",
    )
    field: Literal["instruction", "response", "both"] = Field(
        "both", description="What is compared with the reference's: the instruction, the final response, or both."
    )
    span_words: int = Field(SPAN_WORDS, ge=2, le=64, description="The shortest run of words the verbatim share counts.")
    _references: References | None = PrivateAttr(None)

    def with_references(self, references: References) -> ReferenceCopy:
        """This filter with the samples' references: reference id -> (instruction, response)."""
        copy = self.model_copy()
        copy._references = references
        return copy

    def configured(self, config: Any) -> ReferenceCopy:
        """This filter with the references `config`'s [seeds] names (SeedError when they cannot be read), and its
        threshold, when it has none of its own, `config`'s quality.copy_threshold."""
        own = (
            self if self.threshold is not None else self.model_copy(update={"threshold": config.quality.copy_threshold})
        )
        return own.with_references(seed_references(config.seeds))

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        if self._references is None:
            raise ConfigError(
                "filter reference_copy needs the samples' references: run it with `refed filter`, or in Python give "
                "them with .with_references({reference_id: (instruction, response)}) or .configured(config)"
            )
        threshold = self.threshold or COPY_THRESHOLD
        return reference_copy(samples, self._references, threshold, self.field, self.span_words)
