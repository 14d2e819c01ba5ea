"""Synthesize new instructions from a reference and one of its features."""

from __future__ import annotations

import functools

import dspy

from refed_dspy.ledger.budget import BudgetExceeded
from refed_dspy.programs.steps import Call, Steps, arun_steps, run_steps
from refed_dspy.runtime.sync import gather_kept
from refed_dspy.signatures import SynthesizeInstructions
from refed_dspy.signatures.bounds import exactly
from refed_dspy.signatures.synthesis import Instruction


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
        """One call asking for exactly `n` instructions (a rollout of its own when `rollout_id` is set); cleaned."""
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
    features' calls made concurrently. A feature whose call failed gives none; when every one failed, the first
    error is raised."""

    async def one(name: str, desc: str) -> list[tuple[str, str]]:
        batch = await synthesizer.acall(
            reference_instruction=reference_instruction, feature_name=name, feature_description=desc, n=n
        )
        return [(name, text) for text in batch.new_instructions]

    kept, errors = await gather_kept(*[one(name, desc) for name, desc in features], fatal=(BudgetExceeded,))
    if errors and not kept:
        raise errors[0]
    return [pair for pairs in kept for pair in pairs]
