"""The work of a synthesis run: units (a reference and one of its features), the items they make, and what
each kind of task hands its part of the pipeline. The runner schedules them; `refed estimate` walks them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.store.records import Reference, ReferenceFeedback

# the part of the pipeline program each kind of task runs, and the stage its LM calls are accounted under (unless
# the part tags them itself)
TASK_PARTS = {"feedback": "collect", "unit": "synthesizer", "sample": "respond"}
TASK_STAGES = {"feedback": "feedback", "unit": "synthesize", "sample": "respond"}
# A program of the user's may call a predictor more than once (dspy.BestOfN, a loop): its tasks reserve at least
# what any program's did before methods stated their own counts.
UNKNOWN_PART_CALLS = {"feedback": 2, "unit": 1, "sample": 3}


def parts_of(program: dspy.Module) -> dict[str, dspy.Module | None]:
    """{task kind: the part of `program` that runs it} (None: the program has no such part)."""
    return {kind: getattr(program, attribute, None) for kind, attribute in TASK_PARTS.items()}


@dataclass(frozen=True)
class Unit:
    """One synthesis call: a reference, one of its features, and the pass number."""

    pass_no: int
    ref_index: int
    feature: str

    def id(self, ref: Reference) -> str:
        return f"p{self.pass_no}:{ref.id}:{self.feature}"


@dataclass
class Item:
    """An instruction waiting for (or getting) its response."""

    id: str
    unit: str
    ref_index: int
    feature: str
    instruction: str


def default_call_budget(syn: Any, n_refs: int) -> int | None:
    """The run's call cap: synthesis.max_calls when set, else max_calls_per_sample x size + 2 per reference
    (their feedback); None when both are off. A run that keeps failing stops here instead of paying on."""
    if syn.max_calls is not None:
        return syn.max_calls
    if not syn.max_calls_per_sample:
        return None
    return math.ceil(syn.max_calls_per_sample * syn.size) + 2 * n_refs


def unit_order(n_refs: int, features: tuple[str, ...], max_passes: int | None = None) -> Iterator[Unit]:
    """Units in the order a run uses them: every reference once per feature before any twice (without end when
    `max_passes` is None: the run decides when to stop)."""
    for pass_no in range(max_passes) if max_passes is not None else itertools.count():
        for feature in features:
            for ref_index in range(n_refs):
                yield Unit(pass_no, ref_index, feature)


def feedback_record(ref: Reference, pred: dspy.Prediction, usage: dict[str, Any] | None = None) -> ReferenceFeedback:
    """The feedback record of `ref` from what the `collect` part returned."""
    return ReferenceFeedback(
        reference_id=ref.id,
        subject_areas=pred.subject_areas,
        relevant_skills=pred.relevant_skills,
        response_feedback=pred.response_feedback,
        usage=usage or {},
    )


def worst_calls(method: Any, syn: Any, builtin: bool, parts: dict[str, Any]) -> dict[str, int]:
    """LM calls one task of each kind makes at most: `method`'s count for `syn` (the [synthesis] section), or the
    predictors of the part that runs it when a program of the user's (not `builtin`) has more, and for such a program
    no less than UNKNOWN_PART_CALLS."""
    declared = method.worst_calls(syn)
    floor = {} if builtin else UNKNOWN_PART_CALLS
    return {
        kind: max(
            declared.get(kind, 0),
            floor.get(kind, 0) if part is not None else 0,
            len(part.named_predictors()) if part is not None else 0,
        )
        for kind, part in parts.items()
    }
