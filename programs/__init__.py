"""How the asks compose: DSPy modules for each part of the method, and a compiled program saved and loaded (saved)."""

from refed_dspy.programs.judge import JudgeSample, PairwiseJudge, PointwiseJudge, combine_verdicts
from refed_dspy.programs.reflection import ReflectionTuning, ReflectPair
from refed_dspy.programs.synthesis import (
    CollectReferenceFeedback,
    InstructionSynthesizer,
    ProposeInstructions,
    ReferenceSynthesis,
    RespondAndImprove,
)

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
