"""A baseline: the uncompiled program of a cell's target, teacher and judge, scored on the test examples once for
every cell that shares it (`baselines/<key>.json`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from refed_dspy.config import Config
from refed_dspy.experiments.budget_left import BudgetStop
from refed_dspy.experiments.plan import ExperimentPlan
from refed_dspy.experiments.scoring import score, synthesis_check
from refed_dspy.optimizers.plan import target_program
from refed_dspy.store.jsonl import read_json, write_json_atomic

log = logging.getLogger(__name__)


def run_baseline(plan: ExperimentPlan, cfg: Config, key: str, test: list) -> dict[str, Any]:
    """The uncompiled program of the cell's target (`cfg`'s), judged on the test examples once per baseline key (and,
    with experiment.synthesize, driving a synthesis run on the test references); what it spends goes into the
    experiment's spending. Its row (written when done; a baseline the budget stopped says so)."""
    spend = plan.spend
    path = plan.out / "baselines" / f"{key}.json"
    done = read_json(path)
    if done.get("status") == "done":
        return done
    started = time.monotonic()
    row: dict[str, Any] = {"key": key, "target": cfg.optimize.target, "teacher": cfg.teacher.model}
    row["judge"] = cfg.judge.model
    part = f"baseline:{key}"
    try:
        scored = score(plan, cfg, target_program(cfg), test, key, f"{part}:test")
        if plan.check is not None:
            run_dir = plan.out / "baselines" / f"{key}-synthesis"
            row["synthesis"] = synthesis_check(plan, cfg, None, run_dir, f"{part}:synthesis")
    except BudgetStop as err:
        log.warning("warning: experiment: baseline %s: %s", key, err)
        return {**row, "status": "budget", "error": str(err), "test_mean": None, "scores": {}, "usage": spend.of(part)}
    row.update(
        status="done", test_mean=scored["mean"], **{k: v for k, v in scored.items() if k not in ("mean", "usage")}
    )
    row["usage"], row["eval_usage"] = spend.of(part), spend.part(f"{part}:test")
    row["wall_s"] = round(time.monotonic() - started, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, row)
    return row
