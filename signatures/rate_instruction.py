"""The judge's ask for the instructions target: how good one synthesized instruction is as training data."""

from __future__ import annotations

from typing import Annotated

import dspy

from refed_dspy.adapters.layout import Repeated
from refed_dspy.signatures.bounds import RATIONALE_CHARS, Score, text_output

INSTRUCTION_CRITERIA = {
    "clear": "a reader knows exactly what is asked",
    "self_contained": "it needs no context that is not in it",
    "answerable": "a capable assistant can give a good answer to it as written",
    "complexity": "it asks about as much, and of the same depth, as the reference instruction",
    "grounded": "it exercises the described feature of the reference",
}


def _said(criterion: str) -> str:
    """A criterion's description as its field's: what it means (its 1-10 range is its type's)."""
    meaning = INSTRUCTION_CRITERIA[criterion]
    return f"{meaning[0].upper()}{meaning[1:]}."


class RateInstruction(dspy.Signature):
    """Rate a new instruction written for an instruction-tuning dataset, as a demanding dataset curator.
    It was derived from a reference instruction and meant to exercise one described feature of it. Give
    each criterion an integer from 1 (fails it) to 10 (could not be better). An instruction that copies or
    barely rewords the reference is not the point: rate what it asks on its own."""

    # the same for every instruction made from one reference and feature: they lead (their prefix is cached)
    reference_instruction: Annotated[str, Repeated()] = dspy.InputField()
    feature: Annotated[str, Repeated()] = dspy.InputField(
        desc="The feature of the reference the new instruction should exercise."
    )
    instruction: str = dspy.InputField(desc="The new instruction to rate.")
    rationale: str = text_output(RATIONALE_CHARS, "Two or three sentences naming what is good and what is not.")
    clear: Score = dspy.OutputField(desc=_said("clear"))
    self_contained: Score = dspy.OutputField(desc=_said("self_contained"))
    answerable: Score = dspy.OutputField(desc=_said("answerable"))
    complexity: Score = dspy.OutputField(desc=_said("complexity"))
    grounded: Score = dspy.OutputField(desc=_said("grounded"))
