"""A method of the test's own, in one module: new instructions from the reference alone, and one short answer each
from a signature of its own. Importing this module is all it takes for `synthesis.method = "toy"` to run."""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.clients.calls import stage
from refed_dspy.methods import METHODS, Method, SynthesisSettings
from refed_dspy.methods.base import Defaults
from refed_dspy.programs import ReferenceSynthesis
from refed_dspy.programs.parts import PART_INPUTS
from refed_dspy.store.records import Reference, ReferenceFeedback


class AnswerBriefly(dspy.Signature):
    """Answer the instruction in two or three sentences."""

    instruction: str = dspy.InputField()
    brief_answer: str = dspy.OutputField()


class Brief(dspy.Module):
    """The toy's per-instruction part: one call, its own stage."""

    def __init__(self):
        super().__init__()
        self.answer = dspy.Predict(AnswerBriefly)

    async def aforward(self, instruction: str) -> dspy.Prediction:
        with stage("brief"):
            pred = await self.answer.acall(instruction=instruction)
        return dspy.Prediction(response=pred.brief_answer)


@METHODS.register
class Toy(Method):
    name = "toy"
    summary = "a test's method: instructions from the reference alone, one brief answer each"
    features = ("reference",)
    collects_feedback = False
    parts = {"synthesizer": PART_INPUTS["synthesizer"], "respond": {"instruction": ""}}

    def build_pipeline(self, syn: SynthesisSettings | None = None, respond: dspy.Module | None = None) -> dspy.Module:
        syn = syn or Defaults()
        return ReferenceSynthesis(
            syn.instructions_per_feature, respond=respond or Brief(), describe=False, critique=False, improve=False
        )

    def worst_calls(self, syn: SynthesisSettings) -> dict[str, int]:
        return {"feedback": 0, "unit": 1, "sample": 1}

    def sample_inputs(self, ref: Reference, instruction: str, feedback: ReferenceFeedback | None) -> dict[str, Any]:
        return {"instruction": instruction}

    def record_fields(
        self, instruction: str, ref: Reference, pred: dspy.Prediction, syn: SynthesisSettings
    ) -> dict[str, Any]:
        answer = (pred.response or "").strip()
        if not answer:
            raise ValueError("the brief answer is empty")
        return {
            "instruction": instruction,
            "response": answer,
            "analysis": None,
            "implementation_strategy": None,
            "improved_response": None,
        }
