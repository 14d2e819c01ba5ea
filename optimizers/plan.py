"""An optimization resolved once, before any call: `optimize` (run.py) turns the config and what the caller handed in
into an `OptimizePlan` with the functions here, then runs it (`run_plan`).

Resolving checks what the caller handed in (a user's mistake is refused before the optimization's directory is taken),
puts the teacher and judge handed in behind the call boundary as copies (the LMs of record), finds every LM the
teleprompter, the metric and the program hold (each claimed for its role on the run's ledger), checks that a cost
budget can price every LM that will spend it, builds the config's LMs, the metric and the starting program, and reads
the references the examples come from.

The LMs are resolved as every LM-bound command's are, by refed_dspy.launch.plan: the teacher and judge (`held_lm`), the
checks of keys and prices (`check_role`, `check_held`). The LMs an optimization's objects hold (`teleprompter_lms`,
`metric_lms`, `program_lms`) are found here, before any call: so that each is claimed for its role on the run's ledger
(launch.plan.held_calls) and, under a cost budget, refused before the first call when it has no price.

Where they are found: a teleprompter's attributes (MIPROv2's prompt_model and task_model, GEPA's reflection_lm, SIMBA's
prompt_model, the `lm` of a `teacher_settings` dict, an LM of an object it holds, such as GEPA's instruction proposer)
are the role `optimizer`; the judge of a metric of ours (`make_metric`), wherever it is held, is the role `judge`; an
LM a user's metric holds (an attribute, a closure variable, a global it names) is the role `metric`; an LM pinned to a
predictor of the program is the role `teacher`. An LM called that none of these holds is still caught when it is called
(role `metric` inside a metric, else `other`).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.adapters import RepairingAdapter
from refed_dspy.config import Config, OptimizeConfig, PriceBook, RunConfig, TrackingConfig
from refed_dspy.config.lm import price_note, price_of
from refed_dspy.errors import ConfigError
from refed_dspy.launch.plan import HeldLM, check_held, check_role, held_lm
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.methods import METHODS
from refed_dspy.optimizers.metrics import CountingMetric, JudgeMetric, make_metric
from refed_dspy.programs import ProposeInstructions, RespondAndImprove
from refed_dspy.providers.prices import Price
from refed_dspy.registry import OPTIMIZERS
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import OnMismatch, check_on_mismatch
from refed_dspy.store.seeds import read_seeds
from refed_dspy.synthesis.program import with_lm_of

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
    """An optimization resolved before any call (see the module docstring): what `run_plan` and the steps under it
    read, instead of the config.

    `record` is the config of record (a teacher or judge handed in replaces the config's): what program.json,
    config.toml and MLflow keep of the optimization. What it does is read from the other fields.
    """

    out: Path
    settings: OptimizeConfig  # [optimize]
    program: dspy.Module  # the starting program: the caller's, else the target's at its built-in prompts
    teacher: Any  # behind the call boundary
    judge: Any  # behind the call boundary; None when the metric is the caller's and no judge was handed in
    metric: Any  # a metric of ours, or the caller's counted (CountingMetric)
    optimizer: Any  # a name of OPTIMIZERS, or the caller's teleprompter
    adapter: RepairingAdapter  # the teacher's
    claims: tuple[tuple[Any, str, Any], ...]  # (LM, role, the twin its calls go to or None): for the run's ledger
    references: list[Reference] | None  # what the examples are made from (None: the caller's trainset is given)
    examples_config: Config | None  # the small synthesis that makes the respond target's examples (None: none runs)
    lm_prices: dict[str, Price | None]  # the teacher's and the judge's, by role
    prices: PriceBook  # how an LM the run does not hold is priced
    run: RunConfig  # progress settings
    tracking: TrackingConfig
    record: Config
    on_mismatch: OnMismatch  # for the examples synthesis's run dir made by another config
    given: Given

    @property
    def optimizer_name(self) -> str:
        return self.optimizer if isinstance(self.optimizer, str) else type(self.optimizer).__name__


@dataclass(frozen=True)
class LMsOfRecord:
    """The LMs an optimization calls, resolved before any call: the config with the LMs of record in it, the teacher
    and the judge behind the call boundary, the metric, and every LM to claim for its role on the run's ledger."""

    config: Config  # a teacher or judge handed in replaces the config's
    teacher: Any
    judge: Any  # None when the metric is the caller's and no judge was handed in
    metric: Any
    claims: tuple[tuple[Any, str, Any], ...]
    prices: dict[str, Price | None]  # the teacher's and the judge's, by role


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
        return METHODS.get(syn.method).build_pipeline(syn)
    return RespondAndImprove()


def checked_optimizer(config: Config, given: Given, on_mismatch: OnMismatch) -> Any:
    """The optimizer to run (the caller's, else optimize.optimizer), once the caller's arguments and the examples'
    source are checked (ConfigError)."""
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
    cfg = config.optimize
    if cfg.target != "respond" and cfg.examples_run and given.trainset is None:
        raise ConfigError(
            f"optimize.examples_run gives examples of the respond target; target {cfg.target!r} takes "
            "references as its examples ([seeds])"
        )
    return optimizer


def lms_of_record(config: Config, given: Given, optimizer: Any) -> LMsOfRecord:
    """The teacher and judge handed in put behind the call boundary (the LMs of record), every LM the teleprompter,
    the metric and the program hold found and checked (`_held_lms`), then the config's LMs and the metric built where
    none was handed in. A price, key or config error for what cannot run, before any call."""
    metric = _metric_of(given.metric, optimizer, config.optimize.threshold)
    config, teacher, judge = _behind_the_boundary(config, given, metric)
    held = _held_lms(config, given, metric, optimizer)
    teacher = teacher or held_lm(config.teacher, "teacher")
    # the model's own settings standing in for what the config leaves unset, and a deprecation date near or passed,
    # said once for each LM built from it
    built = [("teacher", given.teacher is None), ("judge", metric is None and judge is None)]
    budget = given.budget.max_cost_usd if given.budget is not None else config.optimize.max_cost_usd
    for role, from_config in built:
        for note in getattr(config, role).start_notes(role) if from_config else ():
            log.info(note)
        # a model with no price but a name close to a priced one: under no budget it runs, its costs unknown
        unpriced = price_note(getattr(config, role), role) if from_config and budget is None else None
        if unpriced:
            log.warning(unpriced)
    if metric is None:
        judge = judge or held_lm(config.judge, "judge")
        metric = make_metric(config, config.optimize.target, judge=judge)
    mine = ((given.teacher, "teacher", teacher), (given.judge, "judge", judge))
    claims = tuple((lm, role, twin) for lm, role, twin in mine if lm is not None)
    claims += tuple((one.lm, one.role, None) for one in held)
    prices = {"teacher": price_of(config.teacher), "judge": price_of(config.judge)}
    return LMsOfRecord(config, teacher, judge, metric, claims, prices)


def examples_config(config: Config, out: Path, size: int | None = None) -> Config:
    """The small refed synthesis into `out/examples` that provides examples when no examples_run is given: `size`
    samples (default: optimize.n_train + n_val)."""
    data = config.model_dump(mode="json")
    cfg = config.optimize
    data["run"]["dir"] = str(out / "examples")
    data["synthesis"].update(
        method="refed", size=size or cfg.n_train + cfg.n_val, instructions_per_feature=1, program=None, mode="online"
    )
    data["tracking"]["enabled"] = False
    return Config.model_validate(data)


def held_to(config: Config, max_calls: int | None, max_cost_usd: float | None) -> Config:
    """An examples synthesis's `config` with its limits held to what the optimization's leave (None: no limit of the
    optimization's; a synthesis limit of its own that is lower stays)."""
    syn = config.synthesis
    calls = [n for n in (syn.max_calls, max_calls) if n is not None]
    costs = [c for c in (syn.max_cost_usd, max_cost_usd) if c is not None]
    held = {
        "max_calls": max(1, min(calls)) if calls else None,
        "max_cost_usd": max(1e-9, min(costs)) if costs else None,
    }
    return config.model_copy(update={"synthesis": syn.model_copy(update=held)})


def examples_source(config: Config, out: Path, given: Given) -> tuple[list[Reference] | None, Config | None]:
    """Where the examples come from: the references (the caller's, else [seeds] read; None when the caller's trainset
    is given), and for the respond target without optimize.examples_run, the config of the small synthesis that makes
    them from those references in `out` (`examples_config`; None when none runs)."""
    references = given.references
    if references is None and given.trainset is None:
        references = read_seeds(config.seeds)[0]
    cfg = config.optimize
    if cfg.target != "respond" or cfg.examples_run or given.trainset is not None:
        return references, None
    return references, examples_config(config, out)


def _behind_the_boundary(config: Config, given: Given, metric: Any) -> tuple[Config, Any, Any]:
    """Copies of the teacher and judge handed in behind the call boundary (None where none was), and `config` with the
    LMs of record in it: the teacher handed in, and the judge handed in, else the one a metric of ours holds."""
    teacher = judge = None
    if given.teacher is not None:  # a copy of the user's LM behind the call boundary; the run records and prices it
        teacher = held_lm(config.teacher, "teacher", given.teacher)
        config = with_lm_of(config, "teacher", teacher)
    if given.judge is not None:
        judge = held_lm(config.judge, "judge", given.judge)
    judge_of_record = judge if judge is not None else (metric.lm if isinstance(metric, JudgeMetric) else None)
    if judge_of_record is not None:
        config = with_lm_of(config, "judge", judge_of_record)
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
        check_role(spec, role, budget_field, key=False)  # a key is checked as the LM is built
    held = (
        (teleprompter_lms(optimizer) if not isinstance(optimizer, str) else [])
        + metric_lms(metric)
        + program_lms(given.program)
    )
    held = [h for h in held if h.lm is not given.teacher and h.lm is not given.judge]
    check_held(held, config.price_book, budget_field)
    return held


_METRIC_ATTRS = ("metric", "metric_fn")  # where DSPy's teleprompters keep their metric


def metric_lms(metric: Any, where: str = "metric") -> list[HeldLM]:
    """The LMs a metric holds: the judge of a metric of ours; an LM a user's metric holds as an attribute, a closure
    variable or a global it names (one level deep: an LM it builds while it runs is caught when it is called)."""
    if metric is None:
        return []
    if isinstance(metric, JudgeMetric):
        return [HeldLM(f"{where}.lm", "judge", metric.lm)] if isinstance(metric.lm, dspy.BaseLM) else []
    if isinstance(metric, CountingMetric):
        return metric_lms(metric.metric, where)
    found: list[HeldLM] = []
    named: dict[str, Any] = {}
    func = getattr(metric, "__func__", metric)
    if inspect.isfunction(func):
        try:
            closure = inspect.getclosurevars(func)
            named = {**closure.globals, **closure.nonlocals}
        except (TypeError, ValueError):
            named = {}
        if inspect.ismethod(metric):
            named.update(vars(metric.__self__) if hasattr(metric.__self__, "__dict__") else {})
    elif hasattr(metric, "__dict__"):
        named = dict(vars(metric))
    for name, value in named.items():
        if isinstance(value, dspy.BaseLM):
            found.append(HeldLM(f"{where}: {name}", "metric", value))
        elif isinstance(value, (JudgeMetric, CountingMetric)):
            found += metric_lms(value, f"{where}: {name}")
        elif isinstance(value, dspy.Module):
            found += program_lms(value, f"{where}: {name}", role="metric")
    return found


def program_lms(program: Any, where: str = "program", role: str = "teacher") -> list[HeldLM]:
    """The LMs pinned to the predictors of a program (`predictor.lm`)."""
    if not isinstance(program, dspy.Module):
        return []
    return [
        HeldLM(f"{where}.{name}.lm", role, p.lm)
        for name, p in program.named_predictors()
        if isinstance(getattr(p, "lm", None), dspy.BaseLM)
    ]


def teleprompter_lms(tp: Any) -> list[HeldLM]:
    """The LMs a teleprompter holds: as attributes, values of dict attributes and attributes of an object it holds
    (the role `optimizer`), and in its metric (see metric_lms)."""
    found: list[HeldLM] = []
    name = type(tp).__name__
    for attr, value in (getattr(tp, "__dict__", None) or {}).items():
        where = f"{name}.{attr}"
        if isinstance(value, dspy.BaseLM):
            found.append(HeldLM(where, "optimizer", value))
        elif attr in _METRIC_ATTRS:
            found += metric_lms(value, where)
        elif isinstance(value, dict):
            found += [HeldLM(f"{where}[{k!r}]", "optimizer", v) for k, v in value.items() if isinstance(v, dspy.BaseLM)]
        elif hasattr(value, "__dict__") and not isinstance(value, (type, dspy.Module)) and not callable(value):
            for inner, lm in vars(value).items():
                if isinstance(lm, dspy.BaseLM):
                    found.append(HeldLM(f"{where}.{inner}", "optimizer", lm))
    return found
