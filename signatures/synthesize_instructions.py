"""Instruction synthesis from a reference and one of its features."""

from typing import Annotated

import dspy

from refed_dspy.adapters.layout import Repeated
from refed_dspy.signatures.bounds import INSTRUCTION_CHARS, bounded_item

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
