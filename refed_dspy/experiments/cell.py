"""One cell of the grid: `optimize` on train / validation within what the experiment leaves it, then its program
judged on the test examples (`cells/<id>/cell.json`); or the row of a cell the budget left unstarted."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.engine.budget import CallBudget
from refed_dspy.errors import ConfigError, first_line
from refed_dspy.experiments.allowance import BudgetStop, _amounts, _cell_limits, _least, _left, own_limit_that_stopped
from refed_dspy.experiments.grid import Cell
from refed_dspy.experiments.keys import config_hash
from refed_dspy.experiments.optimize import optimize
from refed_dspy.experiments.scoring import _score, _synthesis_check
from refed_dspy.experiments.spend import Spend
from refed_dspy.store.jsonl import write_json_atomic
from refed_dspy.store.records import Reference

log = logging.getLogger(__name__)


def _cell_row(cell: Cell, cfg: Config, bkey: str) -> dict[str, Any]:
    return {
        "config_hash": config_hash(cfg),
        "id": cell.id,
        "label": cell.label,
        "values": cell.values,
        "repeat": cell.repeat,
        "seed": cfg.optimize.seed,
        "optimizer": cfg.optimize.optimizer,
        "target": cfg.optimize.target,
        "teacher": cfg.teacher.model,
        "baseline": bkey,
    }


def _unstarted(cell: Cell, cfg: Config, bkey: str, why: str) -> dict[str, Any]:
    """The row of a cell the budget left unstarted (run again with a larger budget, it starts)."""
    return {**_cell_row(cell, cfg, bkey), "status": "budget", "error": f"not started: {why}", "usage": {}}


def _run_cell(
    cell: Cell,
    cfg: Config,
    sets: dict[str, list],
    out: Path,
    teacher: Any,
    judge: Any,
    baseline: dict[str, Any],
    spend: Spend,
    check: tuple[list[Reference], int] | None = None,
    least: int | None = None,
) -> dict[str, Any]:
    """Optimize on train / validation within what the experiment's budget leaves after judging the test examples
    (as many calls as the baseline's judging took), then judge the result on them; the cell's row (written). A cell
    whose optimizer needs more than that (`least`: the calls it makes at the least) is not started. A user's mistake
    (ConfigError) stops the experiment; any other failure is this cell's, and the grid goes on."""
    cell_dir = out / "cells" / cell.id
    bkey = baseline["key"]
    row = _cell_row(cell, cfg, bkey)
    part = f"cell:{cell.id}"
    judging = baseline.get("usage") or {}
    try:
        calls, cost = _left(spend.ledger, f"cell {cell.id}")
    except BudgetStop as err:
        return _unstarted(cell, cfg, bkey, str(err))
    opt_calls = None if calls is None else calls - int(judging.get("calls") or 0)
    opt_cost = None if cost is None else cost - float(judging.get("cost_usd") or 0.0)
    calls_from, cost_from = _cell_limits(spend.ledger, judging, cfg, opt_calls, opt_cost)
    usable = _least(cfg.optimize.max_calls, opt_calls)
    paid = int(spend.part(f"{part}:optimize").get("calls") or 0)
    why = None
    if (opt_calls is not None and opt_calls < 1) or (opt_cost is not None and opt_cost <= 0):
        why = (
            f"experiment.max_calls / max_cost_usd leave {_amounts(calls, cost)}, and judging its test examples takes "
            f"{_amounts(judging.get('calls', 0), judging.get('cost_usd'))} (what the baseline's took); raise "
            "experiment.max_calls / max_cost_usd and run the same command"
        )
    elif usable is not None and least is not None and least - paid > usable:
        # (what an earlier invocation of the cell paid is in the cache: it is not paid again)
        why = (
            f"its optimizer needs {least - paid} calls at least, and {calls_from.field} "
            f"{calls_from.note or f'= {usable}'} leaves it {usable}; raise {calls_from.field} and run the same command"
        )
    if why is not None:
        row = _unstarted(cell, cfg, bkey, why)
        if calls_from is not None and calls_from.field == "optimize.max_calls" and least is not None:
            row["stopped_by"] = f"optimize.max_calls = {cfg.optimize.max_calls}"
        log.warning("warning: experiment: cell %s %s", cell.id, row["error"])
        return row
    own = (cfg.optimize.max_calls, cfg.optimize.max_cost_usd)  # before the experiment's leftovers are folded in
    data = cfg.model_dump(mode="json")
    data["optimize"]["out"] = str(cell_dir / "optimize")
    data["optimize"]["max_calls"] = _least(cfg.optimize.max_calls, opt_calls)
    data["optimize"]["max_cost_usd"] = _least(cfg.optimize.max_cost_usd, opt_cost)
    data["run"]["dir"] = str(cell_dir)
    cfg = Config.model_validate(data)
    started = time.monotonic()
    try:
        # the cell's own optimize limits and what the experiment leaves, whichever is less (folded in above)
        ledger = CallBudget(
            cfg.optimize.max_calls, cfg.optimize.max_cost_usd, calls_from=calls_from, cost_from=cost_from
        )
        with spend.live(f"{part}:optimize", ledger) as budget:
            res = optimize(cfg, teacher=teacher, judge=judge, trainset=sets["train"], valset=sets["val"], budget=budget)
        log.info(
            "experiment: cell %s: optimized (validation %.4f -> %.4f, %d LM calls); judging its %d test examples",
            cell.id,
            res.score_before,
            res.score_after,
            int(res.usage.get("calls") or 0),
            len(sets["test"]),
        )
        scored = _score(res.program, sets["test"], cfg, teacher, judge, out / "evals" / bkey, spend, f"{part}:test")
        if check is not None:
            program = str(res.program_path)
            syn = _synthesis_check(
                cfg, program, *check, cell_dir / "synthesis", teacher, judge, spend, f"{part}:synthesis"
            )
            row["synthesis"] = syn
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - one cell's failure (a budget, a provider, MLflow) leaves the grid going
        budget = isinstance(err, BudgetStop) or getattr(err, "budget_stop", None) is not None
        row.update(status="budget" if budget else "failed", error=f"{type(err).__name__}: {first_line(err)}")
        if budget and not isinstance(err, BudgetStop):  # its optimization's ledger, not the test judging's
            mine = own_limit_that_stopped(getattr(err, "budget_stop", None) or "", *own, opt_calls, opt_cost)
            if mine:
                row["stopped_by"] = mine
        row["usage"] = spend.of(part)
        row["optimize_usage"], row["eval_usage"] = spend.part(f"{part}:optimize"), spend.part(f"{part}:test")
        row["wall_s"] = round(time.monotonic() - started, 3)
        cell_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cell_dir / "cell.json", row)
        log.warning("warning: experiment: cell %s stopped: %s", cell.id, row["error"])
        log.debug("the cell's failure", exc_info=True)
        return row
    row.update(
        status="done",
        val_before=res.score_before,
        val_after=res.score_after,
        kept=res.extra.get("kept"),
        kept_reason=res.extra.get("kept_reason"),
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
        usage=spend.of(part),
        # over every invocation (a cell finished on a resume paid part of it before): this one's alone is in res.usage
        optimize_usage=spend.part(f"{part}:optimize"),
        eval_usage=spend.part(f"{part}:test"),
        wall_s=round(time.monotonic() - started, 3),
    )
    write_json_atomic(cell_dir / "cell.json", row)
    return row
