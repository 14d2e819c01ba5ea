"""The per-instruction program: generate a response, then improve it with reference feedback.

This is the part an optimizer tunes; it is the hot path of a run (two LM calls per sample).
"""

from __future__ import annotations

import dspy

from refed_dspy.programs.steps import Call, Steps, arun_steps, run_steps
from refed_dspy.signatures import CritiqueResponse, GenerateResponse, ImproveResponse


class RespondAndImprove(dspy.Module):
    """(reference pair, feedback, instruction) -> Prediction(response, analysis, implementation_strategy,
    improved_response).

    Args:
        improve: run the improvement step (False gives the draft only, as the no-feedback baselines do).
        sample_feedback: critique each new pair itself and improve with that feedback (the paper's
            sample-level baseline) instead of the reference's feedback.
    """

    def __init__(self, improve: bool = True, sample_feedback: bool = False):
        super().__init__()
        self.generate = dspy.Predict(GenerateResponse)
        self.improve = dspy.Predict(ImproveResponse) if improve else None
        self.critique = dspy.Predict(CritiqueResponse) if (improve and sample_feedback) else None

    def steps(
        self, reference_instruction: str, reference_response: str, instruction: str, feedback: str | None = None
    ) -> Steps:
        """Draft, then (unless only drafting) critique it when it improves with its own feedback, and improve it."""
        draft = yield Call(
            self.generate,
            "generate",
            dict(
                example_instruction=reference_instruction, example_response=reference_response, instruction=instruction
            ),
        )
        if self.improve is None:
            return dspy.Prediction(
                response=draft.response, analysis=None, implementation_strategy=None, improved_response=None
            )
        if self.critique is not None:
            critique = yield Call(
                self.critique, "sample_feedback", dict(instruction=instruction, response=draft.response)
            )
            feedback = critique.response_feedback
        better = yield Call(
            self.improve,
            "improve",
            dict(feedback=feedback or "", instruction=instruction, draft_response=draft.response),
        )
        return dspy.Prediction(
            response=draft.response,
            analysis=better.analysis,
            implementation_strategy=better.implementation_strategy,
            improved_response=better.improved_response,
            feedback_used=feedback,
        )

    async def aforward(
        self, reference_instruction: str, reference_response: str, instruction: str, feedback: str | None = None
    ) -> dspy.Prediction:
        return await arun_steps(self.steps(reference_instruction, reference_response, instruction, feedback))

    def forward(
        self, reference_instruction: str, reference_response: str, instruction: str, feedback: str | None = None
    ) -> dspy.Prediction:
        return run_steps(self.steps(reference_instruction, reference_response, instruction, feedback))
