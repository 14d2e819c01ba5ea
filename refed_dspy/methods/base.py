"""What a synthesis method is: the one object the runner, `refed estimate` and `refed optimize` ask about it.

A method builds its pipeline program (the DSPy module whose parts a run executes), names the instruction
features its work units synthesize from, maps a sample to the inputs of its per-instruction part, states how
many LM calls each kind of task makes at most, and turns what that part returned into a record's fields.
Nothing outside this package branches on which method runs.

Work comes in three kinds of task: `feedback` (once per reference: the `collect` part), `unit` (a reference
and one of its features: the `synthesizer` part makes new instructions) and `sample` (one instruction: the
`respond` part makes its sample). A method that makes its samples straight from the references (Reflection-
Tuning) has no features and gives one `seed_item` per reference instead.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import dspy

from refed_dspy.store.records import Reference, ReferenceFeedback

KEEP_RATE = 0.9  # the share of new instructions the dedup keeps, before a run has shown its own (estimate)


class SynthesisSettings(Protocol):
    """The settings a method reads (the `[synthesis]` section of a config has them all)."""

    size: int
    instructions_per_feature: int
    reflection: str


@dataclass(frozen=True)
class Defaults:
    """Settings for building a method's pipeline outside a run (tests, notebooks)."""

    size: int = 1000
    instructions_per_feature: int = 10
    reflection: str = "both"


@dataclass(frozen=True)
class SeedItem:
    """A sample to make straight from a reference: its id, the unit it is journaled under, its feature and the
    instruction it starts from."""

    id: str
    unit: str
    feature: str
    instruction: str


def dumped(value: Any) -> Any:
    """A pydantic value as plain data (records hold JSON), anything else as it is."""
    return value.model_dump() if hasattr(value, "model_dump") else value


class Method(ABC):
    """One synthesis method. Subclass it in one module of refed_dspy.methods (or of your own package) and
    register it with `@METHODS.register`; `synthesis.method = "<name>"` then runs it.

    Class attributes:
        name: what `synthesis.method` says.
        summary: one line for listings and the config's description.
        rank: where it is listed (lower first).
        features: the instruction features a reference's units synthesize from (empty: no units).
        collects_feedback: a `feedback` task runs once per reference before its units.
        rewrites_reference: each sample is its reference rewritten (Reflection-Tuning), so closeness to it is the
            method's point: the reference-copy checks (report, filter `reference_copy`, the optimize metric) skip it.
        parts: the pipeline's parts the runner calls, each with the keyword inputs it takes (placeholders, for the
            check made before any call; `programs.parts.PART_INPUTS` has those of the built-in parts).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    rank: ClassVar[int] = 100
    features: ClassVar[tuple[str, ...]] = ()
    collects_feedback: ClassVar[bool] = False
    rewrites_reference: ClassVar[bool] = False
    parts: ClassVar[dict[str, dict[str, Any]]] = {}

    @abstractmethod
    def build_pipeline(self, syn: SynthesisSettings | None = None, respond: dspy.Module | None = None) -> dspy.Module:
        """The method's pipeline program at its built-in prompts (`respond`: its per-instruction part instead).

        Args:
            syn: the synthesis settings the pipeline is built with; None: Defaults().
            respond: a per-instruction part to use instead of the built-in one (a compiled one, say).

        Returns:
            The pipeline program, with the parts the runner calls.
        """

    @abstractmethod
    def worst_calls(self, syn: SynthesisSettings) -> dict[str, int]:
        """LM calls one task of each kind makes at most, repairs aside (the budget reserves them before it starts).

        Args:
            syn: the synthesis settings.

        Returns:
            The most calls per task, by kind: `feedback`, `unit` and `sample`.
        """

    def feature_description(self, feature: str, feedback: ReferenceFeedback | None) -> str | None:
        """What the reference's feedback says of `feature` (the synthesizer's input), "" when the method collects no
        description, None when the reference has no such feature (its unit is skipped).

        Args:
            feature: one of the method's features.
            feedback: the reference's collected feedback, or None when none was collected.

        Returns:
            The feature's description, "" when the method collects none, or None when the reference lacks it.
        """
        return ""

    def unit_inputs(
        self, ref: Reference, feature: str, feedback: ReferenceFeedback | None, syn: SynthesisSettings, rollout: int = 0
    ) -> dict[str, Any]:
        """The keyword inputs of the `synthesizer` part for one unit: `syn.instructions_per_feature` new instructions
        from `feature` of `ref` (its description from `feedback`); `rollout`: a pass after the first asks anew.

        Args:
            ref: the reference the unit belongs to.
            feature: the feature the new instructions exercise.
            feedback: the reference's collected feedback, or None.
            syn: the synthesis settings (`instructions_per_feature`).
            rollout: which pass over the unit this is; 0: the first.

        Returns:
            The keyword inputs: reference_instruction, feature_name, feature_description, n and rollout_id.
        """
        return {
            "reference_instruction": ref.instruction,
            "feature_name": feature,
            "feature_description": self.feature_description(feature, feedback) or "",
            "n": syn.instructions_per_feature,
            "rollout_id": rollout or None,
        }

    def seed_item(self, ref: Reference, syn: SynthesisSettings) -> SeedItem | None:
        """The sample this method makes straight from `ref`, or None (it synthesizes new instructions instead).

        Args:
            ref: the reference.
            syn: the synthesis settings.

        Returns:
            The seed item, or None here.
        """
        return None

    @abstractmethod
    def sample_inputs(self, ref: Reference, instruction: str, feedback: ReferenceFeedback | None) -> dict[str, Any]:
        """The keyword inputs of the `respond` part for one sample.

        Args:
            ref: the sample's reference.
            instruction: the sample's instruction.
            feedback: the reference's collected feedback, or None.

        Returns:
            The keyword inputs the `respond` part is called with.
        """

    @abstractmethod
    def record_fields(
        self, instruction: str, ref: Reference, pred: dspy.Prediction, syn: SynthesisSettings
    ) -> dict[str, Any]:
        """The sample record's fields (all but `meta`) from what `respond` returned; ValueError when the output is
        unusable (it becomes a reject).

        Args:
            instruction: the sample's instruction.
            ref: the sample's reference.
            pred: what the `respond` part returned.
            syn: the synthesis settings.

        Returns:
            The record's fields by name, as plain data.

        Raises:
            ValueError: the output is unusable (an implementation raises it; the sample becomes a reject).
        """

    def work_counts(self, syn: SynthesisSettings, n_refs: int) -> dict[str, int]:
        """How many tasks of each kind a run of `syn.size` samples does (pure; units assume KEEP_RATE of the new
        instructions survive dedup).

        Args:
            syn: the synthesis settings (`size`, `instructions_per_feature`).
            n_refs: how many references the run has.

        Returns:
            The number of tasks by kind: `feedback`, `unit` and `sample`.
        """
        if not self.features:
            return {"feedback": 0, "unit": 0, "sample": min(syn.size, n_refs)}
        units = math.ceil(syn.size / (syn.instructions_per_feature * KEEP_RATE))
        return {"feedback": min(n_refs, units) if self.collects_feedback else 0, "unit": units, "sample": syn.size}
