"""bootstrap_random_search: DSPy's BootstrapFewShotWithRandomSearch, several demo sets, the best on the valset."""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.optimizers.teleprompters.base import CompileSettings, Optimizer, candidate_scores
from refed_dspy.optimizers.teleprompters.registry import OPTIMIZERS


@OPTIMIZERS.register
class BootstrapRandomSearch(Optimizer):
    name = "bootstrap_random_search"
    teleprompter = dspy.BootstrapFewShotWithRandomSearch
    summary = "BootstrapFewShotWithRandomSearch: candidate demo sets, the best on the valset"
    rank = 1
    needs_valset = True

    def build(self, metric: Any, s: CompileSettings) -> Any:
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=metric,
            max_bootstrapped_demos=s.max_demos,
            max_labeled_demos=0,
            num_candidate_programs=s.num_candidates,
            num_threads=s.num_threads,
        )

    def compile(self, tp: Any, student: dspy.Module, trainset: list, valset: list, s: CompileSettings) -> dspy.Module:
        return tp.compile(student, trainset=trainset, valset=valset)

    def step_scores(self, compiled: dspy.Module) -> list[float]:
        return candidate_scores(compiled, scale=100)  # dspy.Evaluate's percentages

    def estimated_runs(self, s: CompileSettings, predictors: int) -> int:
        # zero-shot, labeled-only, unshuffled and num_candidates shuffled programs, each scored on the valset; the
        # bootstrapped ones also run on the training examples
        return (s.num_candidates + 1) * s.n_train + (s.num_candidates + 3) * s.n_val
