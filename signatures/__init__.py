"""What we ask the LM: one typed DSPy signature per stage of the method."""

import sys

from refed_dspy.signatures import judge, reflection, synthesis
from refed_dspy.signatures.judge import (
    INSTRUCTION_CRITERIA,
    CompareResponses,
    RateInstruction,
    ScoreResponse,
    pointwise_signature,
    rubric_text,
)
from refed_dspy.signatures.reflection import ReflectInstruction, ReflectResponse
from refed_dspy.signatures.synthesis import (
    Analysis,
    CritiqueResponse,
    DescribeInstruction,
    GenerateResponse,
    ImplementationStrategy,
    ImproveResponse,
    SynthesizeInstructions,
)

FIELD_NAMES = frozenset(
    name
    for sig in (
        CritiqueResponse,
        DescribeInstruction,
        GenerateResponse,
        ImproveResponse,
        CompareResponses,
        ScoreResponse,
        RateInstruction,
        ReflectInstruction,
        ReflectResponse,
        SynthesizeInstructions,
    )
    for name in (*sig.input_fields, *sig.output_fields)
)
"""The field names of every signature above. An instruction a unit writes that reads as one of them (`New Instructions`)
is a field name echoed, not an instruction: `refed_dspy.adapters.junk_reason` drops it."""

__all__ = [
    "FIELD_NAMES",
    "Analysis",
    "CompareResponses",
    "CritiqueResponse",
    "DescribeInstruction",
    "GenerateResponse",
    "ImplementationStrategy",
    "INSTRUCTION_CRITERIA",
    "ImproveResponse",
    "RateInstruction",
    "ReflectInstruction",
    "ReflectResponse",
    "ScoreResponse",
    "SynthesizeInstructions",
    "pointwise_signature",
    "rubric_text",
]

# A program pickled before these modules were merged (MLflow's DSPy flavor pickles a logged program, which names each
# signature class by its module) still loads: each former module's name stands for the module its classes are in now.
FORMER_MODULES = {
    "critique_response": synthesis,
    "describe_instruction": synthesis,
    "generate_response": synthesis,
    "improve_response": synthesis,
    "synthesize_instructions": synthesis,
    "reflect_instruction": reflection,
    "reflect_response": reflection,
    "rate_instruction": judge,
}
for _former, _module in FORMER_MODULES.items():
    sys.modules.setdefault(f"{__name__}.{_former}", _module)
