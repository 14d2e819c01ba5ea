"""What an optimization is resolved into before any call: where it writes, and the program its target tunes."""

from __future__ import annotations

from pathlib import Path

import dspy

from refed_dspy.config import Config
from refed_dspy.methods import get_method
from refed_dspy.programs import ProposeInstructions, RespondAndImprove


def out_dir(config: Config) -> Path:
    """Where an optimization writes: optimize.out, else <run.dir>/optimize."""
    return Path(config.optimize.out or Path(config.run.dir) / "optimize")


def target_program(config: Config) -> dspy.Module:
    """The program optimize.target tunes, at its built-in prompts: RespondAndImprove; ProposeInstructions (describe +
    synthesize); or the whole pipeline of synthesis.method."""

    target = config.optimize.target
    if target == "instructions":
        return ProposeInstructions(config.optimize.instructions_per_feature)
    if target == "pipeline":
        syn = config.synthesis.model_copy(update={"instructions_per_feature": config.optimize.instructions_per_feature})
        return get_method(syn.method).build_pipeline(syn)
    return RespondAndImprove()
