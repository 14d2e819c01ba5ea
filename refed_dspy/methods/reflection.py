"""reflection (Reflection-Tuning, Li et al. 2023): every seed pair is critiqued and rewritten, once."""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.methods.base import Defaults, Method, SeedItem, SynthesisSettings
from refed_dspy.programs import ReflectionTuning
from refed_dspy.programs.parts import PART_INPUTS
from refed_dspy.registry import METHODS
from refed_dspy.store.records import OriginalPair, Reference, ReferenceFeedback, Reflection, content_id


@METHODS.register
class ReflectionMethod(Method):
    """One sample per seed pair (a run ends at min(size, seeds)); `synthesis.reflection` picks the steps:
    instruction (rewrite the pair), response (rewrite the answer) or both (the first, then the second)."""

    name = "reflection"
    summary = "Reflection-Tuning: recycle each seed pair"
    rank = 4
    features = ()
    collects_feedback = False
    rewrites_reference = True
    parts = {"respond": PART_INPUTS["recycle"]}

    def build_pipeline(self, syn: SynthesisSettings | None = None, respond: dspy.Module | None = None) -> dspy.Module:
        return ReflectionTuning((syn or Defaults()).reflection, respond=respond)

    def worst_calls(self, syn: SynthesisSettings) -> dict[str, int]:
        return {"feedback": 0, "unit": 0, "sample": 2 if syn.reflection == "both" else 1}

    def seed_item(self, ref: Reference, syn: SynthesisSettings) -> SeedItem:
        mode = syn.reflection
        return SeedItem(content_id("reflection", mode, ref.id), f"reflect:{mode}", mode, ref.instruction)

    def sample_inputs(self, ref: Reference, instruction: str, feedback: ReferenceFeedback | None) -> dict[str, Any]:
        return dict(instruction=ref.instruction, response=ref.response)

    def record_fields(
        self, instruction: str, ref: Reference, pred: dspy.Prediction, syn: SynthesisSettings
    ) -> dict[str, Any]:
        improved = pred.get("improved_response")
        if syn.reflection != "instruction" and not (improved or "").strip():
            raise ValueError("the improver returned an empty improved_response")
        return dict(
            instruction=(pred.instruction or "").strip(),
            response=(pred.response or "").strip(),
            analysis=None,
            implementation_strategy=None,
            improved_response=improved,
            original=OriginalPair(instruction=ref.instruction, response=ref.response),
            reflection=Reflection(
                instruction_critique=pred.get("instruction_critique"), response_critique=pred.get("response_critique")
            ),
        )
