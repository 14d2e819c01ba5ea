"""How the asks compose: DSPy modules for each part of the method, and a compiled program saved and loaded (saved)."""

from refed_dspy.programs.judge import JudgeSample, PairwiseJudge, PointwiseJudge, combine_verdicts
from refed_dspy.programs.propose_instructions import ProposeInstructions
from refed_dspy.programs.reference_feedback import CollectReferenceFeedback
from refed_dspy.programs.reference_synthesis import ReferenceSynthesis
from refed_dspy.programs.reflect_pair import ReflectPair
from refed_dspy.programs.reflection_tuning import ReflectionTuning
from refed_dspy.programs.respond_and_improve import RespondAndImprove
from refed_dspy.programs.synthesize import InstructionSynthesizer

__all__ = [
    "CollectReferenceFeedback",
    "InstructionSynthesizer",
    "JudgeSample",
    "PairwiseJudge",
    "PointwiseJudge",
    "ProposeInstructions",
    "ReferenceSynthesis",
    "ReflectPair",
    "ReflectionTuning",
    "RespondAndImprove",
    "combine_verdicts",
]
