"""Reflection-Tuning (Li et al. 2023) as DSPy modules: `ReflectPair` recycles one existing pair into a better one, and
`ReflectionTuning` is the pipeline program in which every seed pair is recycled by one ReflectPair part."""

from __future__ import annotations

import dspy

from refed_dspy.engine.transport import acall_part
from refed_dspy.programs.parts import Call, Steps, arun_steps, run_steps, unfrozen
from refed_dspy.runtime.sync import run_sync
from refed_dspy.signatures import ReflectInstruction, ReflectResponse
from refed_dspy.store.records import Reference

REFLECTIONS = ("instruction", "response", "both")


class ReflectPair(dspy.Module):
    """(instruction, response) -> Prediction(instruction, response, improved_response, instruction_critique,
    response_critique).

    mode "instruction": rewrite the pair (new instruction and its answer); improved_response is None.
    mode "response": keep the instruction; `response` is the original answer, improved_response the better one.
    mode "both": rewrite the pair, then improve the new answer (`response` is the rewritten pair's answer).
    """

    def __init__(self, mode: str = "both"):
        super().__init__()
        if mode not in REFLECTIONS:
            raise ValueError(f"reflection mode must be one of {', '.join(REFLECTIONS)}, not {mode!r}")
        self.mode = mode
        self.reflect_instruction = dspy.Predict(ReflectInstruction) if mode in ("instruction", "both") else None
        self.reflect_response = dspy.Predict(ReflectResponse) if mode in ("response", "both") else None

    def steps(self, instruction: str, response: str) -> Steps:
        """Rewrite the pair, improve its answer, or both, as the mode says.

        Args:
            instruction: the pair's instruction.
            response: the pair's response.

        Yields:
            The instruction reflection call, then the response reflection call, where the mode runs them; each is sent
                back its prediction.

        Returns:
            Prediction(instruction, response, improved_response, instruction_critique, response_critique); what the
                mode does not make is None (or the input, for the pair).
        """
        out = dict(
            instruction=instruction,
            response=response,
            improved_response=None,
            instruction_critique=None,
            response_critique=None,
        )
        if self.reflect_instruction is not None:
            pred = yield Call(
                self.reflect_instruction, "reflect_instruction", dict(instruction=instruction, response=response)
            )
            out.update(
                instruction=pred.new_instruction,
                response=pred.new_response,
                instruction_critique=pred.instruction_critique,
            )
        if self.reflect_response is not None:
            pred = yield Call(
                self.reflect_response,
                "reflect_response",
                dict(instruction=out["instruction"], response=out["response"]),
            )
            out.update(improved_response=pred.better_response, response_critique=pred.response_critique)
        return dspy.Prediction(**out)

    async def aforward(self, instruction: str, response: str) -> dspy.Prediction:
        return await arun_steps(self.steps(instruction, response))

    def forward(self, instruction: str, response: str) -> dspy.Prediction:
        return run_steps(self.steps(instruction, response))


class ReflectionTuning(dspy.Module):
    """Reference -> Prediction(instruction, response, improved_response, ...): its pair, recycled.

    The runner calls `respond` (a ReflectPair, or a module taking `instruction` and `response`) once per seed pair.
    """

    def __init__(self, mode: str = "both", respond: dspy.Module | None = None):
        super().__init__()
        self.respond = unfrozen(respond) if respond is not None else ReflectPair(mode)

    async def aforward(self, reference: Reference) -> dspy.Prediction:
        reference = Reference.coerce(reference)
        return await acall_part(self.respond, instruction=reference.instruction, response=reference.response)

    def forward(self, reference: Reference) -> dspy.Prediction:
        return run_sync(self.aforward(reference=reference))
