"""The repeated part of a prompt comes first and is found where it ends: the signatures' repeated inputs lead, and an
adapter's prompt ends its repeated part after the instructions, after the demos and after the reference."""

from __future__ import annotations

import inspect

import dspy

import refed_dspy.signatures as signatures
from refed_dspy.adapters import RefedChatAdapter, RefedJSONAdapter
from refed_dspy.adapters.layout import Repeated, repeated_inputs, stable_prompt
from refed_dspy.signatures import GenerateResponse, ImproveResponse, SynthesizeInstructions


def _ours() -> list[type[dspy.Signature]]:
    return [
        obj
        for _, obj in inspect.getmembers(signatures, inspect.isclass)
        if issubclass(obj, dspy.Signature) and obj.__module__.startswith("refed_dspy.signatures")
    ]


def test_each_signature_puts_its_repeated_inputs_first():
    for sig in _ours():
        marked = [n for n, f in sig.input_fields.items() if any(isinstance(m, Repeated) for m in f.metadata)]
        assert list(repeated_inputs(sig)) == marked, f"{sig.__name__}: a repeated input after one that changes"
    # what REFED repeats across the instructions of a reference: its example pair, its feedback
    assert repeated_inputs(GenerateResponse) == ("example_instruction", "example_response")
    assert repeated_inputs(ImproveResponse) == ("feedback",)
    assert repeated_inputs(SynthesizeInstructions) == ("reference_instruction",)


def _messages(adapter, reference: str, instruction: str, demos: int = 1) -> list[dict]:
    shots = [
        dspy.Example(example_instruction="e", example_response="r", instruction=f"i{k}", response=f"a{k}")
        for k in range(demos)
    ]
    inputs = {"example_instruction": reference, "example_response": "its answer", "instruction": instruction}
    return adapter.format(GenerateResponse, shots, inputs)


def test_the_repeated_part_ends_after_the_instructions_the_demos_and_the_reference():
    for adapter in (RefedChatAdapter(), RefedJSONAdapter()):
        messages = _messages(adapter, "REF-A", "first")
        found = stable_prompt(GenerateResponse, messages)
        last = len(messages) - 1
        assert [end[0] for end in found.ends] == [0, last - 1, last]
        cut = found.ends[-1][1]
        assert messages[last]["content"][:cut].rstrip().endswith("its answer")  # the reference pair ...
        assert messages[last]["content"][cut:].startswith("[[ ## instruction ## ]]")  # ... then what changes
        # calls of one reference share its key; another reference's calls another one
        same = stable_prompt(GenerateResponse, _messages(adapter, "REF-A", "second"))
        other = stable_prompt(GenerateResponse, _messages(adapter, "REF-B", "first"))
        assert same.key == found.key != other.key


def test_a_prompt_without_repeated_inputs_ends_its_repeated_part_after_the_demos():
    class Judge(dspy.Signature):
        """Score it."""

        instruction: str = dspy.InputField()
        score: int = dspy.OutputField()

    plain = RefedChatAdapter().format(Judge, [], {"instruction": "x"})
    assert stable_prompt(Judge, plain).ends == ((0, None),)
    shots = [dspy.Example(instruction="a", score=1)]
    with_demos = RefedChatAdapter().format(Judge, shots, {"instruction": "x"})
    assert stable_prompt(Judge, with_demos).ends == ((0, None), (2, None))
