"""A baseline: the uncompiled program of a cell's target, teacher and judge, scored on the test examples once for
every cell that shares it (`baselines/<key>.json`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.experiments.allowance import BudgetStop
from refed_dspy.experiments.optimize import target_program
from refed_dspy.experiments.scoring import _score, _synthesis_check
from refed_dspy.experiments.spend import Spend
from refed_dspy.store.jsonl import read_json, write_json_atomic
from refed_dspy.store.records import Reference

log = logging.getLogger(__name__)


def _baseline(
    cfg: Config,
    key: str,
    test: list,
    out: Path,
    teacher: Any,
    judge: Any,
    spend: Spend,
    check: tuple[list[Reference], int] | None,
) -> dict[str, Any]:
    """The uncompiled program of the cell's target, judged on the test examples once per baseline key (and, with
    `check` = (test references, size), driving a synthesis run on them); what it spends goes into `spend`."""
    path = out / "baselines" / f"{key}.json"
    done = read_json(path)
    if done.get("status") == "done":
        return done
    started = time.monotonic()
    row: dict[str, Any] = {"key": key, "target": cfg.optimize.target, "teacher": cfg.teacher.model}
    row["judge"] = cfg.judge.model
    part = f"baseline:{key}"
    try:
        scored = _score(target_program(cfg), test, cfg, teacher, judge, out / "evals" / key, spend, f"{part}:test")
        if check is not None:
            run_dir = out / "baselines" / f"{key}-synthesis"
            row["synthesis"] = _synthesis_check(cfg, None, *check, run_dir, teacher, judge, spend, f"{part}:synthesis")
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
