"""One reference in, its synthesized samples out: a whole per-instruction method as one DSPy module.

This is the program `refed synthesize` runs. Its three parts are `collect` (reference feedback),
`synthesizer` (new instructions) and `respond` (a response for each, improved or not): the runner
schedules them across many references at once and takes each from here, so a compiled pipeline drives
every stage. Its forward is the plain composition, for library use and for optimizing the whole method.
"""

from __future__ import annotations

import dspy

from refed_dspy.engine.transport import acall_part
from refed_dspy.ledger.budget import BudgetExceeded
from refed_dspy.programs.parts import unfrozen
from refed_dspy.programs.reference_feedback import CollectReferenceFeedback
from refed_dspy.programs.respond_and_improve import RespondAndImprove
from refed_dspy.programs.synthesize import InstructionSynthesizer, synthesize_for_features
from refed_dspy.runtime.sync import gather_kept, run_sync
from refed_dspy.store.records import Reference, ReferenceFeedback


class ReferenceSynthesis(dspy.Module):
    """Reference -> Prediction(feedback, samples=[Prediction(instruction, feature, response, ...)], failed).

    A sample whose calls failed is left out and counted in `failed`, and a feature whose synthesis failed gives no
    instruction; when nothing came out, the first error is raised.

    Args:
        n: new instructions per feature.
        respond: the per-instruction part (default: RespondAndImprove for the flags below).
        describe: collect the reference's instruction features (else the one feature 'reference').
        critique: collect the reference's response feedback, which the improver applies.
        improve: improve each draft response.
        sample_feedback: critique each new pair itself instead (the sample-level baseline).
    """

    def __init__(
        self,
        n: int = 10,
        respond: dspy.Module | None = None,
        *,
        describe: bool = True,
        critique: bool = True,
        improve: bool = True,
        sample_feedback: bool = False,
    ):
        super().__init__()
        self.n = n
        self.collect = CollectReferenceFeedback(describe=describe, critique=critique)
        self.synthesizer = InstructionSynthesizer()
        self.respond = (
            unfrozen(respond)
            if respond is not None
            else RespondAndImprove(improve=improve, sample_feedback=sample_feedback)
        )

    async def aforward(self, reference: Reference, feedback: ReferenceFeedback | None = None) -> dspy.Prediction:
        reference = Reference.coerce(reference)
        if feedback is None:
            fb = await self.collect.acall(reference=reference)
            feedback = ReferenceFeedback(
                reference_id=reference.id,
                subject_areas=fb.subject_areas,
                relevant_skills=fb.relevant_skills,
                response_feedback=fb.response_feedback,
            )
        features = feedback.features() or [("reference", "")]
        pairs = await synthesize_for_features(self.synthesizer, reference.instruction, features, self.n)

        async def sample(name: str, text: str) -> dspy.Prediction:
            out = await acall_part(
                self.respond,
                reference_instruction=reference.instruction,
                reference_response=reference.response,
                instruction=text,
                feedback=feedback.response_feedback,
            )
            return dspy.Prediction(instruction=text, feature=name, **out.toDict())

        # a sample whose calls failed is left out, as a run rejects it; its siblings stay
        samples, errors = await gather_kept(*[sample(name, text) for name, text in pairs], fatal=(BudgetExceeded,))
        if errors and not samples:
            raise errors[0]
        return dspy.Prediction(feedback=feedback, samples=samples, failed=len(errors))

    def forward(self, reference: Reference, feedback: ReferenceFeedback | None = None) -> dspy.Prediction:
        return run_sync(self.aforward(reference=reference, feedback=feedback))
