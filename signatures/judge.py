"""The LLM judge's asks: a pointwise rubric score and a pairwise preference."""

from __future__ import annotations

from typing import Literal

import dspy

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
    """One line per criterion: its name and what it means."""
    return "\n".join(f"{c}: {CRITERIA.get(c, c.replace('_', ' '))}" for c in criteria)


def pointwise_signature(criteria: list[str]) -> type[dspy.Signature]:
    """ScoreResponse with one integer output field per criterion, in rubric order."""
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
