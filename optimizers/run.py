"""`refed optimize`: tune a program (optimize.target: respond, instructions or pipeline) against the judge, save
it, track it.

The config and what the caller handed in are resolved once into an OptimizePlan (plan.py: the LMs of record behind
the call boundary, every LM held by the teleprompter, metric or program claimed for its role, prices checked, the
starting program, where the examples come from, the settings each step reads), then `run_plan` runs it; nothing
under it reads the config again (the config of record is only written down). Steps: (1) examples: the caller's; for
target respond the samples of `optimize.examples_run`, or a small refed synthesis into `<out>/examples` (one
instruction per reference feature, so the examples spread over references); for instructions and pipeline the
references; (2) a split by reference with a fixed seed;
(3) the optimizer, with teacher and judge behind one CallBudget; (4) program.json (DSPy state plus the
resolved config; the baseline when the compiled program scored lower, which goes to program.candidate.json),
instructions.txt, before_after.md, optimize_summary.json and config.toml in `<out>`; (5) with tracking on,
one MLflow run with params, before/after and per-step metrics, those files as artifacts, and one logged
model (`mlflow.dspy.log_model`, with a signature and an input example).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.config import Config, OptimizeConfig
from refed_dspy.config.load import ConfigLike, as_config
from refed_dspy.engine.progress import Heartbeat
from refed_dspy.errors import RunInterrupted
from refed_dspy.launch.plan import held_calls, served
from refed_dspy.ledger.budget import CallBudget, Limit
from refed_dspy.ledger.call_log import LOG_NAME, NEW_LEDGER, CallLog
from refed_dspy.ledger.lines import BadLine, usage_figures
from refed_dspy.ledger.usage import larger_usage, usage_beyond, usd
from refed_dspy.optimizers.compile import OptimizationStopped
from refed_dspy.optimizers.compile import optimize as compile_program
from refed_dspy.optimizers.examples import EXAMPLES_STAGE, OptimizeExamples, examples_spent, optimization_examples
from refed_dspy.optimizers.metrics import JudgeMetric
from refed_dspy.optimizers.outputs import (
    OptimizeResult,
    before_after_markdown,
    given_back,
    log_result,
    log_summary,
    prediction_text,
    same_prompts,
    tracked,
    write_outputs,
)
from refed_dspy.optimizers.plan import (
    Given,
    OptimizePlan,
    checked_optimizer,
    examples_config,
    examples_source,
    lms_of_record,
    out_dir,
    target_program,
)
from refed_dspy.programs.saved import save_program
from refed_dspy.runtime.quiet import quieted
from refed_dspy.runtime.stops import stop_signals
from refed_dspy.store.cache import shared_cache, use_run_cache
from refed_dspy.store.jsonl import read_json, write_json_atomic
from refed_dspy.store.ownership import check, owned
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import OnMismatch, RunDir
from refed_dspy.store.seeds import given_references
from refed_dspy.tracking.mlflow_runs import failure_warned

logger = logging.getLogger("refed_dspy")
_LEAST_COST = 1e-9  # what a call is reserved at to ask a spent budget whether one more may start
IDLE_WAIT_S = 60.0  # how long a summary waits for calls an executor left running (then counted as paid, cut off)

__all__ = [
    "LIBRARY_LOG",
    "OptimizeResult",
    "before_after_markdown",
    "examples_config",
    "optimize",
    "out_dir",
    "prediction_text",
    "same_prompts",
    "target_program",
]

LIBRARY_LOG = "dspy.log"  # in an optimization's (an experiment's) dir: what DSPy and the others printed meanwhile


def optimize(
    config: ConfigLike | None = None,
    overrides: list[str] | None = None,
    *,
    teacher: dspy.LM | None = None,
    judge: dspy.LM | None = None,
    references: list[Reference] | None = None,
    on_mismatch: OnMismatch = "error",
    program: dspy.Module | None = None,
    trainset: list[dspy.Example] | None = None,
    valset: list[dspy.Example] | None = None,
    metric: Any = None,
    optimizer: Any = None,
    budget: CallBudget | None = None,
    verbose: bool = False,
) -> OptimizeResult:
    """Optimize a program against a metric, save it (program.json and the files beside it) and track it.

    Args:
        config: a Config, a TOML path, a mapping of its tables, or None for the defaults.
        overrides: `section.key=value` strings, as `--set` takes them (not with a Config).
        teacher: a dspy.LM to use instead of building one from [teacher].
        judge: a dspy.LM to use instead of building one from [judge].
        references: the references the examples come from, instead of reading [seeds].
        on_mismatch: for an examples run dir made by another config: "error", "resume" or "fresh".
        program: the DSPy module to compile (default: the program of optimize.target; `target_program`).
        trainset: your own dspy.Examples (inputs set), instead of synthesized ones.
        valset: your own validation dspy.Examples; without one, the trainset is split (by reference when the
            examples carry `reference_id`).
        metric: your own metric `(gold, pred, trace=None)` (GEPA: also `pred_name, pred_trace`; it may return
            `dspy.Prediction(score=, feedback=)`), instead of `make_metric(config)`; when not given, the metric of a
            teleprompter instance you pass (`optimizer=dspy.MIPROv2(metric=...)`), else `make_metric(config)`. A call
            that raises scores 0 and is counted.
        optimizer: one of OPTIMIZERS, or a teleprompter instance you built, instead of optimize.optimizer.
        budget: a CallBudget of your own to count every call against (one shared by several optimizations, or one you
            watch), instead of a new one of optimize.max_calls and optimize.max_cost_usd.
        verbose: show what DSPy, MIPROv2's proposer, optuna and MLflow print while optimizing (progress bars,
            bootstrapping lines, proposed programs); by default it goes to `<optimize.out>/dspy.log` (bars dropped),
            and only refed's own progress and messages reach the terminal.

    When the metric failed on more than half its calls, nothing is saved (OptimizationStopped). When the
    compiled program scores below the one it started from, the starting program is the result (program.json)
    and the compiled one is kept beside it as program.candidate.json; the summary says so (`kept`).

    Returns:
        The result: the program kept, both validation scores, the per-step scores, where the program and its files
            were saved, what the optimization spent, and the MLflow run and model when tracking is on.

    Raises:
        ConfigError: the config, the optimizer, the examples or what was handed in is unusable (before any call).
        OptimizationStopped: the budget refused a call, or the metric or the program failed too often; nothing is
            saved.
    """
    config = as_config(config, overrides)
    given = Given(teacher, judge, given_references(references), program, trainset, valset, metric, optimizer, budget)
    # [local] serve = true: the local model the LMs built from the config need is started when nothing serves it
    local = {"teacher": config.teacher} if teacher is None else {}
    if judge is None and metric is None:
        local["judge"] = config.judge
    out = out_dir(config)
    with stop_signals(), served(config.local, local), quieted(out / LIBRARY_LOG, verbose):
        return _plan_and_run(config, out, given, on_mismatch)


def _plan_and_run(config: Config, out: Path, given: Given, on_mismatch: OnMismatch) -> OptimizeResult:
    """`optimize` once its local model is served: the config and what the caller handed in resolved once into an
    OptimizePlan of the optimization into `out` (a mistake is said before `out` is taken or any LM is called), then
    run."""
    optimizer = checked_optimizer(config, given, on_mismatch)
    check(out, "optimize", flag="optimize.out")  # before any LM is built: a directory not refed's is refused first
    lms = lms_of_record(config, given, optimizer)
    record = lms.config
    references, examples_synthesis = examples_source(record, out, given)
    plan = OptimizePlan(
        out=out,
        settings=record.optimize,
        program=given.program if given.program is not None else target_program(record),
        teacher=lms.teacher,
        judge=lms.judge,
        metric=lms.metric,
        optimizer=optimizer,
        adapter=build_adapter(record.teacher),
        claims=lms.claims,
        references=references,
        examples_config=examples_synthesis,
        lm_prices=lms.prices,
        prices=record.price_book,
        run=record.run,
        tracking=record.tracking,
        record=record,
        on_mismatch=on_mismatch,
        given=given,
    )
    return run_plan(plan)


class _Phase:
    """What an optimization is doing now, for its progress line; called with each part as it begins."""

    def __init__(self) -> None:
        self.now = "starting"

    def __call__(self, now: str) -> None:
        self.now = now


@dataclass(frozen=True)
class _Run:
    """A plan under way: its examples, the ledger every call of it is counted on, when it began, and what earlier
    invocations of the command paid (`before`, a usage dict)."""

    plan: OptimizePlan
    examples: OptimizeExamples | None  # None: not made yet
    budget: CallBudget
    started: float
    before: dict[str, Any]
    phase: _Phase = field(default_factory=_Phase)

    def this_invocation(self) -> dict[str, Any]:
        """What this invocation paid: the ledger's totals beyond what earlier ones had."""
        return usage_beyond(self.budget.as_dict(), self.before)


@dataclass(frozen=True)
class _Saved:
    """Which program is the result and where it was saved, with the files beside it."""

    kept: Literal["compiled", "baseline"]
    program_path: Path
    candidate: Path | None  # the compiled program, kept beside a starting one that scored higher
    files: list[Path]


def run_plan(plan: OptimizePlan) -> OptimizeResult:
    """Run a resolved optimization in its directory: make its examples, compile its program with every call on one
    ledger, keep the better of the two programs, save and track it (see `optimize`)."""
    # one cache for the examples synthesis and the optimization (an experiment's cell: the experiment's)
    with owned(plan.out, "optimize", "refed optimize", flag="optimize.out"), shared_cache(RunDir(plan.out).cache):
        started = time.monotonic()
        budget = plan.given.budget if plan.given.budget is not None else _own_budget(plan.settings)
        log = _open_log(plan.out, budget, plan.run.new_ledger)  # None: the caller's budget writes its own
        run = _Run(plan, None, budget, started, budget.as_dict())  # before: what earlier invocations paid
        try:
            run = replace(run, examples=_examples(run, log))
            use_run_cache(RunDir(plan.out))
            return _run(run)
        finally:
            _close_log(log, budget, plan.out)


def _run(run: _Run) -> OptimizeResult:
    """Compile and save with every call of the plan's LMs on the run's ledger (see `run_plan`)."""
    plan, budget = run.plan, run.budget
    for lm, role in ((plan.teacher, "teacher"), (plan.judge, "judge")):
        if lm is not None:
            lm.attach_budget(budget, role, plan.lm_prices[role])
    heartbeat = Heartbeat("optimize", lambda: _budget_line(run, plan.metric), plan.run.progress_every_s)
    try:
        with (
            held_calls(budget, plan.prices, plan.claims),
            tracked(plan.tracking, plan.record, plan.out, plan.optimizer_name) as mlflow_run,
            _maybe(heartbeat, plan.run.progress),
        ):
            return _compile_and_save(run, mlflow_run)
    except OptimizationStopped as err:
        raise _stopped(run, err) from None
    except KeyboardInterrupt:  # a signal: the calls in flight reached the provider, and are paid
        budget.close("the optimization was stopped by a signal")
        raise RunInterrupted(_write_stopped(run, "interrupted", "stopped by a signal")) from None
    finally:
        for lm in (plan.teacher, plan.judge):
            if lm is not None:
                lm.attach_budget(None, "lm", None)


def _examples(run: _Run, log: CallLog | None) -> OptimizeExamples:
    """The plan's examples, a synthesis that makes them held to what the optimization's limits leave (it is part of
    the command), and what that synthesis paid beyond what the command's ledger holds of it recorded there."""
    plan, budget = run.plan, run.budget
    calls, cost = budget.left()
    if calls == 0 or cost == 0:  # earlier invocations spent it all: refused as the next call would be
        if not budget.try_reserve(1, _LEAST_COST):
            field = budget.field_of() or "optimize.max_calls / max_cost_usd"
            raise _stopped(
                run,
                OptimizationStopped(
                    f"optimization stopped before its examples: {budget.tripped}; no program was saved (raise "
                    f"{field}, or start over with {NEW_LEDGER})"
                ),
            )
        budget.release(1, _LEAST_COST)
    base = _examples_counted(plan, (budget.as_dict().get("by_stage") or {}).get(EXAMPLES_STAGE))
    more_calls = None if calls is None else calls + int(base.get("calls") or 0)
    more_cost = None if cost is None else cost + float(base.get("cost_usd") or 0.0)
    examples = optimization_examples(plan, more_calls, more_cost)  # its limits count what it paid before
    more = usage_beyond(examples.usage, base)
    if examples.usage and (more["calls"] or more["cost_usd"] or more["interrupted_cost_usd"]):
        budget.add_paid({**more, "by_stage": {EXAMPLES_STAGE: more}}, role="teacher")
        if log is not None:
            log.recorded("teacher", EXAMPLES_STAGE, {**more, "by_stage": {EXAMPLES_STAGE: more}})
    return examples


def _examples_counted(plan: OptimizePlan, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """Of what the examples run's own files say it has paid, the part the command's ledger holds already: what the
    ledger recorded of it, or less where the run starts over (`on_mismatch="fresh"`, or its dir gone) and so counts
    from less."""
    if plan.examples_config is None or not recorded:
        return {}
    before = {} if plan.on_mismatch == "fresh" else examples_spent(Path(plan.examples_config.run.dir))
    smaller = (int(before.get("calls") or 0), float(before.get("cost_usd") or 0.0))
    return before if smaller < (int(recorded.get("calls") or 0), float(recorded.get("cost_usd") or 0.0)) else recorded


def _open_log(out: Path, budget: CallBudget, new_ledger: bool) -> CallLog | None:
    """The write-ahead log of the optimization's calls in `out`, attached to `budget` (None when the budget already
    writes one: an experiment's part). What earlier invocations of the command paid (its log holds all of it, killed
    ones' calls in flight at their bound) is counted on this one's ledger, and said in one line."""
    if budget.log is not None:
        return None
    log = CallLog.open(out / LOG_NAME, (out / "optimize_summary.json", out / "program.json"), new_ledger)
    log.summary_stamp = _stamp(out)
    budget.log = log
    budget.add_paid(larger_usage(log.earlier, None if new_ledger else _summary_usage(out)))
    if log.found_now:
        logger.info(
            "optimize: %d LM calls of an earlier invocation that was killed are counted as paid (%s)",
            log.found_now.get("calls", 0),
            usd(log.found_now.get("cost_usd")),
        )
    if log.earlier:
        logger.info(
            "optimize: earlier invocations of this command in %s paid %d LM calls (%s), counted against its limits "
            "(%s starts over)",
            out,
            log.earlier.get("calls", 0),
            usd(log.earlier.get("cost_usd")),
            NEW_LEDGER,
        )
    return log


def _summary_usage(out: Path) -> dict[str, Any] | None:
    """What the last summary in `out` said the command had spent in all (None: none, or not figures refed writes)."""
    try:
        return usage_figures(read_json(out / "optimize_summary.json").get("usage") or {}) or None
    except BadLine:
        return None


def _close_log(log: CallLog | None, budget: CallBudget, out: Path) -> None:
    """Detach the log from the ledger; ended when this invocation's summary, which counts what it holds, is written;
    else left for the next invocation to count."""
    if log is None:
        return
    budget.log = None
    if _stamp(out) != log.summary_stamp:
        log.end()
    else:
        log.close()


def _stamp(out: Path) -> tuple[int, int] | None:
    """Which optimize_summary.json `out` holds (inode and time written; None: none), to tell whether it was written."""
    try:
        st = (out / "optimize_summary.json").stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _own_budget(cfg: OptimizeConfig) -> CallBudget:
    """The optimization's ledger when the caller gave none: optimize.max_calls and optimize.max_cost_usd."""
    return CallBudget(
        cfg.max_calls,
        cfg.max_cost_usd,
        calls_from=Limit("optimize.max_calls"),
        cost_from=Limit("optimize.max_cost_usd"),
    )


def _compile_and_save(run: _Run, mlflow_run: Any) -> OptimizeResult:
    """Compile, keep the better program, save it and the files beside it, and log them to `mlflow_run` (None: off)."""
    more_val = (
        "give more validation examples (an experiment's: raise experiment.examples or experiment.val_fraction)"
        if run.plan.given.trainset is not None
        else "raise optimize.n_val"
    )
    result, unchanged, why = given_back(_compile(run), run.plan.program, len(run.examples.val), more_val)
    result, saved = _save(run, result, unchanged)
    run.budget.wait_idle(IDLE_WAIT_S)  # the summary counts every call made: none is still running
    res = _result(run, result, saved, why)
    if mlflow_run is not None:
        res.mlflow_run_id = mlflow_run.info.run_id
        with failure_warned(run.plan.out):  # a model MLflow cannot take (a key it would pickle): a warning, no URI
            res.model_uri = log_result(result, res.summary(), saved.files, run.plan.record.teacher)
    write_json_atomic(run.plan.out / "optimize_summary.json", res.summary())
    if mlflow_run is not None:
        log_summary(run.plan.out / "optimize_summary.json")
    return res


def _compile(run: _Run) -> dict[str, Any]:
    """The optimizer's run on the plan's program (see refed_dspy.optimizers.compile.optimize for what it returns)."""
    plan, cfg = run.plan, run.plan.settings
    return compile_program(
        plan.program,
        run.examples.train,
        run.examples.val,
        metric=plan.metric,
        lm=plan.teacher,
        optimizer=plan.optimizer,
        auto=cfg.auto,
        max_demos=cfg.max_demos,
        num_candidates=cfg.num_candidates,
        num_trials=cfg.num_trials,
        max_metric_calls=cfg.max_metric_calls,
        max_steps=cfg.max_steps,
        bsize=cfg.bsize,
        num_threads=cfg.num_threads,
        seed=cfg.seed,
        budget=run.budget,
        adapter=plan.adapter,
        log_root=str(plan.out / "state"),
        on_phase=run.phase,
    )


def _save(run: _Run, result: dict[str, Any], unchanged: bool) -> tuple[dict[str, Any], _Saved]:
    """program.json (the compiled program, or the starting one when the compiled one scored lower on validation: then
    the compiled one goes to program.candidate.json) and the files beside it; the result with the program kept."""
    plan = run.plan
    info = _info(run, result)
    kept, candidate_path = "compiled", None
    if unchanged:
        kept = "baseline"
    elif result["score_after"] < result["score_before"]:
        # the compiled program is worse on the validation set: the result is the one we started from
        kept = "baseline"
        candidate_path = save_program(
            result["program"],
            plan.out / "program.candidate.json",
            plan.record,
            {**info, "kept": "candidate (scored below the baseline)"},
        )
        result = {**result, "program": plan.program, "after_rows": result["before_rows"]}
    program_path = save_program(result["program"], plan.out / "program.json", plan.record, {**info, "kept": kept})
    files = write_outputs(plan.out, plan.record, result, program_path, plan.settings.before_after_examples)
    files += [candidate_path] if candidate_path else []
    return result, _Saved(kept, program_path, candidate_path, files)


def _info(run: _Run, result: dict[str, Any]) -> dict[str, Any]:
    """What program.json's refed block says of the optimization: optimizer, target, settings, scores, sizes, LMs."""
    plan, cfg = run.plan, run.plan.settings
    return {
        "optimizer": plan.optimizer_name,
        "target": cfg.target,
        "settings": cfg.model_dump(mode="json"),
        "score_before": result["score_before"],
        "score_after": result["score_after"],
        "steps": result["steps"],
        "n_train": len(run.examples.train),
        "n_val": len(run.examples.val),
        "teacher": plan.record.teacher.model,
        "judge": plan.record.judge.model if isinstance(plan.metric, JudgeMetric) else None,
    }


def _result(run: _Run, result: dict[str, Any], saved: _Saved, why_kept: str | None) -> OptimizeResult:
    """What `optimize` returns (and optimize_summary.json holds)."""
    plan, examples, metric = run.plan, run.examples, run.plan.metric
    return OptimizeResult(
        program=result["program"],
        optimizer=plan.optimizer_name,
        steps=result["steps"],
        out_dir=plan.out,
        program_path=saved.program_path,
        usage=run.budget.as_dict(),
        n_train=len(examples.train),
        n_val=len(examples.val),
        extra={
            "this_invocation": run.this_invocation(),
            "target": plan.settings.target,
            "examples_run": str(examples.run_dir) if examples.run_dir else None,
            "examples_usage": examples.usage,
            "metric_failures": result["metric_failures"],
            "threshold": result["threshold"],
            "traces": result["traces"],
            "adapters": {
                "teacher": plan.adapter.choice.as_dict(),
                "judge": getattr(getattr(metric, "adapter", None), "choice", None) and metric.adapter.choice.as_dict(),
            },
            "wall_s": round(time.monotonic() - run.started, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        score_before=result["score_before"],
        score_after=result["score_after"],
        kept=saved.kept,
        kept_reason=why_kept if saved.kept == "baseline" else None,
        candidate_path=saved.candidate,
    )


def _write_stopped(run: _Run, status: str, reason: str) -> dict[str, Any]:
    """optimize_summary.json of an optimization that stopped before saving a program: why, and every call it paid.
    Returns what it holds."""
    run.budget.wait_idle(IDLE_WAIT_S)
    summary = {
        "status": status,
        "reason": reason,
        "optimizer": run.plan.optimizer_name,
        "usage": run.budget.as_dict(),
        "this_invocation": run.this_invocation(),
        "wall_s": round(time.monotonic() - run.started, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(run.plan.out / "optimize_summary.json", summary)
    return summary


def _stopped(run: _Run, err: OptimizationStopped) -> OptimizationStopped:
    """A stop before a program was saved: its summary written, and the stop with what the command has spent in all
    and this invocation's part said after it (`usage` and `budget_stop` set, for a caller that keeps a ledger)."""
    whole, part = run.budget.as_dict(), run.this_invocation()
    said = (
        f"{err} (the command has spent {whole['calls']} LM calls, {usd(whole['cost_usd'])}; this invocation "
        f"{part['calls']}, {usd(part['cost_usd'])})"
    )
    # a limit, not a refusal of its own; said with what was spent in all (calls that fit went on after the first
    # refusal, whose reason says what had been spent then)
    _write_stopped(run, "budget" if run.budget.tripped_by else "stopped", said)
    stopped = OptimizationStopped(said)
    stopped.usage, stopped.budget_stop = whole, run.budget.tripped
    return stopped


def _budget_line(run: _Run, metric: Any) -> str:
    """The optimize progress line: what is being done, calls and cost by role, judge failures, elapsed time."""
    usage = run.budget.as_dict()
    roles = ", ".join(f"{r} {v['calls']}" for r, v in usage["by_role"].items())
    failed = metric.failure_summary()["failed"]
    scorer = "judge" if isinstance(metric, JudgeMetric) else "metric"  # a metric of the caller's judges nothing
    return (
        f"{run.phase.now}; {usage['calls']} LM calls ({roles or 'none yet'}), {usd(usage['cost_usd'])}, "
        f"{failed} {scorer} failures, {int(time.monotonic() - run.started)}s elapsed"
    )


@contextlib.contextmanager
def _maybe(heartbeat: Heartbeat, enabled: bool):
    if not enabled:
        yield
        return
    with heartbeat:
        yield
