"""REFED's programs, from its parts to the whole method.

- `CollectReferenceFeedback`: feedback collected once per reference (its instruction's features, its response's
  feedback).
- `InstructionSynthesizer`: new instructions from a reference and one of its features.
- `RespondAndImprove`: the per-instruction program, a response generated and then improved with reference feedback.
  It is what an optimizer tunes, and the hot path of a run (two LM calls a sample).
- `ProposeInstructions`: the front half of the method as the instructions target optimizes it (a reference described,
  then new instructions for each of its features). Its parts carry the pipeline's names (`collect`, `synthesizer`),
  so a compiled ProposeInstructions saves `collect.describe` and `synthesizer.synthesize`, which load into a whole
  pipeline (`refed synthesize --program`).
- `ReferenceSynthesis`: one reference in, its synthesized samples out, a whole per-instruction method as one DSPy
  module. It is the program `refed synthesize` runs. Its three parts are `collect` (reference feedback),
  `synthesizer` (new instructions) and `respond` (a response for each, improved or not): the runner schedules them
  across many references at once and takes each from here, so a compiled pipeline drives every stage. Its forward
  is the plain composition, for library use and for optimizing the whole method.
"""

from __future__ import annotations

import functools

import dspy

from refed_dspy.engine.failures import deciding_error
from refed_dspy.engine.transport import acall_part
from refed_dspy.ledger.budget import BudgetExceeded
from refed_dspy.programs.parts import Call, Steps, arun_steps, run_steps, unfrozen
from refed_dspy.runtime.sync import gather_kept, run_sync
from refed_dspy.signatures import (
    CritiqueResponse,
    DescribeInstruction,
    GenerateResponse,
    ImproveResponse,
    SynthesizeInstructions,
)
from refed_dspy.signatures.bounds import exactly
from refed_dspy.signatures.synthesis import Instruction
from refed_dspy.store.records import Reference, ReferenceFeedback


class CollectReferenceFeedback(dspy.Module):
    """Reference -> Prediction(subject_areas, relevant_skills, response_feedback).

    `describe` and `critique` choose which feedback to collect; the two calls run concurrently.
    """

    def __init__(self, describe: bool = True, critique: bool = True):
        super().__init__()
        self.describe = dspy.Predict(DescribeInstruction) if describe else None
        self.critique = dspy.Predict(CritiqueResponse) if critique else None

    def steps(self, reference: Reference) -> Steps:
        """The instruction's features and the response's critique, at once (either may be left out).

        Args:
            reference: the reference pair whose instruction is described and whose response is critiqued.

        Yields:
            The list of calls to make at once (describe, critique, as built; nothing when neither is), sent back
                their predictions in that order.

        Returns:
            Prediction(subject_areas, relevant_skills, response_feedback); what was not collected is None.
        """
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


@functools.lru_cache(maxsize=256)
def asking_for(signature: type[dspy.Signature], n: int) -> type[dspy.Signature]:
    """`signature` (as it is now: optimizers rewrite its instructions) with `new_instructions` bound to exactly n
    items, so the schema a provider sees and the parse check both hold the count (which its description then leaves
    to the type: each bound is stated once)."""
    return signature.with_updated_fields(
        "new_instructions", type_=exactly(n, Instruction), desc="Distinct instructions."
    )


def clean_instructions(items: list[str], n: int) -> list[str]:
    """Strip, drop empties and list markers, keep order, at most n."""
    out = []
    for item in items or []:
        text = str(item).strip()
        text = text.lstrip("-*•0123456789.) ").strip() if text[:1] in "-*•0123456789" else text
        if text:
            out.append(text)
    return out[:n]


class InstructionSynthesizer(dspy.Module):
    """(reference instruction, feature, n) -> Prediction(new_instructions: list[str])."""

    def __init__(self):
        super().__init__()
        self.synthesize = dspy.Predict(SynthesizeInstructions)

    def steps(
        self,
        reference_instruction: str,
        feature_name: str,
        feature_description: str,
        n: int,
        rollout_id: int | None = None,
    ) -> Steps:
        """One call asking for exactly `n` instructions (a rollout of its own when `rollout_id` is set); cleaned.

        Args:
            reference_instruction: the reference's instruction the new ones derive from.
            feature_name: the feature of the reference the new instructions exercise.
            feature_description: what that feature is; when empty, the call is told to draw on the reference alone.
            n: how many instructions to ask for.
            rollout_id: a rollout id, so that the same ask is not answered from the cache; None or 0: none.

        Yields:
            The synthesize call, sent back its prediction.

        Returns:
            Prediction(new_instructions): at most `n` instructions, stripped of list markers, empty ones dropped.
        """
        pred = yield Call(
            self.synthesize,
            "synthesize",
            dict(
                reference_instruction=reference_instruction,
                feature_name=feature_name,
                feature_description=feature_description or "(none given: draw on the reference instruction alone)",
                n=n,
                signature=asking_for(self.synthesize.signature, n),
                config={"rollout_id": rollout_id} if rollout_id else {},
            ),
        )
        return dspy.Prediction(new_instructions=clean_instructions(pred.new_instructions, n))

    async def aforward(
        self,
        reference_instruction: str,
        feature_name: str,
        feature_description: str,
        n: int,
        rollout_id: int | None = None,
    ) -> dspy.Prediction:
        return await arun_steps(self.steps(reference_instruction, feature_name, feature_description, n, rollout_id))

    def forward(
        self,
        reference_instruction: str,
        feature_name: str,
        feature_description: str,
        n: int,
        rollout_id: int | None = None,
    ) -> dspy.Prediction:
        return run_steps(self.steps(reference_instruction, feature_name, feature_description, n, rollout_id))


async def synthesize_for_features(
    synthesizer: dspy.Module, reference_instruction: str, features: list[tuple[str, str]], n: int
) -> list[tuple[str, str]]:
    """(feature name, new instruction) pairs: `n` from `synthesizer` for each (name, description) feature, the
    features' calls made concurrently. A feature whose call failed gives none; when every one failed, the error
    that decides is raised (a retryable one before a final one: a retry may still give part of the work)."""

    async def one(name: str, desc: str) -> list[tuple[str, str]]:
        batch = await synthesizer.acall(
            reference_instruction=reference_instruction, feature_name=name, feature_description=desc, n=n
        )
        return [(name, text) for text in batch.new_instructions]

    kept, errors = await gather_kept(*[one(name, desc) for name, desc in features], fatal=(BudgetExceeded,))
    if errors and not kept:
        raise deciding_error(errors, partial=True)
    return [pair for pairs in kept for pair in pairs]


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
        """Draft, then (unless only drafting) critique it when it improves with its own feedback, and improve it.

        Args:
            reference_instruction: the reference's instruction, shown as an example.
            reference_response: the reference's response, shown as an example.
            instruction: the new instruction to respond to.
            feedback: the reference's response feedback the improver applies (with `sample_feedback`, the draft's own
                critique is used instead).

        Yields:
            Each call in turn (generate, then critique and improve where they run), sent back its prediction.

        Returns:
            Prediction(response, analysis, implementation_strategy, improved_response), with `feedback_used` when
                the draft was improved; only drafting, the last three are None.
        """
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
            raise deciding_error(errors, partial=True)
        return dspy.Prediction(feedback=feedback, samples=samples, failed=len(errors))

    def forward(self, reference: Reference, feedback: ReferenceFeedback | None = None) -> dspy.Prediction:
        return run_sync(self.aforward(reference=reference, feedback=feedback))
