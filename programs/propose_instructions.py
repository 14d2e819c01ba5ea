"""The front half of the method, as the instructions target optimizes it: describe a reference, then
synthesize new instructions for each of its features.

Its parts carry the pipeline's names (`collect`, `synthesizer`), so a compiled ProposeInstructions saves
`collect.describe` and `synthesizer.synthesize`, which load into a whole pipeline (`refed synthesize --program`).
"""

from __future__ import annotations

import dspy

from refed_dspy.programs.reference_feedback import CollectReferenceFeedback
from refed_dspy.programs.synthesize import InstructionSynthesizer, synthesize_for_features
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.records import Reference, ReferenceFeedback


class ProposeInstructions(dspy.Module):
    """Reference -> Prediction(features=[(name, description)], instructions=[(feature name, instruction)])."""

    def __init__(self, n: int = 2):
        super().__init__()
        self.n = n
        self.collect = CollectReferenceFeedback(describe=True, critique=False)
        self.synthesizer = InstructionSynthesizer()

    async def aforward(self, reference: Reference) -> dspy.Prediction:
        reference = Reference.coerce(reference)
        fb = await self.collect.acall(reference=reference)
        features = ReferenceFeedback(
            reference_id=reference.id, subject_areas=fb.subject_areas, relevant_skills=fb.relevant_skills
        ).features()
        instructions = await synthesize_for_features(self.synthesizer, reference.instruction, features, self.n)
        return dspy.Prediction(features=features, instructions=instructions)

    def forward(self, reference: Reference) -> dspy.Prediction:
        return run_sync(self.aforward(reference=reference))
