"""Collect feedback once per reference: instruction features and response feedback."""

from __future__ import annotations

import dspy

from refed_dspy.programs.steps import Call, Steps, arun_steps, run_steps
from refed_dspy.signatures import CritiqueResponse, DescribeInstruction
from refed_dspy.store.records import Reference


class CollectReferenceFeedback(dspy.Module):
    """Reference -> Prediction(subject_areas, relevant_skills, response_feedback).

    `describe` and `critique` choose which feedback to collect; the two calls run concurrently.
    """

    def __init__(self, describe: bool = True, critique: bool = True):
        super().__init__()
        self.describe = dspy.Predict(DescribeInstruction) if describe else None
        self.critique = dspy.Predict(CritiqueResponse) if critique else None

    def steps(self, reference: Reference) -> Steps:
        """The instruction's features and the response's critique, at once (either may be left out)."""
        calls = []
        if self.describe is not None:
            inputs = dict(reference_instruction=reference.instruction, reference_response=reference.response)
            calls.append(Call(self.describe, "feedback", inputs))
        if self.critique is not None:
            calls.append(
                Call(self.critique, "feedback", dict(instruction=reference.instruction, response=reference.response))
            )
        replies = iter((yield calls) if calls else [])
        described = next(replies) if self.describe is not None else None
        critiqued = next(replies) if self.critique is not None else None
        return dspy.Prediction(
            subject_areas=described.subject_areas if described else None,
            relevant_skills=described.relevant_skills if described else None,
            response_feedback=critiqued.response_feedback if critiqued else None,
        )

    async def aforward(self, reference: Reference) -> dspy.Prediction:
        return await arun_steps(self.steps(reference))

    def forward(self, reference: Reference) -> dspy.Prediction:
        return run_steps(self.steps(reference))
