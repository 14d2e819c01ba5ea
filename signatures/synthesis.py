"""What REFED and its baselines ask the LM, one signature per step: what a reference instruction is about and what
it demands (DescribeInstruction); new instructions from a reference and one of its features (SynthesizeInstructions);
a response with the reference pair as an example (GenerateResponse); feedback on a response, what makes it good and
how it could be better (CritiqueResponse); and a response improved with feedback written for a similar but different
pair (ImproveResponse)."""

from __future__ import annotations

from typing import Annotated

import dspy

from refed_dspy.adapters.degenerate import Revises
from refed_dspy.adapters.layout import Repeated
from refed_dspy.signatures.bounds import (
    CRITIQUE_CHARS,
    DESCRIPTION_CHARS,
    INSTRUCTION_CHARS,
    RESPONSE_CHARS,
    bounded_item,
    text_output,
)
from refed_dspy.store.records import Analysis, ImplementationStrategy


class DescribeInstruction(dspy.Signature):
    """Study a high-quality instruction and the response written for it, then characterize the
    instruction so that new instructions of the same kind and difficulty can be written from your
    description. Describe the subject areas it touches and the skills a strong answer needs. Be
    specific enough to guide a writer, general enough that many different instructions fit."""

    reference_instruction: str = dspy.InputField()
    reference_response: str = dspy.InputField()
    subject_areas: str = text_output(
        DESCRIPTION_CHARS, "The domains, topics and kinds of knowledge the instruction involves."
    )
    relevant_skills: str = text_output(
        DESCRIPTION_CHARS, "The abilities a response must show: reasoning, writing, coding, planning, and so on."
    )


Instruction = bounded_item(INSTRUCTION_CHARS)


class SynthesizeInstructions(dspy.Signature):
    """Write new instructions that a user might give an AI assistant, inspired by a reference
    instruction and guided by one described feature of it. Each new instruction must be of similar
    complexity and length to the reference, self-contained, answerable in text, and clearly
    different from the reference and from each other in topic or angle. Do not number them and do
    not answer them."""

    reference_instruction: Annotated[str, Repeated()] = dspy.InputField()  # the same for each feature: it leads
    feature_name: str = dspy.InputField()
    feature_description: str = dspy.InputField()
    n: int = dspy.InputField()
    new_instructions: list[Instruction] = dspy.OutputField(desc="n distinct instructions.")


class GenerateResponse(dspy.Signature):
    """Answer the instruction as a helpful, knowledgeable assistant. An example pair shows the
    standard expected: match its quality, structure and care, not its topic."""

    # the reference pair: the same for every instruction made from it, so it leads (its prompt prefix is cached)
    example_instruction: Annotated[str, Repeated()] = dspy.InputField()
    example_response: Annotated[str, Repeated()] = dspy.InputField()
    instruction: str = dspy.InputField()
    response: str = text_output(RESPONSE_CHARS)


class CritiqueResponse(dspy.Signature):
    """Review a response to an instruction as a demanding editor would. Say what makes it effective
    and where it falls short, covering accuracy, depth, clarity, organization, tone, how fully it
    addresses the instruction, its scope, and the needs the user implied but did not state. Write
    feedback that a writer could act on, in concrete terms."""

    instruction: str = dspy.InputField()
    response: str = dspy.InputField()
    response_feedback: str = text_output(CRITIQUE_CHARS, "Strengths first, then specific, actionable improvements.")


__all__ = ["Analysis", "ImplementationStrategy", "ImproveResponse"]


class ImproveResponse(dspy.Signature):
    """Improve a draft response with feedback that was written for a high-quality response to a similar but
    different instruction: apply only the points that fit this draft, and write the whole improved response, not a
    list of edits. Never make it less accurate or pad it with filler."""

    # written once for the reference, the same for every response improved with it: it leads (its prefix is cached)
    feedback: Annotated[str, Repeated()] = dspy.InputField()
    instruction: str = dspy.InputField()
    draft_response: str = dspy.InputField()
    analysis: Analysis = dspy.OutputField()
    implementation_strategy: ImplementationStrategy = dspy.OutputField()
    # a draft that needs no change may come back whole: that is keeping what is good, not a copy
    improved_response: Annotated[str, Revises("draft_response")] = text_output(RESPONSE_CHARS)
