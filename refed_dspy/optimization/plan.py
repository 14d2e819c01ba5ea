"""An optimization resolved once, before any call: `plan_optimization` turns the config and what the caller handed in
into an `OptimizePlan`, which optimize.py then runs.

Resolving checks what the caller handed in (a user's mistake is refused before the optimization's directory is taken),
puts the teacher and judge handed in behind the call boundary as copies (the LMs of record), finds every LM the
teleprompter, the metric and the program hold (each claimed for its role on the run's ledger), checks that a cost
budget can price every LM that will spend it, builds the config's LMs, the metric and the starting program, and reads
the references the examples come from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.adapters import RepairingAdapter, build_adapter
from refed_dspy.clients.boundary import bounded
from refed_dspy.clients.keys import check_lm_key
from refed_dspy.clients.lm import build_lm, require_price
from refed_dspy.config import Config
from refed_dspy.engine.budget import CallBudget
from refed_dspy.errors import ConfigError
from refed_dspy.methods import get_method
from refed_dspy.optimization.held_lms import HeldLM, check_prices, metric_lms, program_lms, teleprompter_lms
from refed_dspy.optimizers.metrics import CountingMetric, JudgeMetric, make_metric
from refed_dspy.programs import ProposeInstructions, RespondAndImprove
from refed_dspy.registry import OPTIMIZERS
from refed_dspy.store.ownership import check
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import OnMismatch, check_on_mismatch
from refed_dspy.store.seeds import read_references
from refed_dspy.synthesis.provenance import with_lm_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Given:
    """What the caller of `optimize` handed in instead of what the config makes (None: the config's)."""

    teacher: Any = None
    judge: Any = None
    references: list[Reference] | None = None
    program: dspy.Module | None = None
    trainset: list[dspy.Example] | None = None
    valset: list[dspy.Example] | None = None
    metric: Any = None
    optimizer: Any = None
    budget: CallBudget | None = None


@dataclass(frozen=True)
class OptimizePlan:
    """An optimization resolved before any call (see the module docstring)."""

    config: Config  # with the LMs of record: a teacher or judge handed in replaces the config's
    out: Path
    program: dspy.Module  # the starting program: the caller's, else the target's at its built-in prompts
    teacher: Any  # behind the call boundary
    judge: Any  # behind the call boundary; None when the metric is the caller's and no judge was handed in
    metric: Any  # a metric of ours, or the caller's counted (CountingMetric)
    optimizer: Any  # a name of OPTIMIZERS, or the caller's teleprompter
    adapter: RepairingAdapter  # the teacher's
    claims: tuple[tuple[Any, str, Any], ...]  # (LM, role, the twin its calls go to or None): for the run's ledger
    references: list[Reference] | None  # what the examples are made from (None: the caller's trainset is given)
    on_mismatch: OnMismatch  # for the examples synthesis's run dir made by another config
    given: Given

    @property
    def optimizer_name(self) -> str:
        return self.optimizer if isinstance(self.optimizer, str) else type(self.optimizer).__name__


def out_dir(config: Config) -> Path:
    """Where an optimization writes: optimize.out, else <run.dir>/optimize."""
    return Path(config.optimize.out or Path(config.run.dir) / "optimize")


def target_program(config: Config) -> dspy.Module:
    """The program optimize.target tunes, at its built-in prompts: RespondAndImprove; ProposeInstructions (describe +
    synthesize); or the whole pipeline of synthesis.method."""

    target = config.optimize.target
    if target == "instructions":
        return ProposeInstructions(config.optimize.instructions_per_feature)
    if target == "pipeline":
        syn = config.synthesis.model_copy(update={"instructions_per_feature": config.optimize.instructions_per_feature})
        return get_method(syn.method).build_pipeline(syn)
    return RespondAndImprove()


def plan_optimization(config: Config, given: Given, on_mismatch: OnMismatch) -> OptimizePlan:
    """`config` and what the caller handed in, resolved before any call; ConfigError (or a price, key or seed error)
    for what cannot run, before anything is written."""
    optimizer = _checked_optimizer(config, given, on_mismatch)
    out = out_dir(config)
    check(out, "optimize", flag="optimize.out")  # before any LM is built: a directory not refed's is refused first
    config, teacher, judge = _behind_the_boundary(config, given)
    metric = _metric_of(given.metric, optimizer, config.optimize.threshold)
    # the judge of record: the one handed in, else the one a metric of ours holds, else the config's
    judge_of_record = judge if judge is not None else (metric.lm if isinstance(metric, JudgeMetric) else None)
    if judge_of_record is not None:
        config = with_lm_of(config, "judge", judge_of_record)
    held = _held_lms(config, given, metric, optimizer)
    cfg = config.optimize
    if cfg.target != "respond" and cfg.examples_run and given.trainset is None:
        raise ConfigError(
            f"optimize.examples_run gives examples of the respond target; target {cfg.target!r} takes "
            "references as its examples ([seeds])"
        )
    teacher = teacher or build_lm(config.teacher, "teacher")
    # the model's own settings standing in for what the config leaves unset, said once for each LM built from it
    built = [("teacher", given.teacher is None), ("judge", metric is None and judge is None)]
    for note in (getattr(config, role).defaults_note(role) for role, from_config in built if from_config):
        if note:
            log.info(note)
    if metric is None:
        judge = judge or build_lm(config.judge, "judge")
        metric = make_metric(config, cfg.target, judge=judge)
    adapter = build_adapter(config.teacher)
    references = given.references
    if references is None and given.trainset is None:
        references, _ = read_references(
            config.seeds.source, config.seeds.format, config.seeds.split, config.seeds.limit
        )
    mine = ((given.teacher, "teacher", teacher), (given.judge, "judge", judge))
    claims = tuple((lm, role, twin) for lm, role, twin in mine if lm is not None)
    return OptimizePlan(
        config=config,
        out=out,
        program=given.program if given.program is not None else target_program(config),
        teacher=teacher,
        judge=judge,
        metric=metric,
        optimizer=optimizer,
        adapter=adapter,
        claims=claims + tuple((one.lm, one.role, None) for one in held),
        references=references,
        on_mismatch=on_mismatch,
        given=given,
    )


def _checked_optimizer(config: Config, given: Given, on_mismatch: OnMismatch) -> Any:
    """The optimizer to run (the caller's, else optimize.optimizer), once the caller's arguments are checked."""
    check_on_mismatch(on_mismatch)
    optimizer = config.optimize.optimizer if given.optimizer is None else given.optimizer
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"optimizer={optimizer!r} is not one of {', '.join(OPTIMIZERS)} (or pass a teleprompter instance)"
        )
    if given.program is not None and not isinstance(given.program, dspy.Module):
        raise ConfigError(f"program= takes a DSPy module, not a {type(given.program).__name__}")
    if given.metric is not None and not callable(given.metric):
        raise ConfigError(f"metric= takes a callable (gold, pred, trace=None), not a {type(given.metric).__name__}")
    return optimizer


def _behind_the_boundary(config: Config, given: Given) -> tuple[Config, Any, Any]:
    """`config` with the teacher handed in as its teacher of record, and copies of the teacher and judge handed in
    behind the call boundary (None where none was)."""
    teacher = judge = None
    if given.teacher is not None:  # a copy of the user's LM behind the call boundary; the run records and prices it
        teacher = bounded(given.teacher, "teacher", fresh=True)
        config = with_lm_of(config, "teacher", teacher)
    if given.judge is not None:
        judge = bounded(given.judge, "judge", fresh=True)
    return config, teacher, judge


def _metric_of(metric: Any, optimizer: Any, threshold: float | None) -> Any:
    """The caller's metric (else the one a teleprompter of theirs was built with), counted; None: make_metric's."""
    if metric is None and not isinstance(optimizer, str):  # a teleprompter built with a metric: the one it means
        metric = next((m for m in (getattr(optimizer, a, None) for a in ("metric", "metric_fn")) if callable(m)), None)
    if metric is not None and not isinstance(metric, (JudgeMetric, CountingMetric)):
        metric = CountingMetric(metric, threshold=threshold)
    return metric


def _held_lms(config: Config, given: Given, metric: Any, optimizer: Any) -> list[HeldLM]:
    """Every LM the teleprompter, the metric and the program hold (but the teacher and judge handed in), to be claimed
    for its role on the run's ledger. Under a cost budget each LM that will spend it needs a price (ConfigError); each
    one's key must go to its own provider's hosts (KeyProviderError)."""
    budget = given.budget
    max_cost = budget.max_cost_usd if budget is not None else config.optimize.max_cost_usd
    budget_field = (
        None if max_cost is None else ("optimize.max_cost_usd" if budget is None else "the budget's max_cost_usd")
    )
    for role, spec in [("teacher", config.teacher)] + ([("judge", config.judge)] if metric is None else []):
        if budget_field is not None:
            require_price(spec, role, budget_field)
    held = (
        (teleprompter_lms(optimizer) if not isinstance(optimizer, str) else [])
        + metric_lms(metric)
        + program_lms(given.program)
    )
    held = [h for h in held if h.lm is not given.teacher and h.lm is not given.judge]
    for one in held:  # before any call: a held LM's key goes only to its provider's hosts
        check_lm_key(one.lm, one.where)
    check_prices(held, config.price_book, budget_field)
    return held
