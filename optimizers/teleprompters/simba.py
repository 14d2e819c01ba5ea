"""simba: DSPy's SIMBA, stochastic mini-batch ascent over rules and demos."""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.optimizers.teleprompters.base import CompileSettings, Optimizer
from refed_dspy.registry import OPTIMIZERS


@OPTIMIZERS.register
class SIMBA(Optimizer):
    name = "simba"
    teleprompter = dspy.SIMBA
    summary = "SIMBA: mini-batch ascent over rules and demos"
    rank = 4

    def build(self, metric: Any, s: CompileSettings) -> Any:
        return dspy.SIMBA(
            metric=metric,
            bsize=min(s.bsize, s.n_train),
            num_candidates=s.num_candidates,
            max_steps=s.max_steps,
            max_demos=s.max_demos,
            prompt_model=s.proposer_lm,
            num_threads=s.num_threads,
        )

    def compile(self, tp: Any, student: dspy.Module, trainset: list, valset: list, s: CompileSettings) -> dspy.Module:
        return tp.compile(student, trainset=trainset, seed=s.seed)

    def estimated_runs(self, s: CompileSettings, predictors: int) -> int:
        bsize = min(s.bsize, s.n_train)
        # per step: trajectories sampled, then candidates scored; at the end the candidates on the training examples
        return s.max_steps * bsize * (2 * s.num_candidates + 1) + (s.num_candidates + 1) * s.n_train
