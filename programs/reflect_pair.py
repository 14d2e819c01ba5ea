"""Reflection-Tuning (Li et al. 2023) as a DSPy module: recycle one existing pair into a better one."""

from __future__ import annotations

import dspy

from refed_dspy.programs.steps import Call, Steps, arun_steps, run_steps
from refed_dspy.signatures import ReflectInstruction, ReflectResponse

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
        """Rewrite the pair, improve its answer, or both, as the mode says."""
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
