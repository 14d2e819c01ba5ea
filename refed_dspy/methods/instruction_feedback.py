"""instruction_feedback (paper baseline): reference-level instruction feedback only; drafts are kept as they are."""

from refed_dspy.methods.reference_synthesis import ReferenceSynthesisMethod
from refed_dspy.registry import METHODS


@METHODS.register
class InstructionFeedback(ReferenceSynthesisMethod):
    """Instructions as refed; the draft response is the sample (no improvement step)."""

    name = "instruction_feedback"
    summary = "paper baseline: reference instruction feedback, drafts only"
    rank = 2
    describe = True
    critique_reference = False
    improve = False
    sample_feedback = False
