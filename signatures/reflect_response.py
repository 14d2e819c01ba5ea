"""Response reflection (Reflection-Tuning): critique an answer, then write a better one."""

from typing import Annotated

import dspy

from refed_dspy.adapters.degenerate import Revises
from refed_dspy.signatures.bounds import CRITIQUE_CHARS, RESPONSE_CHARS, text_output


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
