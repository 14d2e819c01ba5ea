"""What Reflection-Tuning asks: a pair's instruction critiqued and the pair rewritten (ReflectInstruction); an answer
critiqued and a better one written (ReflectResponse)."""

from __future__ import annotations

from typing import Annotated

import dspy

from refed_dspy.adapters.degenerate import Instructs, Revises
from refed_dspy.signatures.bounds import CRITIQUE_CHARS, INSTRUCTION_CHARS, RESPONSE_CHARS, text_output


class ReflectInstruction(dspy.Signature):
    """You are recycling an existing instruction-tuning example into a better one. First assess the
    instruction on five points: how complex its topic is, how much detail a good answer must give,
    what knowledge answering it takes, how ambiguous it is, and how much logical reasoning or
    problem solving it calls for. Then write a new instruction on the same theme that is more
    challenging, unambiguous and complete in itself (a reader needs nothing but the instruction),
    and a full, accurate answer to that new instruction."""

    instruction: str = dspy.InputField(desc="The instruction of the existing example.")
    response: str = dspy.InputField(desc="The answer the existing example gives.")
    instruction_critique: str = text_output(
        CRITIQUE_CHARS, "The assessment on the five points, one short paragraph each."
    )
    new_instruction: Annotated[str, Instructs()] = text_output(
        INSTRUCTION_CHARS, "The rewritten, self-contained instruction."
    )
    new_response: str = text_output(RESPONSE_CHARS, "A complete answer to the new instruction.")


class ReflectResponse(dspy.Signature):
    """You are recycling an existing instruction-tuning example by improving its answer. First
    assess the answer on four points: how helpful it is to the person who asked, how relevant it
    stays to what was asked, how accurate it is, and whether its level of detail suits the
    instruction. Then write a better answer to the same instruction that fixes every weakness you
    found and keeps what was already right."""

    instruction: str = dspy.InputField()
    response: str = dspy.InputField(desc="The answer to assess and improve.")
    response_critique: str = text_output(CRITIQUE_CHARS, "The assessment on the four points, one short paragraph each.")
    # an answer with no weakness may come back whole ("keeps what was already right"), not a copy
    better_response: Annotated[str, Revises("response")] = text_output(RESPONSE_CHARS, "The complete improved answer.")
