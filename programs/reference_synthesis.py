"""One reference in, its synthesized samples out: the method as a single composable module.

The runner schedules the same three parts across many references at once; this module is the
plain composition, for library use and for reading what the method does.
"""

from __future__ import annotations

import asyncio

import dspy

from refed_dspy.gather import gather_settled
from refed_dspy.programs.reference_feedback import CollectReferenceFeedback
from refed_dspy.programs.respond_and_improve import RespondAndImprove
from refed_dspy.programs.synthesize import InstructionSynthesizer
from refed_dspy.records import Reference, ReferenceFeedback


class ReferenceSynthesis(dspy.Module):
    """Reference -> Prediction(feedback, samples=[Prediction(instruction, feature, response, ...)])."""

    def __init__(self, n: int = 10, respond: RespondAndImprove | None = None):
        super().__init__()
        self.n = n
        self.collect = CollectReferenceFeedback()
        self.synthesizer = InstructionSynthesizer()
        self.respond = respond or RespondAndImprove()

    async def aforward(self, reference: Reference, feedback: ReferenceFeedback | None = None) -> dspy.Prediction:
        if feedback is None:
            fb = await self.collect.acall(reference=reference)
            feedback = ReferenceFeedback(reference_id=reference.id, subject_areas=fb.subject_areas,
                                         relevant_skills=fb.relevant_skills, response_feedback=fb.response_feedback)
        batches = await gather_settled(*[
            self.synthesizer.acall(reference_instruction=reference.instruction, feature_name=name,
                                   feature_description=desc, n=self.n)
            for name, desc in feedback.features()
        ])
        pairs = [(name, text) for (name, _), batch in zip(feedback.features(), batches, strict=True)
                 for text in batch.new_instructions]
        outs = await gather_settled(*[
            self.respond.acall(reference_instruction=reference.instruction, reference_response=reference.response,
                               instruction=text, feedback=feedback.response_feedback)
            for _, text in pairs
        ])
        samples = [dspy.Prediction(instruction=text, feature=name, **out.toDict()) for (name, text), out in zip(pairs, outs, strict=True)]
        return dspy.Prediction(feedback=feedback, samples=samples)

    def forward(self, reference: Reference, feedback: ReferenceFeedback | None = None) -> dspy.Prediction:
        return asyncio.run(self.aforward(reference=reference, feedback=feedback))
