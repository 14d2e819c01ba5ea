"""Every signature and module on DSPy's DummyLM (no network, no server)."""

import asyncio

import dspy
import pytest
from dspy.utils import DummyLM

from refed_dspy.adapters import RefedChatAdapter, output_schema
from refed_dspy.clients.calls import collect_calls
from refed_dspy.programs import CollectReferenceFeedback, InstructionSynthesizer, ReferenceSynthesis, RespondAndImprove
from refed_dspy.programs.synthesis import asking_for
from refed_dspy.signatures import (
    CritiqueResponse,
    DescribeInstruction,
    GenerateResponse,
    ImproveResponse,
    SynthesizeInstructions,
)
from refed_dspy.store.records import Analysis, Reference

REF = Reference.make(
    "Explain photosynthesis simply.", "Plants turn light, water and CO2 into sugar and oxygen.", "test"
)
IMPROVED = {
    "analysis": {
        "original_strengths": ["clear"],
        "improvement_opportunities": ["add an example"],
        "relevant_feedback": ["use examples"],
    },
    "implementation_strategy": {"planned_changes": ["add a leaf example"], "rationale": "examples help"},
    "improved_response": "Better answer with an example.",
}


def test_signature_fields_and_order():
    assert list(DescribeInstruction.output_fields) == ["subject_areas", "relevant_skills"]
    assert list(CritiqueResponse.output_fields) == ["response_feedback"]
    items = output_schema(asking_for(SynthesizeInstructions, 3))["properties"]["new_instructions"]
    assert (items["type"], items["minItems"], items["maxItems"], items["items"]["minLength"]) == ("array", 3, 3, 1)
    # what many calls share comes first in the prompt
    assert list(GenerateResponse.input_fields) == ["example_instruction", "example_response", "instruction"]
    assert list(ImproveResponse.input_fields)[0] == "feedback"
    assert ImproveResponse.output_fields["analysis"].annotation is Analysis
    for sig in (DescribeInstruction, CritiqueResponse, SynthesizeInstructions, GenerateResponse, ImproveResponse):
        assert len(sig.instructions) > 80


def test_collect_reference_feedback():
    lm = DummyLM(
        [{"subject_areas": "biology", "relevant_skills": "simplifying"}, {"response_feedback": "add an example"}]
    )
    with dspy.context(lm=lm):
        pred = CollectReferenceFeedback().forward(reference=REF)
    assert (pred.subject_areas, pred.relevant_skills, pred.response_feedback) == (
        "biology",
        "simplifying",
        "add an example",
    )
    lm = DummyLM([{"subject_areas": "biology", "relevant_skills": "simplifying"}])
    with dspy.context(lm=lm):
        pred = CollectReferenceFeedback(critique=False).forward(reference=REF)
    assert pred.response_feedback is None and pred.subject_areas == "biology"


def test_instruction_synthesizer_holds_the_count_and_cleans():
    # five items (one blank) for n=3 break the contract: repaired once, then list markers are stripped
    lm = DummyLM(
        [
            {
                "new_instructions": [
                    "1. Explain osmosis.",
                    "  ",
                    "- Explain diffusion.",
                    "Explain respiration.",
                    "extra",
                ]
            },
            {"new_instructions": ["1. Explain osmosis.", "- Explain diffusion.", "Explain respiration."]},
        ]
    )
    with dspy.context(lm=lm, adapter=RefedChatAdapter(max_repairs=1)):
        pred = InstructionSynthesizer()(
            reference_instruction=REF.instruction, feature_name="subject_areas", feature_description="biology", n=3
        )
    assert pred.new_instructions == ["Explain osmosis.", "Explain diffusion.", "Explain respiration."]
    repair = lm.history[-1]["messages"][-1]["content"]
    assert (
        "That reply cannot be used: new_instructions" in repair
        and "exactly 3 strings" in lm.history[0]["messages"][0]["content"]
    )


def test_respond_and_improve_and_stage_accounting():
    lm = DummyLM([{"response": "draft"}, IMPROVED])
    with dspy.context(lm=lm), collect_calls() as calls:
        pred = RespondAndImprove()(
            reference_instruction=REF.instruction,
            reference_response=REF.response,
            instruction="Explain osmosis.",
            feedback="use examples",
        )
    assert pred.response == "draft" and pred.improved_response == "Better answer with an example."
    assert pred.analysis.relevant_feedback == ["use examples"]
    assert calls == []  # DummyLM is not a RefedLM: it reports nothing, and nothing breaks


def test_respond_without_improve_and_with_sample_feedback():
    with dspy.context(lm=DummyLM([{"response": "draft"}])):
        pred = RespondAndImprove(improve=False)(reference_instruction="a", reference_response="b", instruction="c")
    assert pred.response == "draft" and pred.improved_response is None
    lm = DummyLM([{"response": "draft"}, {"response_feedback": "own feedback"}, IMPROVED])
    with dspy.context(lm=lm):
        pred = RespondAndImprove(sample_feedback=True)(
            reference_instruction="a", reference_response="b", instruction="c"
        )
    assert pred.feedback_used == "own feedback" and pred.improved_response


# DummyLM answers for a reference's feedback and its two features' instructions, keyed by what each prompt
# contains, so the concurrent calls may come in any order
FRONT_HALF = {
    "`[[ ## subject_areas ## ]]`": {"subject_areas": "biology", "relevant_skills": "simplifying"},
    "`[[ ## response_feedback ## ]]`": {"response_feedback": "use examples"},
    "[[ ## feature_description ## ]]\nbiology": {"new_instructions": ["Explain osmosis."]},
    "[[ ## feature_description ## ]]\nsimplifying": {"new_instructions": ["Explain diffusion."]},
}


def test_reference_synthesis_async_composition():
    answers = {**FRONT_HALF, "`[[ ## response ## ]]`": {"response": "draft"}, "`[[ ## analysis ## ]]`": IMPROVED}
    with dspy.context(lm=DummyLM(answers)):
        pred = asyncio.run(ReferenceSynthesis(n=1).acall(reference=REF))
    assert pred.feedback.response_feedback == "use examples"
    assert sorted(s.instruction for s in pred.samples) == ["Explain diffusion.", "Explain osmosis."]
    assert all(s.improved_response == IMPROVED["improved_response"] for s in pred.samples)


class _FlakyRespond(dspy.Module):
    """Fails on instructions that name `bad`."""

    def __init__(self, bad):
        super().__init__()
        self.bad = bad

    async def aforward(self, reference_instruction, reference_response, instruction, feedback=None):
        if any(word in instruction for word in self.bad):
            raise ValueError("reply cut off at max_tokens")
        return dspy.Prediction(response="draft", improved_response="better")


def test_reference_synthesis_keeps_the_samples_whose_calls_succeeded():
    with dspy.context(lm=DummyLM(FRONT_HALF)):
        pred = asyncio.run(ReferenceSynthesis(n=1, respond=_FlakyRespond(["osmosis"])).acall(reference=REF))
        assert [s.instruction for s in pred.samples] == ["Explain diffusion."] and pred.failed == 1
        with pytest.raises(ValueError, match="cut off"):  # nothing came out: the error, not an empty result
            asyncio.run(ReferenceSynthesis(n=1, respond=_FlakyRespond(["osmosis", "diffusion"])).acall(reference=REF))
