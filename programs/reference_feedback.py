"""Collect feedback once per reference: instruction features and response feedback."""

from __future__ import annotations

import dspy

from refed_dspy.clients.calls import stage
from refed_dspy.gather import gather_settled
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

    async def _describe(self, reference: Reference) -> dspy.Prediction | None:
        if self.describe is None:
            return None
        with stage("feedback"):
            return await self.describe.acall(
                reference_instruction=reference.instruction, reference_response=reference.response
            )

    async def _critique(self, reference: Reference) -> dspy.Prediction | None:
        if self.critique is None:
            return None
        with stage("feedback"):
            return await self.critique.acall(instruction=reference.instruction, response=reference.response)

    async def aforward(self, reference: Reference) -> dspy.Prediction:
        described, critiqued = await gather_settled(self._describe(reference), self._critique(reference))
        return dspy.Prediction(
            subject_areas=described.subject_areas if described else None,
            relevant_skills=described.relevant_skills if described else None,
            response_feedback=critiqued.response_feedback if critiqued else None,
        )

    def forward(self, reference: Reference) -> dspy.Prediction:
        described = critiqued = None
        with stage("feedback"):
            if self.describe is not None:
                described = self.describe(
                    reference_instruction=reference.instruction, reference_response=reference.response
                )
            if self.critique is not None:
                critiqued = self.critique(instruction=reference.instruction, response=reference.response)
        return dspy.Prediction(
            subject_areas=described.subject_areas if described else None,
            relevant_skills=described.relevant_skills if described else None,
            response_feedback=critiqued.response_feedback if critiqued else None,
        )
