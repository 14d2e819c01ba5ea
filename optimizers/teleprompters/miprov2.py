"""miprov2: DSPy's MIPROv2, instructions and demos proposed and searched with Bayesian optimization."""

from __future__ import annotations

import math
import random
from typing import Any

import dspy

from refed_dspy.optimizers.teleprompters.base import (
    AUTO_CANDIDATES,
    MINIBATCH,
    CallModel,
    CompileSettings,
    Optimizer,
    Program,
    bootstrap_demos,
    demo_key,
)
from refed_dspy.registry import OPTIMIZERS

AUTO_VAL_SIZE = {"light": 100, "medium": 300, "heavy": 1000}  # DSPy's auto modes score trials on at most this many


def instruction_key(seed: int, predictor: int, k: int) -> object:
    """A proposed instruction of a predictor (candidate 0 is the one it was built with)."""
    return 0 if k == 0 else ("mipro", seed, predictor, k)


@OPTIMIZERS.register
class MIPROv2(Optimizer):
    name = "miprov2"
    teleprompter = dspy.MIPROv2
    summary = "MIPROv2: proposed instructions and demos, searched on the valset"
    rank = 2
    needs_valset = True

    def build(self, metric: Any, s: CompileSettings) -> Any:
        return dspy.MIPROv2(
            metric=metric,
            prompt_model=s.proposer_lm,
            task_model=s.lm,
            auto=s.auto,
            num_candidates=None if s.auto else s.num_candidates,
            max_bootstrapped_demos=s.max_demos,
            max_labeled_demos=0,
            num_threads=s.num_threads,
            seed=s.seed,
            verbose=False,
            # no metric_threshold: DSPy would compare the metric's value with it, and a user's metric that answers a
            # traced call with a bool (True >= 6.2 is False) would keep no demo; the verdict is the value's truth (our
            # Score is true at the threshold), as BootstrapFewShot reads it
        )

    def compile(self, tp: Any, student: dspy.Module, trainset: list, valset: list, s: CompileSettings) -> dspy.Module:
        return tp.compile(
            student,
            trainset=trainset,
            valset=valset,
            seed=s.seed,
            num_trials=None if s.auto else (s.num_trials or 2 * s.num_candidates),
            minibatch=len(valset) > 35,
        )

    def step_scores(self, compiled: dspy.Module) -> list[float]:
        logs = getattr(compiled, "trial_logs", None) or {}
        out = []
        for n in sorted(logs):
            entry = logs[n]
            score = entry.get("full_eval_score", entry.get("mb_score"))
            if score is not None:
                out.append(round(float(score) / 100, 4))  # dspy.Evaluate's percentages
        return out

    def simulate(self, m: CallModel, s: CompileSettings) -> Program:
        n = AUTO_CANDIDATES.get(s.auto or "", s.num_candidates)
        demos = s.max_demos > 0
        n_instructions = (n if not demos else int(n * 0.5)) if s.auto else s.num_candidates
        rng = random.Random(f"{s.seed}:{m.salt}")
        # 1. demo sets: zero-shot, (labeled-only: none), the unshuffled bootstrap, then shuffled ones of 1..max_demos
        sets: list = [0]
        if demos:
            sets.append(demo_key(bootstrap_demos(m, list(range(s.n_train)), s.max_demos)))
            for _ in range(max(0, n - 3)):
                order = list(range(s.n_train))
                rng.shuffle(order)
                sets.append(demo_key(bootstrap_demos(m, order, rng.randint(1, s.max_demos))))
        # 2. instructions: each candidate of each predictor asks for a program description, a module description
        # and the proposal; the dataset is summarized first, 10 training examples a call (at most 11) and a summary
        m.propose(m.predictors * n_instructions * 3 + 1 + min(10, max(0, math.ceil(s.n_train / 10) - 1)) + 1)
        # 3. trials: the default program, then combinations on the validation set (minibatches of 35 past 50
        # examples under auto, with a full evaluation of the best every 6th trial and at the end)
        n_val = min(s.n_val, AUTO_VAL_SIZE.get(s.auto or "", s.n_val))
        variables = m.predictors * (2 if demos else 1)
        trials = int(max(2 * variables * math.log2(max(n, 2)), 1.5 * n)) if s.auto else s.num_trials or 2 * n
        minibatch = n_val > (50 if s.auto else MINIBATCH)
        for i in range(n_val):
            m.run(m.baseline, "val", i)
        best = m.baseline
        for trial in range(2, trials + 1):
            program = tuple(
                (instruction_key(s.seed, k, rng.randrange(n_instructions)), rng.choice(sets))
                for k in range(m.predictors)
            )
            batch = rng.sample(range(n_val), MINIBATCH) if minibatch else range(n_val)
            for i in batch:
                m.run(program, "val", i)
            best = program
            if minibatch and (trial % 6 == 0 or trial == trials):
                for i in range(n_val):
                    m.run(best, "val", i)
        return best
