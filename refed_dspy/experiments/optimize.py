"""`refed optimize`: tune a program (optimize.target: respond, instructions or pipeline) against the judge, save
it, track it.

Steps: (1) examples: the caller's; for target respond the samples of `optimize.examples_run`, or a small
refed synthesis into `<out>/examples` (one instruction per reference feature, so the examples spread over
references); for instructions and pipeline the references; (2) a split by reference with a fixed seed;
(3) the optimizer, with teacher and judge behind one CallBudget; (4) program.json (DSPy state plus the
resolved config; the baseline when the compiled program scored lower, which goes to program.candidate.json),
instructions.txt, before_after.md, optimize_summary.json and config.toml in `<out>`; (5) with tracking on,
one MLflow run with params, before/after and per-step metrics, those files as artifacts, and one logged
model (`mlflow.dspy.log_model`, with a signature and an input example).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.clients.boundary import bounded
from refed_dspy.clients.lm import build_lm, price_of, require_price
from refed_dspy.clients.local_serving import serving
from refed_dspy.clients.scope import LedgerScope, ledger_scope
from refed_dspy.config import OPTIMIZERS, Config, load_config, to_toml
from refed_dspy.engine.budget import CallBudget, Limit
from refed_dspy.engine.progress import Heartbeat
from refed_dspy.errors import ConfigError, FinishedShort
from refed_dspy.experiments.held_lms import check_prices, metric_lms, program_lms, teleprompter_lms
from refed_dspy.experiments.kept import kept_reason
from refed_dspy.methods import get_method
from refed_dspy.money import usd
from refed_dspy.optimizers.compile import OptimizationStopped
from refed_dspy.optimizers.compile import optimize as compile_program
from refed_dspy.optimizers.examples import examples_from_run, reference_examples, split_examples
from refed_dspy.optimizers.metrics import CountingMetric, JudgeMetric, make_metric
from refed_dspy.optimizers.program_io import instructions_text, save_program
from refed_dspy.programs import ProposeInstructions, RespondAndImprove
from refed_dspy.quiet import quieted
from refed_dspy.stops import stop_signals
from refed_dspy.store.cache import shared_cache, use_run_cache
from refed_dspy.store.jsonl import write_json_atomic, write_text_atomic
from refed_dspy.store.ownership import check, owned
from refed_dspy.store.records import Reference, final_response
from refed_dspy.store.rundir import OnMismatch, RunDir, check_on_mismatch
from refed_dspy.store.seeds import read_references
from refed_dspy.sync import run_sync
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.synthesis.provenance import with_lm_of
from refed_dspy.tracking.figures import USAGE_TABLE, usage_figures, usage_table
from refed_dspy.tracking.mlflow_runs import (
    KIND_TAG,
    RUN_DIR_TAG,
    STEPS_TAG,
    config_params,
    connect,
    log_program,
)

LIBRARY_LOG = "dspy.log"  # in an optimization's (an experiment's) dir: what DSPy and the others printed meanwhile


@dataclass
class OptimizeResult:
    """What `optimize` returns: the compiled program, its scores and where everything went."""

    program: dspy.Module
    optimizer: str
    score_before: float
    score_after: float
    steps: list[float]
    out_dir: Path
    program_path: Path
    usage: dict[str, Any]
    n_train: int
    n_val: int
    mlflow_run_id: str | None = None
    model_uri: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON-able figures (optimize_summary.json)."""
        return {
            "status": "complete",
            "optimizer": self.optimizer,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "steps": self.steps,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "out_dir": str(self.out_dir),
            "program": str(self.program_path),
            "usage": self.usage,
            "mlflow_run_id": self.mlflow_run_id,
            "model_uri": self.model_uri,
            **self.extra,
        }


def out_dir(config: Config) -> Path:
    """Where an optimization writes: optimize.out, else <run.dir>/optimize."""
    return Path(config.optimize.out or Path(config.run.dir) / "optimize")


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


def _guard(lm: Any, budget: CallBudget, role: str, config_lm) -> None:
    lm.attach_budget(budget, role, price_of(config_lm))


def _example_text(ex: Any) -> str:
    if ex.get("instruction"):
        return f"**Instruction:** {ex.instruction}"
    return f"**Reference:** {Reference.coerce(ex.reference).instruction}"


def same_prompts(a: dspy.Module, b: dspy.Module) -> bool:
    """Whether two programs ask their LMs the same things: of one class, neither with a forward of its own (DSPy's
    KNNFewShot returns the program with a new forward and its predictors as they were), and the same predictors
    with the same signatures (instructions, fields) and demos."""
    if type(a) is not type(b) or "forward" in vars(a) or "forward" in vars(b):
        return False
    return [(n, p.dump_state()) for n, p in a.named_predictors()] == [
        (n, p.dump_state()) for n, p in b.named_predictors()
    ]


def prediction_text(pred: Any) -> str:
    """What a prediction of any target produced, as text: the final response; the proposed instructions; or the
    first samples of a pipeline."""
    if pred is None:
        return ""
    if pred.get("instructions") is not None:
        return "\n".join(f"- ({feature}) {text}" for feature, text in pred.instructions) or "(no instruction)"
    if pred.get("samples") is not None:
        return "\n\n".join(f"{s.instruction}\n-> {final_response(s)}" for s in pred.samples[:3]) or "(no sample)"
    return final_response(pred)


def before_after_markdown(before_rows: list, after_rows: list, k: int) -> str:
    """The first `k` validation examples: their input, what the program made and its score, before and after."""

    def cut(text: str, n: int = 800) -> str:
        return text if len(text) <= n else text[:n] + " [...]"

    def quoted(pred: Any) -> str:
        return cut(prediction_text(pred)).replace("\n", "\n> ")

    parts = ["# Before and after optimization (validation examples)\n"]
    for i, ((ex, p0, s0), (_, p1, s1)) in enumerate(zip(before_rows[:k], after_rows[:k], strict=False), 1):
        parts.append(
            f"## Example {i}\n\n{cut(_example_text(ex), 420)}\n\n"
            f"**Before** (score {s0:.3f}):\n\n> {quoted(p0)}\n\n"
            f"**After** (score {s1:.3f}):\n\n> {quoted(p1)}\n"
        )
    return "\n".join(parts)


def _write_outputs(out: Path, config: Config, result: dict[str, Any], program_path: Path) -> list[Path]:

    files = [program_path, out / "instructions.txt", out / "before_after.md", out / "config.toml"]
    write_text_atomic(files[1], instructions_text(result["program"]))
    write_text_atomic(
        files[2],
        before_after_markdown(result["before_rows"], result["after_rows"], config.optimize.before_after_examples),
    )
    write_text_atomic(files[3], to_toml(config))
    return files


@contextlib.contextmanager
def _tracked(config: Config, out: Path, optimizer: str):
    """An MLflow run for this optimization (or nothing when tracking is off). DSPy autologging records traces only
    when tracking.log_traces is on; its compile and eval logging stay off: they log a model per candidate and
    scores in percent, where this run logs one model and every score on the metric's 0-1 scale."""
    if not config.tracking.enabled:
        yield None
        return
    import mlflow

    connect(config)
    traces = config.tracking.log_traces
    mlflow.dspy.autolog(
        log_compiles=False,
        log_evals=False,
        log_traces=traces,
        log_traces_from_compile=traces,
        log_traces_from_eval=traces,
        silent=True,
    )
    try:
        with mlflow.start_run(
            run_name=f"optimize-{optimizer}",
            tags={KIND_TAG: "optimize", STEPS_TAG: "optimize", RUN_DIR_TAG: str(out.resolve())},
            nested=mlflow.active_run() is not None,  # a cell of an experiment: a child of its run
        ) as run:
            mlflow.log_params(config_params(config))
            yield run
    finally:
        mlflow.dspy.autolog(disable=True, silent=True)


def _log_result(result: dict[str, Any], summary: dict[str, Any], files: list[Path], config: Config) -> str:
    import mlflow

    mlflow.log_metrics(
        {
            "score_before": result["score_before"],
            "score_after": result["score_after"],
            "kept_baseline": float(summary.get("kept") == "baseline"),
            "wall_s": float(summary.get("wall_s") or 0.0),
            **usage_figures(summary["usage"]),
            "examples_calls": float(summary.get("examples_usage", {}).get("calls", 0)),
        }
    )
    mlflow.log_table(usage_table(summary["usage"]), USAGE_TABLE)
    for step, score in enumerate(result["steps"]):
        mlflow.log_metric("step_score", score, step=step)
    for p in files:
        mlflow.log_artifact(str(p))
    example = next(((ex, pred) for ex, pred, _ in result["before_rows"] if pred is not None), None)
    return log_program(result["program"], config.teacher, example=example)


async def _examples(
    config: Config, out: Path, teacher: dspy.LM, references: list[Reference], on_mismatch: str
) -> tuple[Path, dict[str, Any]]:
    """The run dir the examples come from, and the summary of the synthesis that made them ({} when given)."""

    if config.optimize.examples_run:
        return Path(config.optimize.examples_run), {}
    ex_config = examples_config(config, out)
    summary = await arun_synthesis(
        ex_config, teacher=teacher, references=references, on_mismatch=on_mismatch, show_progress=config.run.progress
    )
    return Path(ex_config.run.dir), summary


def _what_happened(examples_dir: Path, summary: dict[str, Any]) -> str:
    """For an error message: what the examples synthesis made and why it made no more."""
    if not summary:
        return f"{examples_dir} (optimize.examples_run)"
    rejects = ", ".join(f"{n} {r}" for r, n in sorted((summary.get("rejects") or {}).items(), key=lambda kv: -kv[1]))
    return (
        f"the examples synthesis into {examples_dir} made {summary.get('samples', 0)} samples from "
        f"{(summary.get('usage') or {}).get('calls', 0)} LM calls ({summary.get('status')}; rejects: {rejects or 'none'}; "
        f"see its rejects.jsonl)"
    )


def _write_stopped(out: Path, optimizer: str, status: str, reason: str, budget: CallBudget, started: float) -> None:
    """optimize_summary.json of an optimization that stopped before saving a program: why, and every call it paid."""
    write_json_atomic(
        out / "optimize_summary.json",
        {
            "status": status,
            "reason": reason,
            "optimizer": optimizer,
            "usage": budget.as_dict(),
            "wall_s": round(time.monotonic() - started, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _budget_line(budget: CallBudget, metric: Any, started: float) -> str:
    """The optimize progress line: calls and cost by role, judge failures, elapsed time."""
    usage = budget.as_dict()
    roles = ", ".join(f"{r} {v['calls']}" for r, v in usage["by_role"].items())
    failed = metric.failure_summary()["failed"]
    return (
        f"{usage['calls']} LM calls ({roles or 'none yet'}), {usd(usage['cost_usd'])}, {failed} judge failures, "
        f"{int(time.monotonic() - started)}s elapsed"
    )


@contextlib.contextmanager
def _maybe(heartbeat: Heartbeat, enabled: bool):
    if not enabled:
        yield
        return
    with heartbeat:
        yield


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


def _given_sets(trainset: list, valset: list | None, cfg: Any) -> tuple[list, list]:
    """A caller's examples: checked, and split (by reference when they carry reference_id) when no valset is given."""
    import random

    for name, items in (("trainset", trainset), ("valset", valset or [])):
        if not isinstance(items, list) or not all(isinstance(e, dspy.Example) for e in items):
            raise ConfigError(f"{name} takes a list of dspy.Example (with .with_inputs(...) set)")
    if valset:
        return list(trainset), list(valset)
    if all(e.get("reference_id") for e in trainset):
        return split_examples(trainset, len(trainset), len(trainset), cfg.seed, val_fraction=cfg.val_fraction)
    order = list(trainset)
    random.Random(cfg.seed).shuffle(order)
    n_val = max(1, round(len(order) * cfg.val_fraction)) if len(order) > 1 else 0
    return order[n_val:], order[:n_val]


def optimize(
    config: Config | str | None = None,
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
        config: a Config, a TOML path, or None for the defaults; `overrides` as `--set` takes them.
        teacher, judge: dspy.LMs to use instead of building them from [teacher] and [judge].
        references: the references the examples come from, instead of reading [seeds].
        on_mismatch: for an examples run dir made by another config: "error", "resume" or "fresh".
        program: the DSPy module to compile (default: the program of optimize.target; `target_program`).
        trainset, valset: your own dspy.Examples (inputs set), instead of synthesized ones; without a valset, the
            trainset is split (by reference when the examples carry `reference_id`).
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
    """
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    # [local] serve = true: the local model the LMs built from the config need is started when nothing serves it
    local = {"teacher": config.teacher} if teacher is None else {}
    if judge is None and metric is None:
        local["judge"] = config.judge
    with stop_signals(), serving(config.local, local), quieted(out_dir(config) / LIBRARY_LOG, verbose):
        return _optimize(
            config,
            teacher,
            judge,
            references,
            on_mismatch,
            program,
            trainset,
            valset,
            metric,
            optimizer,
            budget,
        )


def _optimize(
    config, teacher, judge, references, on_mismatch, program, trainset, valset, metric, optimizer, budget
) -> OptimizeResult:
    check_on_mismatch(on_mismatch)
    cfg = config.optimize
    optimizer = cfg.optimizer if optimizer is None else optimizer
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"optimizer={optimizer!r} is not one of {', '.join(OPTIMIZERS)} (or pass a teleprompter instance)"
        )
    optimizer_name = optimizer if isinstance(optimizer, str) else type(optimizer).__name__
    if program is not None and not isinstance(program, dspy.Module):
        raise ConfigError(f"program= takes a DSPy module, not a {type(program).__name__}")
    if metric is not None and not callable(metric):
        raise ConfigError(f"metric= takes a callable (gold, pred, trace=None), not a {type(metric).__name__}")
    out = out_dir(config)
    check(out, "optimize", flag="optimize.out")  # before any LM is built: a directory not refed's is refused first
    given_teacher, given_judge = teacher, judge
    if teacher is not None:  # a copy of the user's LM behind the call boundary; the run records and prices it
        teacher = bounded(teacher, "teacher", fresh=True)
        config = with_lm_of(config, "teacher", teacher)
    if judge is not None:
        judge = bounded(judge, "judge", fresh=True)
    if metric is None and not isinstance(optimizer, str):  # a teleprompter built with a metric: the one it means
        metric = next((m for m in (getattr(optimizer, a, None) for a in ("metric", "metric_fn")) if callable(m)), None)
    if metric is not None and not isinstance(metric, (JudgeMetric, CountingMetric)):
        metric = CountingMetric(metric, threshold=cfg.threshold)
    # the judge of record: the one handed in, else the one a metric of ours holds, else the config's
    judge_of_record = judge if judge is not None else (metric.lm if isinstance(metric, JudgeMetric) else None)
    if judge_of_record is not None:
        config = with_lm_of(config, "judge", judge_of_record)
    max_cost = budget.max_cost_usd if budget is not None else cfg.max_cost_usd
    budget_field = (
        None if max_cost is None else ("optimize.max_cost_usd" if budget is None else "the budget's max_cost_usd")
    )
    for role, spec in [("teacher", config.teacher)] + ([("judge", config.judge)] if metric is None else []):
        if budget_field is not None:
            require_price(spec, role, budget_field)
    # every LM the teleprompter, the metric and the program hold, claimed for its role on the ledger below
    held = (
        (teleprompter_lms(optimizer) if not isinstance(optimizer, str) else [])
        + metric_lms(metric)
        + program_lms(program)
    )
    held = [h for h in held if h.lm is not given_teacher and h.lm is not given_judge]
    check_prices(held, config.price_book, budget_field)
    if cfg.target != "respond" and cfg.examples_run and trainset is None:
        raise ConfigError(
            f"optimize.examples_run gives examples of the respond target; target {cfg.target!r} takes "
            "references as its examples ([seeds])"
        )
    teacher = teacher or build_lm(config.teacher, "teacher")
    if metric is None:
        judge = judge or build_lm(config.judge, "judge")
        metric = make_metric(config, cfg.target, judge=judge)
    teacher_adapter = build_adapter(config.teacher)
    if references is None and trainset is None:
        references, _ = read_references(
            config.seeds.source, config.seeds.format, config.seeds.split, config.seeds.limit
        )
    # one cache for the examples synthesis and the optimization (an experiment's cell: the experiment's)
    with owned(out, "optimize", "refed optimize", flag="optimize.out"), shared_cache(RunDir(out).cache):
        started = time.monotonic()
        if trainset is not None:
            examples_dir, examples_summary, examples_usage = None, {}, {}
            train, val = _given_sets(trainset, valset, cfg)
            if not train or not val:
                raise ConfigError(
                    f"{len(train)} training and {len(val)} validation examples: both sides need at "
                    "least one (give a valset, or more examples)"
                )
        elif cfg.target != "respond":  # the instructions and pipeline programs start from references
            examples_dir, examples_summary, examples_usage = None, {}, {}
            train, val = split_examples(
                reference_examples(references), cfg.n_train, cfg.n_val, cfg.seed, val_fraction=cfg.val_fraction
            )
            if not train or not val:
                raise ConfigError(
                    f"{len(references)} references give {len(train)} training and {len(val)} validation "
                    f"examples for target {cfg.target!r}; both sides need at least one (more references)"
                )
        else:
            examples_dir, examples_summary = run_sync(_examples(config, out, teacher, references, on_mismatch))
            examples_usage = examples_summary.get("usage", {})
            if examples_summary and not examples_summary.get("samples"):
                raise FinishedShort(f"no optimization examples: {_what_happened(examples_dir, examples_summary)}")
            exs = examples_from_run(examples_dir, {r.id: (r.instruction, r.response) for r in references})
            train, val = split_examples(exs, cfg.n_train, cfg.n_val, cfg.seed, val_fraction=cfg.val_fraction)
            if not train or not val:
                error = FinishedShort if examples_summary else ConfigError
                raise error(
                    f"{_what_happened(examples_dir, examples_summary)}: that gives {len(train)} training and {len(val)} "
                    "validation examples, and both sides need at least one (more samples, or more references)"
                )
        use_run_cache(RunDir(out))
        if budget is None:
            budget = CallBudget(
                cfg.max_calls,
                cfg.max_cost_usd,
                calls_from=Limit("optimize.max_calls"),
                cost_from=Limit("optimize.max_cost_usd"),
            )
        _guard(teacher, budget, "teacher", config.teacher)
        if judge is not None:
            _guard(judge, budget, "judge", config.judge)
        heartbeat = Heartbeat("optimize", lambda: _budget_line(budget, metric, started), config.run.progress_every_s)
        baseline = program if program is not None else target_program(config)
        scope = LedgerScope(budget, config.price_book)
        for given, twin, role in ((given_teacher, teacher, "teacher"), (given_judge, judge, "judge")):
            if given is not None:
                scope.claim(given, role, twin)
        for one in held:
            scope.claim(one.lm, one.role)
        try:
            with (
                ledger_scope(scope),
                _tracked(config, out, optimizer_name) as run,
                _maybe(heartbeat, config.run.progress),
            ):
                result = compile_program(
                    baseline,
                    train,
                    val,
                    metric=metric,
                    lm=teacher,
                    optimizer=optimizer,
                    auto=cfg.auto,
                    max_demos=cfg.max_demos,
                    num_candidates=cfg.num_candidates,
                    num_trials=cfg.num_trials,
                    max_metric_calls=cfg.max_metric_calls,
                    max_steps=cfg.max_steps,
                    bsize=cfg.bsize,
                    num_threads=cfg.num_threads,
                    seed=cfg.seed,
                    budget=budget,
                    adapter=teacher_adapter,
                    log_root=str(out / "state"),
                )
                unchanged = same_prompts(result["program"], baseline)
                why_kept = kept_reason(
                    unchanged,
                    result["score_before"],
                    result["score_after"],
                    result["threshold"],
                    result["traces"],
                    len(val),
                    "give more validation examples" if trainset is not None else "raise optimize.n_val",
                )
                if unchanged:  # the optimizer gave back what it was given (GEPA may): that program, as it scored
                    unchanged_rows = {"after_rows": result["before_rows"], "score_after": result["score_before"]}
                    result = {**result, "program": baseline, **unchanged_rows}
                scores = {"score_before": result["score_before"], "score_after": result["score_after"]}
                info = {
                    "optimizer": optimizer_name,
                    "target": cfg.target,
                    "settings": cfg.model_dump(mode="json"),
                    **scores,
                    "steps": result["steps"],
                    "n_train": len(train),
                    "n_val": len(val),
                    "teacher": config.teacher.model,
                    "judge": config.judge.model if isinstance(metric, JudgeMetric) else None,
                }
                kept, candidate_path = "compiled", None
                if unchanged:
                    kept = "baseline"
                elif result["score_after"] < result["score_before"]:
                    # the compiled program is worse on the validation set: the result is the one we started from
                    kept = "baseline"
                    candidate_path = save_program(
                        result["program"],
                        out / "program.candidate.json",
                        config,
                        {**info, "kept": "candidate (scored below the baseline)"},
                    )
                    result = {**result, "program": baseline, "after_rows": result["before_rows"]}
                program_path = save_program(result["program"], out / "program.json", config, {**info, "kept": kept})
                files = _write_outputs(out, config, result, program_path) + ([candidate_path] if candidate_path else [])
                res = OptimizeResult(
                    program=result["program"],
                    optimizer=optimizer_name,
                    steps=result["steps"],
                    out_dir=out,
                    program_path=program_path,
                    usage=budget.as_dict(),
                    n_train=len(train),
                    n_val=len(val),
                    extra={
                        "target": cfg.target,
                        "examples_run": str(examples_dir) if examples_dir else None,
                        "examples_usage": examples_usage,
                        "metric_failures": result["metric_failures"],
                        "kept": kept,
                        "kept_reason": why_kept if kept == "baseline" else None,
                        "threshold": result["threshold"],
                        "traces": result["traces"],
                        "candidate_program": str(candidate_path) if candidate_path else None,
                        "adapters": {
                            "teacher": teacher_adapter.choice.as_dict(),
                            "judge": getattr(getattr(metric, "adapter", None), "choice", None)
                            and metric.adapter.choice.as_dict(),
                        },
                        "wall_s": round(time.monotonic() - started, 3),
                        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    },
                    **scores,
                )
                if run is not None:
                    res.mlflow_run_id = run.info.run_id
                    res.model_uri = _log_result(result, res.summary(), files, config)
                write_json_atomic(out / "optimize_summary.json", res.summary())
                if run is not None:
                    import mlflow

                    mlflow.log_artifact(str(out / "optimize_summary.json"))
        except OptimizationStopped as err:  # what was spent before the stop, for a caller that keeps a ledger
            err.usage, err.budget_stop = budget.as_dict(), budget.tripped
            _write_stopped(out, optimizer_name, "stopped", str(err), budget, started)
            raise
        except KeyboardInterrupt:  # a signal: the calls in flight reached the provider, and are paid
            budget.close("the optimization was stopped by a signal")
            _write_stopped(out, optimizer_name, "interrupted", "stopped by a signal", budget, started)
            raise
        finally:
            for lm in (teacher, judge):
                if lm is not None:
                    lm.attach_budget(None, "lm", None)
        return res
