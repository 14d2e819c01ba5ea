"""The LLM judge's asks: a pointwise rubric score and a pairwise preference; and, for the instructions target, how good
one synthesized instruction is as training data (RateInstruction)."""

from __future__ import annotations

from typing import Annotated, Literal

import dspy

from refed_dspy.adapters.layout import Repeated
from refed_dspy.signatures.bounds import RATIONALE_CHARS, Score, text_output

# What each default criterion means; a custom criterion is described by its name.
CRITERIA = {
    "helpfulness": "how well the response meets the user's actual need",
    "accuracy": "whether every claim, step and piece of code is correct",
    "depth": "whether it goes as deep as the instruction warrants, with reasoning and specifics",
    "clarity": "how easy it is to follow: structure, wording, formatting",
    "instruction_following": "whether it does exactly what was asked, respecting every constraint",
}


class ScoreResponse(dspy.Signature):
    """Grade a response to an instruction against a rubric, as a strict, calibrated expert reviewer.
    Read the whole response, note its concrete strengths and faults, then give each rubric criterion
    an integer score from 1 (unusable) to 10 (could not be improved). Reserve 9 and 10 for responses
    with no real fault; length alone earns nothing."""

    instruction: str = dspy.InputField()
    response: str = dspy.InputField()
    rubric: str = dspy.InputField(desc="The criteria to score, one per line.")
    rationale: str = text_output(RATIONALE_CHARS, "Two to four sentences naming the main strengths and faults.")


def rubric_text(criteria: list[str]) -> str:
    """One line per criterion: its name and what it means.

    Args:
        criteria: the criteria's names; one not in CRITERIA is described by its name, underscores as spaces.

    Returns:
        The rubric, one `name: meaning` line per criterion, in the given order.
    """
    return "\n".join(f"{c}: {CRITERIA.get(c, c.replace('_', ' '))}" for c in criteria)


def pointwise_signature(criteria: list[str]) -> type[dspy.Signature]:
    """ScoreResponse with one integer output field per criterion, in rubric order.

    Args:
        criteria: the criteria's names, each the name of an output field.

    Returns:
        A signature with ScoreResponse's fields and a 1-10 Score output per criterion.
    """
    sig = ScoreResponse
    for name in criteria:
        sig = sig.append(name, dspy.OutputField(desc=f"Score for {name.replace('_', ' ')}."), type_=Score)
    return sig


class CompareResponses(dspy.Signature):
    """Decide which of two responses better serves the instruction, as an impartial expert. Judge
    correctness first, then how fully and precisely each meets the request, then clarity. Ignore the
    order they are shown in and their length as such. Answer tie only when neither is better in a way
    the user would notice."""

    instruction: str = dspy.InputField()
    response_a: str = dspy.InputField()
    response_b: str = dspy.InputField()
    rationale: str = text_output(RATIONALE_CHARS, "Two to four sentences comparing the two.")
    verdict: Literal["A", "B", "tie"] = dspy.OutputField()


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
