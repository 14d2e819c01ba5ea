"""gepa: DSPy's GEPA, instructions evolved by reflecting on the metric's textual feedback."""

from __future__ import annotations

import math
from typing import Any

import dspy

from refed_dspy.errors import ConfigError
from refed_dspy.optimizers.teleprompters.base import AUTO_CANDIDATES, CompileSettings, Optimizer
from refed_dspy.optimizers.teleprompters.registry import OPTIMIZERS


@OPTIMIZERS.register
class GEPA(Optimizer):
    name = "gepa"
    teleprompter = dspy.GEPA
    summary = "GEPA: instructions evolved from the metric's feedback"
    rank = 3
    needs_valset = True

    def build(self, metric: Any, s: CompileSettings) -> Any:
        if s.auto is None and s.max_metric_calls is None:
            raise ConfigError("GEPA needs optimize.auto or optimize.max_metric_calls")
        # a metric of ours takes GEPA's five-argument call (its reasons come back as feedback); so does a user's,
        # wrapped by optimize in a CountingMetric
        return dspy.GEPA(
            metric=metric,
            auto=None if s.max_metric_calls else s.auto,
            max_metric_calls=s.max_metric_calls,
            reflection_lm=s.proposer_lm,
            num_threads=s.num_threads,
            seed=s.seed,
            track_stats=True,
            reflection_minibatch_size=min(3, s.n_train),
            log_dir=s.log_dir,  # the same compile run again continues from its saved state
        )

    def compile(self, tp: Any, student: dspy.Module, trainset: list, valset: list, s: CompileSettings) -> dspy.Module:
        return tp.compile(student, trainset=trainset, valset=valset)

    def step_scores(self, compiled: dspy.Module) -> list[float]:
        results = getattr(compiled, "detailed_results", None)
        return [float(x) for x in getattr(results, "val_aggregate_scores", None) or []]

    def estimated_runs(self, s: CompileSettings, predictors: int) -> int:
        if s.max_metric_calls:
            return s.max_metric_calls
        n = AUTO_CANDIDATES.get(s.auto or "", 6)
        trials = int(max(2 * predictors * 2 * math.log2(n), 1.5 * n))
        return s.n_val + n * 5 + trials * 35 + ((trials + 1) // 5 + 1) * s.n_val  # GEPA's own auto budget
