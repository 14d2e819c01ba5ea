"""What we ask the LM: one typed DSPy signature per stage of the method."""

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
