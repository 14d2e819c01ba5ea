"""Response generation with the reference pair as an example."""

from typing import Annotated

import dspy

from refed_dspy.adapters.layout import Repeated
from refed_dspy.signatures.bounds import RESPONSE_CHARS, text_output


class GenerateResponse(dspy.Signature):
    """Answer the instruction as a helpful, knowledgeable assistant. An example pair shows the
    standard expected: match its quality, structure and care, not its topic."""

    # the reference pair: the same for every instruction made from it, so it leads (its prompt prefix is cached)
    example_instruction: Annotated[str, Repeated()] = dspy.InputField()
    example_response: Annotated[str, Repeated()] = dspy.InputField()
    instruction: str = dspy.InputField()
    response: str = text_output(RESPONSE_CHARS)
