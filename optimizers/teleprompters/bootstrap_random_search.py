"""bootstrap_random_search: DSPy's BootstrapFewShotWithRandomSearch, several demo sets, the best on the valset."""

from __future__ import annotations

import random
from typing import Any

import dspy

from refed_dspy.optimizers.teleprompters.base import (
    CallModel,
    CompileSettings,
    Optimizer,
    Program,
    bootstrap_demos,
    candidate_scores,
    with_demos,
)
from refed_dspy.registry import OPTIMIZERS


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

    def simulate(self, m: CallModel, s: CompileSettings) -> Program:
        # zero-shot and labeled-only (no labels: the same program), the unshuffled bootstrap, then num_candidates
        # bootstraps of the training examples shuffled by their seed, each keeping 1 to max_demos demos; every
        # candidate is scored on the validation examples
        candidates = [m.baseline, with_demos(m, bootstrap_demos(m, list(range(s.n_train)), s.max_demos))]
        for seed in range(s.num_candidates):
            order = list(range(s.n_train))
            random.Random(seed).shuffle(order)
            size = random.Random(seed).randint(1, max(1, s.max_demos))
            candidates.append(with_demos(m, bootstrap_demos(m, order, size)))
        for program in candidates:
            for i in range(s.n_val):
                m.run(program, "val", i)
        return candidates[-1]  # the best on validation: one not scored on the test examples yet
