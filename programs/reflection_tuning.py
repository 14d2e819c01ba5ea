"""Reflection-Tuning as a pipeline program: every seed pair is recycled by one ReflectPair part."""

from __future__ import annotations

import dspy

from refed_dspy.engine.transport import acall_part
from refed_dspy.programs.parts import unfrozen
from refed_dspy.programs.reflect_pair import ReflectPair
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.records import Reference


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
