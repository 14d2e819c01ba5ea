"""bootstrap: DSPy's BootstrapFewShot, demos from the program's own traces that pass the metric."""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.optimizers.teleprompters.base import (
    CallModel,
    CompileSettings,
    Optimizer,
    Program,
    bootstrap_demos,
    with_demos,
)
from refed_dspy.registry import OPTIMIZERS


@OPTIMIZERS.register
class Bootstrap(Optimizer):
    name = "bootstrap"
    teleprompter = dspy.BootstrapFewShot
    summary = "BootstrapFewShot: demos from traces that pass the metric"
    rank = 0

    def build(self, metric: Any, s: CompileSettings) -> Any:
        return dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=s.max_demos, max_labeled_demos=0)

    def simulate(self, m: CallModel, s: CompileSettings) -> Program:
        # the training examples in order until max_demos traces pass: those are every predictor's demos
        return with_demos(m, bootstrap_demos(m, list(range(s.n_train)), s.max_demos))
