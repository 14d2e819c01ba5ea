"""One cell of the grid: `optimize` on train / validation within what the experiment leaves it, then its program
judged on the test examples (`cells/<id>/cell.json`); or the row of a cell the budget left unstarted.

A program judged on the experiment's held-out test examples (`score`: a cell's, or a baseline's), and (the synthesis
check) the synthesis run it drives on the test references, judged; what each spends goes into the experiment's
ledger.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.config import Config
from refed_dspy.config.lm import price_of
from refed_dspy.errors import ConfigError, RefedError
from refed_dspy.experiments.config import Cell, config_hash, example_key
from refed_dspy.experiments.plan import ExperimentPlan
from refed_dspy.experiments.spend import (
    BudgetStop,
    amounts_text,
    cell_limits,
    experiment_limits,
    left_to_spend,
    lesser,
    own_left,
    own_limit_that_stopped,
)
from refed_dspy.launch.plan import held_lm
from refed_dspy.ledger.budget import CallBudget, Limit
from refed_dspy.ledger.spend import total_of
from refed_dspy.optimizers.compile import evaluate_detailed
from refed_dspy.optimizers.metrics import make_metric
from refed_dspy.optimizers.run import OptimizeResult, optimize
from refed_dspy.quality.judge import judge_run
from refed_dspy.runtime.sync import run_sync
from refed_dspy.secrets import first_line
from refed_dspy.store.cache import use_run_cache
from refed_dspy.store.jsonl import read_jsonl, write_json_atomic
from refed_dspy.store.rundir import RunDir
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.synthesis.program import with_lm_of

log = logging.getLogger(__name__)


def cell_row(plan: ExperimentPlan, cell: Cell, bkey: str) -> dict[str, Any]:
    """What a cell's row says of it whatever becomes of it: its config's hash, values, settings, teacher (the LM's
    handed in, else its config's) and baseline's key."""
    cfg = plan.configs[cell.id]
    return {
        "config_hash": config_hash(cfg),
        "id": cell.id,
        "label": cell.label,
        "values": cell.values,
        "repeat": cell.repeat,
        "seed": cfg.optimize.seed,
        "optimizer": cfg.optimize.optimizer,
        "target": cfg.optimize.target,
        "teacher": plan.model("teacher", cfg),
        "baseline": bkey,
    }


def unstarted(plan: ExperimentPlan, cell: Cell, bkey: str, why: str) -> dict[str, Any]:
    """The row of a cell the budget left unstarted (run again with a larger budget, it starts)."""
    return {**cell_row(plan, cell, bkey), "status": "budget", "error": f"not started: {why}", "usage": {}}


@dataclass(frozen=True)
class _Allowance:
    """What a cell may spend optimizing: what the experiment's budget leaves it once the judging of its test examples is
    kept aside (None: no such limit), and where the limits that bind it come from (for the ledger's messages)."""

    calls: int | None
    cost: float | None
    calls_from: Limit | None
    cost_from: Limit | None
    own: tuple[int | None, float | None] = (None, None)  # what its own optimize limits leave it, calls and cost


def run_cell(
    plan: ExperimentPlan, cell: Cell, sets: dict[str, list], baseline: dict[str, Any], least: int | None = None
) -> dict[str, Any]:
    """Optimize on train / validation within what the experiment's budget leaves after judging the test examples
    (as many calls as the baseline's judging took), then judge the result on them; the cell's row (written). A cell
    whose optimizer needs more than that (`least`: the calls it makes at the least) is not started. A user's mistake
    (ConfigError) stops the experiment; any other failure is this cell's, and the grid goes on."""
    allowance = _allowance(plan, cell, baseline, least)
    if isinstance(allowance, dict):  # the row of a cell not started
        return allowance
    cell_dir = plan.out / "cells" / cell.id
    row = cell_row(plan, cell, baseline["key"])
    cfg = _run_config(plan, cell, allowance)
    started = time.monotonic()
    part = f"cell:{cell.id}"
    try:
        res = _optimize(plan, cell, cfg, sets, allowance)
        scored = score(plan, cfg, res.program, sets["test"], baseline["key"], f"{part}:test")
        if plan.check is not None:
            program = str(res.program_path)
            row["synthesis"] = synthesis_check(plan, cfg, program, cell_dir / "synthesis", f"{part}:synthesis")
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - one cell's failure (a budget, a provider, MLflow) leaves the grid going
        row.update(_failure(plan, cell, err, allowance), **_spent(plan, cell, started))
        cell_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cell_dir / "cell.json", row)
        log.warning("warning: experiment: cell %s stopped: %s", cell.id, row["error"])
        log.debug("the cell's failure", exc_info=True)
        return row
    row.update(
        status="done",
        val_before=res.score_before,
        val_after=res.score_after,
        kept=res.kept,
        kept_reason=res.kept_reason,
        program=str(res.program_path),
        mlflow_run_id=res.mlflow_run_id,
        model_uri=res.model_uri,
        test_mean=scored["mean"],
        test_n=scored["n"],
        scores=scored["scores"],
        groups=scored["groups"],
        program_failures=scored["program_failures"],
        judge_failures=scored["judge_failures"],
        last_error=scored["last_error"],
        **_spent(plan, cell, started),
    )
    write_json_atomic(cell_dir / "cell.json", row)
    return row


def _allowance(
    plan: ExperimentPlan, cell: Cell, baseline: dict[str, Any], least: int | None
) -> _Allowance | dict[str, Any]:
    """What the cell may spend optimizing, or the row of a cell that cannot start within it: nothing left once the
    judging of its test examples is kept aside, or less than its optimizer needs at the least (`least`)."""
    cfg, spend, bkey = plan.configs[cell.id], plan.spend, baseline["key"]
    judging = baseline.get("usage") or {}
    try:
        calls, cost = left_to_spend(spend.ledger, f"cell {cell.id}")
    except BudgetStop as err:
        return unstarted(plan, cell, bkey, str(err))
    opt_calls = None if calls is None else calls - int(judging.get("calls") or 0)
    opt_cost = None if cost is None else cost - float(judging.get("cost_usd") or 0.0)
    before = spend.part(f"cell:{cell.id}:optimize")  # its optimization's calls and cost in earlier invocations
    calls_from, cost_from = cell_limits(spend.ledger, judging, cfg, before, opt_calls, opt_cost)
    own = own_left(cfg, before)
    usable = lesser(own[0], opt_calls)
    paid = int(before.get("calls") or 0)
    why = None
    if (own[0] is not None and own[0] < 1) or (own[1] is not None and own[1] <= 0):
        why = (
            f"its optimize limits (optimize.max_calls = {cfg.optimize.max_calls}, optimize.max_cost_usd = "
            f"{cfg.optimize.max_cost_usd}) are spent: its earlier invocations paid "
            f"{amounts_text(before.get('calls', 0), before.get('cost_usd'))}; raise them and run the same command"
        )
    elif (opt_calls is not None and opt_calls < 1) or (opt_cost is not None and opt_cost <= 0):
        why = (
            f"experiment.max_calls / max_cost_usd leave {amounts_text(calls, cost)}, and judging its test examples "
            f"takes {amounts_text(judging.get('calls', 0), judging.get('cost_usd'))} (what the baseline's took); raise "
            "experiment.max_calls / max_cost_usd and run the same command"
        )
    elif usable is not None and least is not None and least - paid > usable:
        # (what an earlier invocation of the cell paid is in the cache: it is not paid again)
        why = (
            f"its optimizer needs {least - paid} calls at least, and {calls_from.field} "
            f"{calls_from.note or f'= {usable}'} leaves it {usable}; raise {calls_from.field} and run the same command"
        )
    if why is None:
        return _Allowance(opt_calls, opt_cost, calls_from, cost_from, own)
    row = unstarted(plan, cell, bkey, why)
    if calls_from is not None and calls_from.field == "optimize.max_calls" and least is not None:
        row["stopped_by"] = f"optimize.max_calls = {cfg.optimize.max_calls}"
    log.warning("warning: experiment: cell %s %s", cell.id, row["error"])
    return row


def _run_config(plan: ExperimentPlan, cell: Cell, allowance: _Allowance) -> Config:
    """The cell's config as its optimization runs it: in its own dir, its optimize limits lowered to what the
    experiment leaves it where that is less."""
    cfg, cell_dir = plan.configs[cell.id], plan.out / "cells" / cell.id
    data = cfg.model_dump(mode="json")
    data["optimize"]["out"] = str(cell_dir / "optimize")
    data["optimize"]["max_calls"] = lesser(allowance.own[0], allowance.calls)
    data["optimize"]["max_cost_usd"] = lesser(allowance.own[1], allowance.cost)
    data["run"]["dir"] = str(cell_dir)
    return Config.model_validate(data)


def _optimize(
    plan: ExperimentPlan, cell: Cell, cfg: Config, sets: dict[str, list], allowance: _Allowance
) -> OptimizeResult:
    """`optimize` (with `cfg`, the cell's run config) on train / validation, on a ledger of the cell's limits whose
    spending the experiment's records as it goes."""
    # the cell's own optimize limits and what the experiment leaves, whichever is less (folded into cfg)
    ledger = CallBudget(
        cfg.optimize.max_calls,
        cfg.optimize.max_cost_usd,
        calls_from=allowance.calls_from,
        cost_from=allowance.cost_from,
    )
    with plan.spend.live(f"cell:{cell.id}:optimize", ledger) as budget:
        res = optimize(
            cfg, teacher=plan.teacher, judge=plan.judge, trainset=sets["train"], valset=sets["val"], budget=budget
        )
    log.info(
        "experiment: cell %s: optimized (validation %.4f -> %.4f (0-1), %d LM calls); judging its %d test examples",
        cell.id,
        res.score_before,
        res.score_after,
        int(res.usage.get("calls") or 0),
        len(sets["test"]),
    )
    return res


def _failure(plan: ExperimentPlan, cell: Cell, err: Exception, allowance: _Allowance) -> dict[str, Any]:
    """How a cell stopped: failed, or stopped by a budget (and by its own optimize limit, when that was the one)."""
    budget = isinstance(err, BudgetStop) or getattr(err, "budget_stop", None) is not None
    # a stop of ours is said whole (a sentence and what the command spent); another error's line is cut short
    said = first_line(err, limit=2000 if isinstance(err, RefedError) else 300)
    out = {"status": "budget" if budget else "failed", "error": f"{type(err).__name__}: {said}"}
    if budget and not isinstance(err, BudgetStop):  # its optimization's ledger, not the test judging's
        tripped = getattr(err, "budget_stop", None) or ""
        own = plan.configs[cell.id].optimize  # its own limits, before what it paid and the experiment's were folded in
        caps = (own.max_calls, own.max_cost_usd)
        mine = own_limit_that_stopped(tripped, caps, allowance.own, (allowance.calls, allowance.cost))
        if mine:
            out["stopped_by"] = mine
    return out


def _spent(plan: ExperimentPlan, cell: Cell, started: float) -> dict[str, Any]:
    """What a cell spent over every invocation (a cell finished on a resume paid part of it before: this one's alone
    is in its optimization's usage), in all, optimizing and judging its test examples, and its wall time."""
    part = f"cell:{cell.id}"
    return {
        "usage": plan.spend.of(part),
        "optimize_usage": plan.spend.part(f"{part}:optimize"),
        "eval_usage": plan.spend.part(f"{part}:test"),
        "wall_s": round(time.monotonic() - started, 3),
    }


def score(
    plan: ExperimentPlan, cfg: Config, program: dspy.Module, test: list[dspy.Example], key: str, part: str
) -> dict[str, Any]:
    """Judge `program` (run with `cfg`'s LMs, or those handed in) on the test examples: per-example scores (by example
    key), with each example's reference, their mean, and the calls paid (recorded as `part` of the experiment's
    spending; BudgetStop when judging them all would pass what the experiment may still spend). The judging of a
    baseline and of its cells shares one run cache (`evals/<key>`, the baseline's key)."""
    spend, teacher, judge = plan.spend, plan.teacher, plan.judge
    use_run_cache(RunDir(plan.out / "evals" / key))
    calls_from, cost_from = experiment_limits(spend.ledger, "the judging of the test examples")
    budget = CallBudget(*left_to_spend(spend.ledger, part), calls_from=calls_from, cost_from=cost_from)
    t, j = held_lm(cfg.teacher, "teacher", teacher), held_lm(cfg.judge, "judge", judge)
    cfg = with_lm_of(with_lm_of(cfg, "teacher", t), "judge", j) if teacher is not None or judge is not None else cfg
    t.attach_budget(budget, "teacher", price_of(cfg.teacher))
    j.attach_budget(budget, "judge", price_of(cfg.judge))
    metric = make_metric(cfg, cfg.optimize.target, judge=j)
    with spend.live(part, budget):
        try:
            mean, rows, errors = evaluate_detailed(
                program, test, metric, t, cfg.optimize.num_threads, adapter=build_adapter(cfg.teacher)
            )
        except KeyboardInterrupt:  # a signal: the calls in flight reached the provider, and are paid
            budget.close("the experiment was stopped by a signal")
            raise
    if budget.tripped:  # a refused call scored its example 0: the mean would be wrong, so there is none
        raise BudgetStop(f"judging the test examples stopped: {budget.tripped}", budget.as_dict())
    return {
        "mean": mean,
        "n": len(rows),
        "scores": {example_key(ex): value for ex, _, value in rows},
        "groups": {example_key(ex): str(ex.get("reference_id") or example_key(ex)) for ex, _, _ in rows},
        "program_failures": sum(1 for _, pred, _ in rows if pred is None),
        "judge_failures": metric.failure_summary()["failed"],
        "last_error": errors[-1] if errors else None,
        "usage": budget.as_dict(),
    }


def synthesis_check(plan: ExperimentPlan, cfg: Config, program: str | None, run_dir: Path, part: str) -> dict[str, Any]:
    """A synthesis run of experiment.synthesize samples on the test references driven by `program` (a program.json;
    None: the built-in one), judged: its judged mean, each sample's judged score, and what it cost (recorded as `part`
    of the experiment's spending; BudgetStop past what the experiment may still spend)."""
    references, size = plan.check
    spend, teacher, judge = plan.spend, plan.teacher, plan.judge
    data = cfg.model_dump(mode="json")
    data["run"]["dir"] = str(run_dir)
    data["synthesis"].update(size=size, program=program, mode="online")
    data["judging"]["mode"] = "online"
    data["tracking"]["enabled"] = False
    calls, cost = left_to_spend(spend.ledger, part)
    data["synthesis"]["max_calls"] = lesser(cfg.synthesis.max_calls, calls)
    data["synthesis"]["max_cost_usd"] = lesser(cfg.synthesis.max_cost_usd, cost)
    syn_config = Config.model_validate(data)
    summary = run_sync(arun_synthesis(syn_config, teacher=teacher, references=references, on_mismatch="error"))
    spent = summary.get("usage") or {}
    spend.set_total(f"{part}:synthesize", spent, "teacher")
    if summary.get("status") == "budget":
        raise BudgetStop(f"the synthesis check into {run_dir} stopped at the experiment's budget", spent)
    calls, cost = left_to_spend(spend.ledger, part)
    data["judging"]["max_calls"] = lesser(cfg.judging.max_calls, calls)
    data["judging"]["max_cost_usd"] = lesser(cfg.judging.max_cost_usd, cost)
    judged = judge_run(run_dir, Config.model_validate(data), judge=judge)
    spend.set_total(f"{part}:judge", judged.get("usage"), "judge")
    usage = total_of([spent, judged.get("usage") or {}])
    if judged.get("status") == "budget":
        raise BudgetStop(f"judging the synthesis check in {run_dir} stopped at the experiment's budget", usage)
    rd = RunDir(run_dir)
    scores = [float(row["pointwise"]["overall"]) for row in read_jsonl(rd.judgments) if row.get("pointwise")]
    return {"mean": judged.get("mean_score"), "samples": summary.get("samples"), "scores": scores, "usage": usage}
