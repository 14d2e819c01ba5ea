"""refed (the paper's method): reference-level feedback, collected once per reference, guides every sample."""

from refed_dspy.methods.reference_synthesis import ReferenceSynthesisMethod
from refed_dspy.registry import METHODS


@METHODS.register
class Refed(ReferenceSynthesisMethod):
    """Instructions from the reference's described subject areas and skills; each draft improved with the
    reference's response critique (2 feedback calls per reference, 2 calls per sample)."""

    name = "refed"
    summary = "the paper: reference-level instruction and response feedback"
    rank = 0
    describe = True
    critique_reference = True
    improve = True
    sample_feedback = False
