"""What an optimizer choice is: how `optimize.optimizer = "<name>"` builds its DSPy teleprompter, compiles with it,
and reads the per-step scores it leaves on the compiled program.

What compiling costs (`CallModel`): LM calls counted the way the cache sees them, from the settings alone.

A program is a tuple with one configuration per predictor, `(instructions key, demos key)`; `(0, 0)` is the
predictor as built. Running a program on an example calls the teacher once per predictor whose configuration, and
every configuration before it, has not run on that example yet (a later predictor's input is an earlier one's
output), and calls the judge when the whole program has not been judged on it yet: everything else is answered by
the cache. Each optimizer replays its own algorithm on this model (`Optimizer.simulate`) with fixed coins for what
only the LMs decide (which traces pass the threshold, which proposals are accepted); the counts that come out are
what a budget is checked against before any call. Trials an optimizer repeats, candidates two optimizers share (an
unshuffled bootstrap is the same program in bootstrap, random search and MIPROv2) and the uncompiled program's
answers that an experiment's examples synthesis already paid for cost nothing, here as in a run.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dspy

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
    by `scale` (dspy.Evaluate's percentages: 100).

    Args:
        compiled: the program an optimizer returned.
        scale: what each score is divided by (100 for percentages; 1.0 for scores already on 0-1).

    Returns:
        The candidates' scores (those without one left out), rounded to 4 places; empty when there are none.
    """
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
        """The DSPy teleprompter, built for `metric` with the settings `s`.

        Args:
            metric: the metric the teleprompter optimizes against.
            s: the compile settings (LMs, candidates, demos, seed, ...).

        Returns:
            The teleprompter, ready for `compile`.
        """

    def compile(self, tp: Any, student: dspy.Module, trainset: list, valset: list, s: CompileSettings) -> dspy.Module:
        """Compile `student` with the teleprompter `tp` (the default: on the trainset alone).

        Args:
            tp: the teleprompter `build` made.
            student: the program to compile.
            trainset: the training examples.
            valset: the validation examples (unused by the default).
            s: the compile settings (unused by the default).

        Returns:
            The compiled program.
        """
        return tp.compile(student, trainset=trainset)

    def step_scores(self, compiled: dspy.Module) -> list[float]:
        """The per-step (trial, candidate) scores the teleprompter left on its result, on the metric's 0-1 scale.

        Args:
            compiled: the program the teleprompter returned.

        Returns:
            The scores in order (the default: those of `candidate_programs`); empty when it left none.
        """
        return candidate_scores(compiled)

    def estimated_runs(self, s: CompileSettings, predictors: int) -> int:
        """About how many times compiling runs a program of `predictors` predictors (each run judged once; proposal
        calls counted as runs), from the settings alone: what a budget can be estimated from before any call.

        Args:
            s: the compile settings.
            predictors: how many predictors the program has.

        Returns:
            The estimated number of program runs (the default: one per training and validation example).
        """
        return s.n_train + s.n_val

    def simulate(self, m: CallModel, s: CompileSettings) -> Program:
        """Replay compiling on the call model `m` (CallModel, below) and return the program it would give. By default:
        `estimated_runs` runs of programs never run before (every call paid), on the training examples.

        Args:
            m: the call model the replayed runs and proposals are counted on.
            s: the compile settings.

        Returns:
            The program (one configuration per predictor) compiling would give.
        """
        program = m.baseline
        for k in range(self.estimated_runs(s, m.predictors)):
            program = ((("run", self.name, s.seed, k), 0),) * m.predictors
            m.run(program, "train", k % max(1, s.n_train))
        return program


Program = tuple[tuple[object, object], ...]
PASS_RATE = 0.5  # traces at or above a threshold set at the starting program's mean: about half
ACCEPT_RATE = 0.5  # GEPA's proposals that beat their parent on its minibatch


@dataclass
class CallModel:
    """The calls a sequence of program runs makes against one cache.

    `predictors`: of the program; `judge_calls`: per judged run (the metric's calls); `cached_baseline`: the
    uncompiled program's teacher answers are in the cache already (an experiment's respond examples were made by
    it); `pass_rate` / `accept_rate`: the coins' odds, `salt` which draw of them (an estimate averages several; a
    range comes from other odds). `evaluations` counts every run, cached or not (what GEPA's budget counts)."""

    predictors: int
    judge_calls: int
    cached_baseline: bool = False
    pass_rate: float = PASS_RATE
    accept_rate: float = ACCEPT_RATE
    salt: int = 0
    teacher: int = 0
    judge: int = 0
    proposer: int = 0
    evaluations: int = 0
    _prefixes: set = field(default_factory=set)
    _judged: set = field(default_factory=set)

    @property
    def baseline(self) -> Program:
        return ((0, 0),) * self.predictors

    @property
    def calls(self) -> int:
        return self.teacher + self.judge + self.proposer

    def run(self, program: Program, side: str, i: int) -> None:
        """`program` runs on example `i` of `side` (train, val, test) and is judged."""
        self.evaluations += 1
        free = self.cached_baseline and program == self.baseline
        for k in range(1, len(program) + 1):
            key = (program[:k], side, i)
            if key not in self._prefixes:
                self._prefixes.add(key)
                self.teacher += 0 if free else 1
        if (program, side, i) not in self._judged:
            self._judged.add((program, side, i))
            self.judge += self.judge_calls

    def propose(self, calls: int = 1) -> None:
        """The proposer (or reflection) LM writes something: `calls` calls, never answered from the cache."""
        self.proposer += calls


def passes(i: int, salt: str = "", rate: float = PASS_RATE) -> bool:
    """Whether training example `i`'s trace passes the threshold: a coin fixed per example and draw (`salt`): the
    same example gives the same answer and the same score wherever it is traced."""
    return random.Random(f"trace:{salt}:{i}").random() < rate


def bootstrap_demos(m: CallModel, order: list[int], size: int) -> list[int]:
    """BootstrapFewShot over the training examples in `order`: the uncompiled program traced on each (judged) until
    `size` traces passed; the examples whose traces became demos."""
    kept: list[int] = []
    for i in order:
        if len(kept) >= size:
            break
        m.run(m.baseline, "train", i)
        if passes(i, str(m.salt), m.pass_rate):
            kept.append(i)
    return kept


def demo_key(kept: list[int]) -> object:
    """A demo set, by the training examples whose traces it holds, in order (none: 0, the predictor as built)."""
    return ("demos", tuple(kept)) if kept else 0


def with_demos(m: CallModel, kept: list[int]) -> Program:
    """The program whose every predictor has the demos of `kept` (bootstrapping keeps a trace of each)."""
    return ((0, demo_key(kept)),) * m.predictors
