"""gepa: DSPy's GEPA, instructions evolved by reflecting on the metric's textual feedback."""

from __future__ import annotations

import math
import random
from typing import Any

import dspy

from refed_dspy.errors import ConfigError
from refed_dspy.optimizers.teleprompters.base import AUTO_CANDIDATES, CallModel, CompileSettings, Optimizer, Program
from refed_dspy.registry import OPTIMIZERS


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

    def simulate(self, m: CallModel, s: CompileSettings) -> Program:
        # the seed scored on validation; then, until the metric-call budget is spent: a parent picked among the
        # accepted candidates, scored on the next minibatch of training examples (epoch-shuffled), one reflection
        # call rewriting one predictor's instructions (in turn), the child scored on the same minibatch, and an
        # accepted child scored on validation
        budget, start = self.estimated_runs(s, m.predictors), m.evaluations
        size = max(1, min(3, s.n_train))
        rng = random.Random(f"{s.seed}:{m.salt}")
        for i in range(s.n_val):
            m.run(m.baseline, "val", i)
        accepted, queue, step = [m.baseline], [], 0
        while m.evaluations - start < budget:
            parent = rng.choice(accepted)
            if len(queue) < size:
                epoch = list(range(s.n_train))
                rng.shuffle(epoch)
                queue += epoch
            batch, queue = queue[:size], queue[size:]
            for i in batch:
                m.run(parent, "train", i)
            m.propose()
            k = step % m.predictors
            child = tuple(((("gepa", s.seed, step), d) if j == k else (c, d)) for j, (c, d) in enumerate(parent))
            for i in batch:
                m.run(child, "train", i)
            if rng.random() < m.accept_rate:
                accepted.append(child)
                for i in range(s.n_val):
                    m.run(child, "val", i)
            step += 1
        return accepted[-1]
