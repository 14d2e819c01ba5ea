"""What an optimizer choice is: how `optimize.optimizer = "<name>"` builds its DSPy teleprompter, compiles with it,
and reads the per-step scores it leaves on the compiled program."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import dspy

from refed_dspy.optimizers.teleprompters.cost_model import CallModel, Program

# DSPy's auto modes (MIPROv2 and GEPA): the candidates each proposes; MIPROv2 scores trials on minibatches this large
AUTO_CANDIDATES = {"light": 6, "medium": 12, "heavy": 18}
MINIBATCH = 35


@dataclass(frozen=True)
class CompileSettings:
    """The optimize settings a teleprompter is built and run with (see OptimizeConfig for their meaning)."""

    lm: Any
    proposer_lm: Any
    auto: str | None = "light"
    max_demos: int = 2
    num_candidates: int = 4
    num_trials: int | None = None
    max_metric_calls: int | None = None
    max_steps: int = 4
    bsize: int = 8
    num_threads: int = 1
    seed: int = 0
    n_train: int = 1
    n_val: int = 0
    log_dir: str | None = None  # where an optimizer that can resume keeps its state (GEPA)


def candidate_scores(compiled: dspy.Module, scale: float = 1.0) -> list[float]:
    """The scores of the candidate programs an optimizer left on its result (`candidate_programs`), in order, divided
    by `scale` (dspy.Evaluate's percentages: 100)."""
    return [
        round(float(c["score"]) / scale, 4)
        for c in getattr(compiled, "candidate_programs", None) or []
        if c.get("score") is not None
    ]


class Optimizer(ABC):
    """One optimizer `optimize.optimizer` can name. Subclass it in one module of this package and register it with
    `@OPTIMIZERS.register`.

    Class attributes: `name` (what the config says), `summary`, `rank` (listing order), `needs_valset` (it selects
    on a validation set, which must not be empty), `teleprompter` (the DSPy class `build` makes).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    rank: ClassVar[int] = 100
    needs_valset: ClassVar[bool] = False
    # the DSPy teleprompter class it builds: a user's own instance of that class has its scores read the same way
    teleprompter: ClassVar[type | None] = None

    @abstractmethod
    def build(self, metric: Any, s: CompileSettings) -> Any:
        """The DSPy teleprompter, built for `metric` with the settings `s`."""

    def compile(self, tp: Any, student: dspy.Module, trainset: list, valset: list, s: CompileSettings) -> dspy.Module:
        """Compile `student` with the teleprompter `tp` (the default: on the trainset alone)."""
        return tp.compile(student, trainset=trainset)

    def step_scores(self, compiled: dspy.Module) -> list[float]:
        """The per-step (trial, candidate) scores the teleprompter left on its result, on the metric's 0-1 scale."""
        return candidate_scores(compiled)

    def estimated_runs(self, s: CompileSettings, predictors: int) -> int:
        """About how many times compiling runs a program of `predictors` predictors (each run judged once; proposal
        calls counted as runs), from the settings alone: what a budget can be estimated from before any call."""
        return s.n_train + s.n_val

    def simulate(self, m: CallModel, s: CompileSettings) -> Program:
        """Replay compiling on the call model `m` (cost_model.py) and return the program it would give. By default:
        `estimated_runs` runs of programs never run before (every call paid), on the training examples."""
        program = m.baseline
        for k in range(self.estimated_runs(s, m.predictors)):
            program = ((("run", self.name, s.seed, k), 0),) * m.predictors
            m.run(program, "train", k % max(1, s.n_train))
        return program
