"""Response generation with the reference pair as an example."""

import dspy

from refed_dspy.signatures.bounds import RESPONSE_CHARS, text_output


class GenerateResponse(dspy.Signature):
    """Answer the instruction as a helpful, knowledgeable assistant. An example pair shows the
    standard expected: match its quality, structure and care, not its topic."""

    example_instruction: str = dspy.InputField()
    example_response: str = dspy.InputField()
    instruction: str = dspy.InputField()
    response: str = text_output(RESPONSE_CHARS)
