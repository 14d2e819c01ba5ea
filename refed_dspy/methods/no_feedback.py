"""no_feedback (paper baseline): new instructions from the reference instruction alone, drafts kept."""

from refed_dspy.methods.reference_synthesis import ReferenceSynthesisMethod
from refed_dspy.registry import METHODS


@METHODS.register
class NoFeedback(ReferenceSynthesisMethod):
    """No feedback call at all: one feature ("reference") per reference, the draft is the sample."""

    name = "no_feedback"
    summary = "paper baseline: no feedback"
    rank = 3
    describe = False
    critique_reference = False
    improve = False
    sample_feedback = False
