"""Response improvement with feedback written for a similar but different pair."""

from typing import Annotated

import dspy

from refed_dspy.adapters.degenerate import Revises
from refed_dspy.adapters.layout import Repeated
from refed_dspy.signatures.bounds import RESPONSE_CHARS, text_output
from refed_dspy.store.records import Analysis, ImplementationStrategy

__all__ = ["Analysis", "ImplementationStrategy", "ImproveResponse"]


class ImproveResponse(dspy.Signature):
    """Improve a draft response. The feedback was written about a different but similar response,
    so first decide which of its points apply here and ignore the rest. Keep what is already good,
    plan concrete changes, then write the complete improved response (not a list of edits). Never
    make the response less accurate or pad it with filler."""

    # written once for the reference, the same for every response improved with it: it leads (its prefix is cached)
    feedback: Annotated[str, Repeated()] = dspy.InputField(
        desc="Feedback on a high-quality reference response to a similar instruction."
    )
    instruction: str = dspy.InputField()
    draft_response: str = dspy.InputField()
    analysis: Analysis = dspy.OutputField()
    implementation_strategy: ImplementationStrategy = dspy.OutputField()
    # a draft that needs no change may come back whole: that is keeping what is good, not a copy
    improved_response: Annotated[str, Revises("draft_response")] = text_output(
        RESPONSE_CHARS, "The full improved response."
    )
