"""Response improvement with feedback written for a similar but different pair."""

from typing import Annotated

import dspy

from refed_dspy.adapters.degenerate import Revises
from refed_dspy.adapters.layout import Repeated
from refed_dspy.signatures.bounds import RESPONSE_CHARS, text_output
from refed_dspy.store.records import Analysis, ImplementationStrategy

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
