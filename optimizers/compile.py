"""Compile the per-instruction program with a DSPy optimizer against the judge metric.

`optimize()` runs one of BootstrapFewShot, BootstrapFewShotWithRandomSearch, MIPROv2, GEPA or SIMBA
and scores the program on the valset before and after. With a CallBudget attached to the LMs, a
refused call stops the optimization: `optimize` raises OptimizationStopped rather than return a
program that was scored on refused calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.parallelizer import ParallelExecutor

from refed_dspy.clients.destination import told_of
from refed_dspy.errors import ConfigError, FinishedShort, RunAborted
from refed_dspy.launch.plan import own_run
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.optimizers.teleprompters import OPTIMIZERS, CompileSettings, candidate_scores
from refed_dspy.runtime.quiet import dropping

# DSPy's instruction proposer (MIPROv2's) passes its own predictors inputs they do not declare, and each such call
# warns; nothing in the user's program or config causes it. Only warnings naming nothing but the proposer's inputs go.
_PROPOSER_INPUTS = frozenset(
    {
        "max_depth",
        "previous_instructions",
        "dataset_description",
        "program_code",
        "program_description",
        "program_example",
        "module",
        "module_description",
        "task_demos",
        "basic_instruction",
        "tip",
    }
)
_IGNORED = re.compile(r"These fields will be ignored: \[([^\]]*)\]")


def _proposer_note(text: str) -> bool:
    """A DSPy warning that only the proposer's own inputs were left out of its predictors' signatures."""
    found = _IGNORED.search(text)
    names = set(re.findall(r"'(\w+)'", found.group(1))) if found else set()
    return bool(names) and names <= _PROPOSER_INPUTS


# where DSPy logs each example a failed call left unscored: once our budget refuses calls, every example left says so
_EXAMPLE_LOGGERS = ("dspy.utils.parallelizer", "dspy.teleprompt.bootstrap", "dspy.teleprompt.simba")


def _budget_refusal(text: str) -> bool:
    """DSPy's line for an example whose call our budget refused (reached, or blind: an LM that reports no token usage
    under a cost budget): the stop is said once, by the optimization's own message (a trial user's MIPROv2 cell
    logged 1,919 such lines, each with the whole example)."""
    return " budget of " in text and (" is reached (" in text or " cannot be kept" in text)


class OptimizationStopped(RunAborted):
    """The optimization stopped (its call or cost budget, or a metric or program that failed too often); no program
    is saved. `usage` and `budget_stop` (the budget's reason, None for another stop) are set by refed_dspy.optimizers.run.
    `exit_code` (what `refed optimize` exits with): 1 at a budget, 3 for another stop.
    """

    usage: dict | None = None
    budget_stop: str | None = None

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """A stop at the budget finished short (1, as any command a budget stops); another stop aborted (3)."""
        return FinishedShort.exit_code if self.budget_stop else RunAborted.exit_code


class _Recorded(dspy.Module):
    """Runs a program and keeps why its calls failed (dspy.Evaluate only logs it and scores the example 0)."""

    def __init__(self, program: dspy.Module):
        super().__init__()
        self.program = program
        self.errors: list[str] = []

    def forward(self, **kwargs: Any) -> Any:
        try:
            return self.program(**kwargs)
        except Exception as err:
            self.errors.append(f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")
            raise


def evaluate_detailed(
    program: dspy.Module,
    devset: list[dspy.Example],
    metric: Any,
    lm: dspy.LM,
    num_threads: int = 1,
    adapter: dspy.Adapter | None = None,
) -> tuple[float, list[tuple[dspy.Example, Any, float]], list[str]]:
    """Mean metric value over `devset` (0.0 when empty), the (example, prediction, score) rows (prediction None
    where the program itself failed, scored 0), and the errors the program raised.

    Args:
        program: the program to run on each example's inputs.
        devset: the examples to score.
        metric: called as `metric(example, prediction)`; a falsy value scores 0.
        lm: the LM the program runs on.
        num_threads: how many examples run at once.
        adapter: the adapter the program's calls use; None: DSPy's default.

    Returns:
        The mean score (rounded to 4 places), the (example, prediction, score) rows in `devset`'s order, and the
            errors the program raised, each as `Type: first line`.
    """
    if not devset:
        return 0.0, [], []
    recorded = _Recorded(program)
    # DSPy's evaluator would send an item again while its first run is still going (a straggler, not cancelled: both
    # paid); ours never does. Inside a run an identical request in flight is sent once anyway (clients/flights.py).
    executor = ParallelExecutor(
        num_threads=num_threads,
        max_errors=len(devset) + 1,
        disable_progress_bar=True,
        provide_traceback=False,
        compare_results=True,
        timeout=0,
    )

    def scored(example: dspy.Example) -> tuple[Any, Any]:
        prediction = recorded(**example.inputs())
        return prediction, metric(example, prediction)

    with dspy.context(lm=lm, adapter=adapter):
        results = executor.execute(scored, devset)
    rows = [
        (ex, None, 0.0) if r is None else (ex, r[0] if len(r[0].keys()) else None, float(r[1] or 0.0))
        for ex, r in zip(devset, results, strict=True)
    ]
    return round(sum(s for _, _, s in rows) / len(devset), 4), rows, recorded.errors


def _check_program(rows: list, errors: list[str], when: str) -> None:
    """Stop when the program itself failed on every validation example: its score would say nothing. (A program
    that failed on some scores lower for it; a compiled one that scores below the baseline is not the result.)"""
    failed = sum(1 for _, pred, _ in rows if pred is None)
    if rows and failed == len(rows):
        raise OptimizationStopped(
            f"optimization stopped {when}: the program failed on {failed} of {len(rows)} validation examples "
            f"(the last: {errors[-1] if errors else 'no detail'}); scores of failed runs mean nothing, so no program "
            "was saved (check the teacher: teacher.max_tokens, teacher.adapter)"
        )


def evaluate(
    program: dspy.Module,
    devset: list[dspy.Example],
    metric: Any,
    lm: dspy.LM,
    num_threads: int = 1,
    adapter: dspy.Adapter | None = None,
) -> float:
    """Mean metric value of `program` (run on `lm`) over `devset` (0.0 for an empty set).

    Args:
        program: the program to run on each example's inputs.
        devset: the examples to score.
        metric: called as `metric(example, prediction)`; a falsy value scores 0.
        lm: the LM the program runs on.
        num_threads: how many examples run at once.
        adapter: the adapter the program's calls use; None: DSPy's default.

    Returns:
        The mean score, rounded to 4 places (a failed example counts 0).
    """
    return evaluate_detailed(program, devset, metric, lm, num_threads, adapter)[0]


def step_scores(compiled: dspy.Module, optimizer: str | Any) -> list[float]:
    """The per-step (trial, candidate) scores the optimizer (a name, or a teleprompter instance of the caller's) left
    on its result, in order, on the metric's 0-1 scale. An instance of a class an optimizer of the registry builds
    is read as that optimizer's results are; any other: the scores of the candidate programs it kept, if any."""
    if isinstance(optimizer, str):
        return (
            OPTIMIZERS.get(optimizer).step_scores(compiled) if optimizer in OPTIMIZERS else candidate_scores(compiled)
        )
    same = [o for o in OPTIMIZERS.values() if o.teleprompter is not None and isinstance(optimizer, o.teleprompter)]
    same.sort(key=lambda o: type(optimizer).__mro__.index(o.teleprompter))  # the nearest class first
    return same[0].step_scores(compiled) if same else candidate_scores(compiled)


def _log_dir(
    root: str | None,
    optimizer: str | None,
    s: CompileSettings,
    trainset: list,
    valset: list,
    student_state: Any = None,
    metric_state: Any = None,
) -> str | None:
    """`root/<optimizer>-<digest of the settings, LMs, examples, starting program and metric>`, or None (no root, or
    a user's teleprompter)."""
    if root is None or optimizer is None:
        return None
    what = {k: v for k, v in s.__dict__.items() if k not in ("lm", "proposer_lm", "num_threads")}
    what["lms"] = [(getattr(lm, "model", ""), told_of(lm)) for lm in (s.lm, s.proposer_lm)]
    what["examples"] = [sorted(e.toDict().items()) for e in (*trainset, *valset)]
    what["student"], what["metric"] = student_state, metric_state
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return str(Path(root) / f"{optimizer}-{digest}")


def _metric_state(metric: Any) -> dict[str, Any]:
    """What a metric scores by, for naming an optimizer's saved state: its class, its judge's model and settings, and
    its plain settings (threshold, weights)."""
    lm = getattr(metric, "lm", None)
    plain = (
        {k: v for k, v in vars(metric).items() if isinstance(v, (int, float, str, bool))}
        if hasattr(metric, "__dict__")
        else {}
    )
    return {"class": type(metric).__name__, "judge": (getattr(lm, "model", ""), getattr(lm, "kwargs", {})), **plain}


def _forget_state(log_dir: str | None) -> None:
    """A compile the budget stopped: the optimizer's saved state (GEPA's) holds the evaluations the budget refused,
    scored as failures, and would resume as if it had spent its rollouts. It is removed: run again with a larger
    budget, the compile starts afresh, and the calls it had paid are answered by the run's cache."""
    if log_dir is not None:
        shutil.rmtree(log_dir, ignore_errors=True)


@contextlib.contextmanager
def threshold_at(metric: Any, before: float):
    """For the length of a compile, the threshold a bootstrapped trace must reach: the metric's own, or, when it has
    none (optimize.threshold unset), `before`, the starting program's mean score on validation: a trace is kept when
    it is at least as good as what the program makes on average, whatever the metric's scale. Yields the threshold
    in force (None: a metric with no threshold attribute, whose value's truth decides)."""
    if not hasattr(metric, "threshold"):
        yield None
        return
    if metric.threshold is not None:
        yield metric.threshold
        return
    # a starting program that scored 0 (every judging failed, or no validation example): a trace must score above 0
    metric.threshold = before if before > 0 else None
    try:
        yield metric.threshold
    finally:
        metric.threshold = None


def traced_counts(metric: Any) -> tuple[int, int]:
    """The traced calls a metric has scored so far (bootstrapping a demo) and how many passed its threshold; (0, 0)
    for a metric that does not count them."""
    return getattr(metric, "traced", (0, 0))


def _compile_with(tp: Any, student: dspy.Module, trainset: list, valset: list) -> dspy.Module:
    """A user's teleprompter instance: `compile(student, trainset=..., valset=...)` when it takes a valset."""
    try:
        takes_valset = "valset" in inspect.signature(tp.compile).parameters
    except (TypeError, ValueError):
        takes_valset = False
    if takes_valset and valset:
        return tp.compile(student, trainset=trainset, valset=valset)
    return tp.compile(student, trainset=trainset)


def optimize(
    program: dspy.Module,
    trainset: list[dspy.Example],
    valset: list[dspy.Example],
    *,
    metric: Any,
    lm: dspy.LM,
    optimizer: str | Any = "bootstrap",
    auto: str | None = "light",
    max_demos: int = 2,
    num_candidates: int = 4,
    num_trials: int | None = None,
    max_metric_calls: int | None = None,
    max_steps: int = 4,
    bsize: int = 8,
    num_threads: int = 1,
    seed: int = 0,
    proposer_lm: dspy.LM | None = None,
    budget: CallBudget | None = None,
    adapter: dspy.Adapter | None = None,
    log_root: str | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compile `program` on `lm` (with `adapter`, the teacher's) against `metric`.

    Called outside a run of refed's (not from `refed_dspy.optimize`), the compile is a run of its own: the LMs it calls
    pass the call boundary (a key bound for another provider's host is refused, a reply cut off at max_tokens is an
    error), and a request DSPy's evaluator sends again while the first is in flight waits for that one's answer.

    Args:
        program: the program to compile; it is scored as given, then a deep copy of it is compiled.
        trainset: the examples the optimizer compiles on.
        valset: the examples the starting and the compiled program are scored on.
        metric: called as `metric(example, prediction[, trace])`; a make_metric metric counts its failures.
        lm: the LM the program runs on.
        optimizer: one of OPTIMIZERS, or a teleprompter instance (anything with `compile`) built by the caller.
        auto: MIPROv2 and GEPA preset; None: num_candidates and num_trials (MIPROv2) or max_metric_calls (GEPA) decide.
        max_demos: bootstrapped demos per predictor (bootstrap, random search, MIPROv2, SIMBA).
        num_candidates: candidate programs (random search, SIMBA) or instruction candidates (MIPROv2 without auto).
        num_trials: MIPROv2 without auto: its optimization trials.
        max_metric_calls: GEPA: metric calls in all (overrides auto).
        max_steps: SIMBA: optimization steps.
        bsize: SIMBA: mini-batch size (at most the trainset's size).
        num_threads: how many examples are scored at once.
        seed: the optimizer's seed.
        proposer_lm: the LM that writes instructions (MIPROv2, GEPA, SIMBA); None: `lm`.
        budget: the budget attached to the LMs, whose refusal of a call stops the optimization.
        adapter: the adapter the program runs with (the teacher's); None: DSPy's.
        log_root: where an optimizer that can resume keeps its state (GEPA), under a folder named for its settings and
            examples, so that the same compile run again (after a kill) continues and another one starts afresh.
        on_phase: called with each part's name as it begins ('compiling with miprov2'), for a progress line.

    Returns:
        {program, optimizer, score_before, score_after, steps, before_rows, after_rows, metric_failures, threshold,
        traces}.

    Raises:
        OptimizationStopped: `budget` refused a call, every judging of the baseline failed, the metric failed on more
            than half of its calls in all, or the program failed on every validation example (before or after
            compiling): no program is worth saving then.
    """
    choice = _choice(optimizer, trainset, valset)  # None: a teleprompter of the caller's
    settings = CompileSettings(
        lm=lm,
        proposer_lm=proposer_lm or lm,
        auto=auto,
        max_demos=max_demos,
        num_candidates=num_candidates,
        num_trials=num_trials,
        max_metric_calls=max_metric_calls,
        max_steps=max_steps,
        bsize=bsize,
        num_threads=num_threads,
        seed=seed,
        n_train=len(trainset),
        n_val=len(valset),
    )
    settings = _resumable(settings, log_root, program, metric, optimizer, trainset, valset)
    tp = optimizer if choice is None else _built(choice, metric, settings, adapter)
    return _Compilation(tp, choice, settings, metric, adapter, budget, on_phase).result(program, trainset, valset)


def _resumable(
    settings: CompileSettings, log_root: str | None, program: dspy.Module, metric: Any, optimizer: Any, *examples: list
) -> CompileSettings:
    """`settings` with the folder under `log_root` where an optimizer that can resume keeps its state (GEPA), named for
    the settings, the registry `optimizer`, the program's and metric's state and the examples; unchanged without a
    `log_root` or for a teleprompter of the caller's."""
    if not log_root or not isinstance(optimizer, str):
        return settings
    state = (program.dump_state(), _metric_state(metric))
    return dataclasses.replace(settings, log_dir=_log_dir(log_root, optimizer, settings, *examples, *state))


def _built(choice: Any, metric: Any, settings: CompileSettings, adapter: dspy.Adapter | None) -> Any:
    """The registry optimizer's teleprompter, built before anything is paid: one that refuses its settings (GEPA with
    no budget, MIPROv2's auto with num_candidates) says so before the starting program's validation scoring."""
    with dspy.context(lm=settings.lm, adapter=adapter):
        return choice.build(metric, settings)


def _choice(optimizer: str | Any, trainset: list, valset: list) -> Any:
    """The registry's optimizer `optimizer` names (None: a teleprompter instance of the caller's), once the optimizer
    and the examples are checked (ConfigError)."""
    instance = None if isinstance(optimizer, str) else optimizer
    if instance is not None and not callable(getattr(instance, "compile", None)):
        raise ConfigError(
            f"optimizer: a {type(instance).__name__} has no compile method (give a DSPy teleprompter "
            f"or one of {', '.join(OPTIMIZERS)})"
        )
    if instance is None and optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{optimizer}'; available: {', '.join(OPTIMIZERS)}")
    choice = OPTIMIZERS.get(optimizer) if instance is None else None
    if not trainset:
        raise ConfigError("the optimization trainset is empty")
    if choice is not None and choice.needs_valset and not valset:
        raise ConfigError(f"optimizer '{optimizer}' needs a non-empty valset")
    return choice


@dataclasses.dataclass(frozen=True)
class _Compilation:
    """One optimization: its teleprompter (`tp`, built; `choice`: the registry's optimizer that built it, None for a
    teleprompter of the caller's), its settings, the metric, the teacher's adapter, the budget whose refusal stops
    it, and whom to tell as each part begins."""

    tp: Any
    choice: Any
    settings: CompileSettings
    metric: Any
    adapter: dspy.Adapter | None
    budget: CallBudget | None
    on_phase: Callable[[str], None] | None

    @property
    def name(self) -> str:
        """The optimizer's name: the registry's, or the class name of a teleprompter of the caller's."""
        return self.choice.name if self.choice is not None else type(self.tp).__name__

    def tell(self, now: str) -> None:
        """Say which part begins to whoever asked (`on_phase`)."""
        if self.on_phase is not None:
            self.on_phase(now)

    def result(self, program: dspy.Module, trainset: list, valset: list) -> dict[str, Any]:
        """`program` scored, compiled, and the compiled program scored: what `optimize` returns."""
        # the budget's stop is said once, by `check`; called outside our runs, the compile is a run of its own (its
        # LMs pass the call boundary): a request DSPy's evaluator sends again while the first is in flight waits for
        # its answer (clients/flights.py)
        with (
            dropping(_EXAMPLE_LOGGERS, _budget_refusal),
            own_run(),
        ):
            self.tell(f"scoring the starting program on {len(valset)} validation examples")
            before, before_rows = self.score(program, valset, "while scoring the program before optimization")
            self.tell(f"compiling with {self.name}")
            compiled, threshold, traced = self.compile(program.deepcopy(), trainset, valset, before)
            self.tell(f"scoring the compiled program on {len(valset)} validation examples")
            after, after_rows = self.score(compiled, valset, "while scoring the compiled program", most=True)
        return {
            "program": compiled,
            "optimizer": self.name,
            "score_before": before,
            "score_after": after,
            "steps": step_scores(compiled, self.tp if self.choice is None else self.choice.name),
            "before_rows": before_rows,
            "after_rows": after_rows,
            "metric_failures": self.metric.failure_summary() if hasattr(self.metric, "failure_summary") else None,
            "threshold": threshold,
            "traces": {"scored": traced[0], "passed": traced[1]},
        }

    def score(self, program: dspy.Module, valset: list, when: str, most: bool = False) -> tuple[float, list]:
        """`program`'s mean score on the valset and its rows, or OptimizationStopped (see `check`; and when the program
        itself failed on every example)."""
        s = self.settings
        mean, rows, errors = evaluate_detailed(program, valset, self.metric, s.lm, s.num_threads, self.adapter)
        self.check(when, most)
        _check_program(rows, errors, when)
        return mean, rows

    def compile(
        self, student: dspy.Module, trainset: list, valset: list, before: float
    ) -> tuple[dspy.Module, float | None, list[int]]:
        """The compiled program, the trace threshold in force (`before`: the starting program's mean score) and the
        traces scored and passed while compiling; OptimizationStopped when the budget or the metric stopped it."""
        metric, settings, budget = self.metric, self.settings, self.budget
        with (
            threshold_at(metric, before) as threshold,
            dspy.context(lm=settings.lm, adapter=self.adapter),
            dropping(("dspy.predict.predict",), _proposer_note),
        ):
            traced_before = traced_counts(metric)
            try:
                if self.choice is None:
                    compiled = _compile_with(self.tp, student, trainset, valset)
                else:
                    compiled = self.choice.compile(self.tp, student, trainset, valset, settings)
            except Exception:
                if budget is not None and budget.tripped:
                    _forget_state(settings.log_dir)
                    self.check("while compiling")
                raise
            traced = [n - m for n, m in zip(traced_counts(metric), traced_before, strict=True)]
        if budget is not None and budget.tripped:
            _forget_state(settings.log_dir)
        self.check("while compiling", most=True)
        return compiled, threshold, traced

    def check(self, when: str, most: bool = False) -> None:
        """OptimizationStopped when the budget refused a call, when every judging failed, or (`most`) when the metric
        failed on more than half of its calls: no program is worth saving then."""
        budget, metric = self.budget, self.metric
        if budget is not None and budget.tripped:
            field = budget.field_of() or "the budget's max_calls / max_cost_usd"
            raise OptimizationStopped(
                f"optimization stopped {when}: {budget.tripped}; no program was saved "
                f"(raise {field}, or shrink the optimizer's settings)"
            )
        failures = metric.failure_summary() if hasattr(metric, "failure_summary") else None
        if failures and failures["calls"] and failures["failed"] == failures["calls"]:
            raise OptimizationStopped(
                f"optimization stopped {when}: every judging failed ({failures['failed']} of {failures['calls']}: "
                f"{', '.join(f'{n} {r}' for r, n in failures['by_reason'].items())}), the last: {failures['last']}; "
                "no program was saved (check the judge: judge.model, judge.adapter, judge.max_tokens)"
            )
        if most and failures and failures["failed"] * 2 > failures["calls"]:
            raise OptimizationStopped(
                f"optimization stopped {when}: the metric failed on {failures['failed']} of its {failures['calls']} "
                f"calls ({', '.join(f'{n} {r}' for r, n in failures['by_reason'].items())}), the last: "
                f"{failures['last']}; scores made mostly of failures mean nothing, so no program was saved "
                "(check the judge: judge.model, judge.adapter, judge.max_tokens)"
            )
