"""sample_feedback (paper baseline): each new pair is critiqued on its own and improved with that critique."""

from refed_dspy.methods.reference_synthesis import ReferenceSynthesisMethod
from refed_dspy.registry import METHODS


@METHODS.register
class SampleFeedback(ReferenceSynthesisMethod):
    """Instructions as refed; each draft critiqued itself (one feedback call per sample), then improved."""

    name = "sample_feedback"
    summary = "paper baseline: reference instruction feedback, sample-level response feedback"
    rank = 1
    describe = True
    critique_reference = False
    improve = True
    sample_feedback = True
