"""Response feedback: what makes a response good and how it could be better."""

import dspy

from refed_dspy.signatures.bounds import CRITIQUE_CHARS, text_output


class CritiqueResponse(dspy.Signature):
    """Review a response to an instruction as a demanding editor would. Say what makes it effective
    and where it falls short, covering accuracy, depth, clarity, organization, tone, how fully it
    addresses the instruction, its scope, and the needs the user implied but did not state. Write
    feedback that a writer could act on, in concrete terms."""

    instruction: str = dspy.InputField()
    response: str = dspy.InputField()
    response_feedback: str = text_output(CRITIQUE_CHARS, "Strengths first, then specific, actionable improvements.")
