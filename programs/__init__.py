"""How the asks compose: DSPy modules for each part of the method, and a compiled program saved and loaded (saved)."""

import sys

from refed_dspy.programs import parts, reflection, synthesis
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

# A program pickled before these modules were merged (MLflow's DSPy flavor pickles a logged program, naming each
# module class by its module) still loads: each former module's name stands for the module its classes are in now.
FORMER_MODULES = {
    "reference_feedback": synthesis,
    "synthesize": synthesis,
    "respond_and_improve": synthesis,
    "propose_instructions": synthesis,
    "reference_synthesis": synthesis,
    "reflect_pair": reflection,
    "reflection_tuning": reflection,
    "steps": parts,
}
for _former, _module in FORMER_MODULES.items():
    sys.modules.setdefault(f"{__name__}.{_former}", _module)
