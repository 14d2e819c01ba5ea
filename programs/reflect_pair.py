"""Reflection-Tuning (Li et al. 2023) as a DSPy module: recycle one existing pair into a better one."""

from __future__ import annotations

import dspy

from refed_dspy.clients.calls import stage
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

    async def aforward(self, instruction: str, response: str) -> dspy.Prediction:
        out = dict(
            instruction=instruction,
            response=response,
            improved_response=None,
            instruction_critique=None,
            response_critique=None,
        )
        if self.reflect_instruction is not None:
            with stage("reflect_instruction"):
                pred = await self.reflect_instruction.acall(instruction=instruction, response=response)
            out.update(
                instruction=pred.new_instruction,
                response=pred.new_response,
                instruction_critique=pred.instruction_critique,
            )
        if self.reflect_response is not None:
            with stage("reflect_response"):
                pred = await self.reflect_response.acall(instruction=out["instruction"], response=out["response"])
            out.update(improved_response=pred.better_response, response_critique=pred.response_critique)
        return dspy.Prediction(**out)

    def forward(self, instruction: str, response: str) -> dspy.Prediction:
        out = dict(
            instruction=instruction,
            response=response,
            improved_response=None,
            instruction_critique=None,
            response_critique=None,
        )
        if self.reflect_instruction is not None:
            with stage("reflect_instruction"):
                pred = self.reflect_instruction(instruction=instruction, response=response)
            out.update(
                instruction=pred.new_instruction,
                response=pred.new_response,
                instruction_critique=pred.instruction_critique,
            )
        if self.reflect_response is not None:
            with stage("reflect_response"):
                pred = self.reflect_response(instruction=out["instruction"], response=out["response"])
            out.update(improved_response=pred.better_response, response_critique=pred.response_critique)
        return dspy.Prediction(**out)
