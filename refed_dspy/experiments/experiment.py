"""`refed experiment`: a grid of optimization runs judged on held-out references, against the uncompiled program.

1. The references are split once, by reference and seeded, into train / validation / test (split.json); the test
   references are never shown to an optimizer. Examples of the respond target come from one refed synthesis over
   all references (`<out>/examples`) and follow their reference's side; the other targets' examples are the
   references themselves.
2. Before any call: the power check (the smallest difference the test set detects at the cells' simultaneous level
   with 80% power, against `min_effect`; whether there are test references enough for any difference to be
   significant), the estimate of every part's LM calls, and the cells whose estimate passes their own limit.
3. Each cell (grid values x repeats, optimize.seed + repeat) runs `optimize` on train / validation into
   `<out>/cells/<id>/optimize`, then its program and the uncompiled program of the same target, teacher and judge
   (the baseline, scored once per such combination) are judged on the same test examples. The paired difference
   gets a bootstrap interval at level 1 - (1 - level) / cells (Bonferroni: no cell is called better by chance
   because the grid is large). With `synthesize = N`, each program (and each baseline) also drives a synthesis run
   of N samples on the test references, judged; the two runs' means are compared with an unpaired interval. A
   finished cell is written to `<out>/cells/<id>/cell.json` and not run again.
4. One ledger (a CallBudget) holds what the experiment spent: a cell that no longer fits `max_calls` /
   `max_cost_usd` (its optimization plus what its baseline's judging cost) is not started.
5. experiment.json, experiment.md and experiment.html hold the leaderboard (best test score first); the champion is
   the best cell whose difference is significant. With tracking on: a parent MLflow run, the cells' optimize runs
   nested under it, and the champion's program registered under an alias (refed_dspy.tracking.mlflow_runs).

Every part shares one DSPy cache (`<out>/cache/<endpoints>/`: the examples synthesis, the baselines, the cells'
optimizations and test scoring, the synthesis checks, and a resume): no request is paid twice, and a cell whose
program is the baseline's (its compiled program scored below the baseline on validation, or its optimizer gave it
back unchanged) gets the same answers, a difference of exactly 0. Cells whose LMs differ only in api_base keep
caches apart (DSPy's cache key ignores api_base).

The experiment reads top-down: its plan (plan.py: resolved once, the split pinned), what it says before
money is spent (preflight.py), its examples (plan.py), each baseline (below) and cell (cell.py: run on what
spend.py leaves of the budget, and judged), each cell against its baseline (below), and what it leaves (outputs.py:
the files, MLflow).

A baseline is the uncompiled program of a cell's target, teacher and judge, scored on the test examples once for
every cell that shares it (`baselines/<key>.json`).

A cell against its baseline is the paired difference on the test examples both were scored on (and the synthesis
checks' unpaired one), the cell's outcome in a few words, and the champion among the cells.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config
from refed_dspy.engine.progress import progress_within
from refed_dspy.experiments.cell import run_cell, score, synthesis_check, unstarted
from refed_dspy.experiments.config import Cell, baseline_key, cell_config, load_experiment
from refed_dspy.experiments.outputs import ExperimentResult, log_leaderboard, track, write_outputs
from refed_dspy.experiments.plan import ExperimentPlan, cache_dir, check_given_lms, experiment_examples, plan_experiment
from refed_dspy.experiments.preflight import POWER, preflight, reestimate
from refed_dspy.experiments.spend import BudgetStop, own_limit_that_stopped
from refed_dspy.experiments.stats import (
    detectable_difference,
    paired_difference,
    significantly_better,
    smallest_test,
    unpaired_difference,
)
from refed_dspy.launch.plan import served
from refed_dspy.optimizers.plan import target_program
from refed_dspy.optimizers.run import LIBRARY_LOG
from refed_dspy.runtime.quiet import quieted
from refed_dspy.runtime.stops import stop_signals
from refed_dspy.store.cache import shared_cache
from refed_dspy.store.jsonl import read_json, write_json_atomic
from refed_dspy.store.ownership import owned
from refed_dspy.store.records import Reference
from refed_dspy.store.seeds import given_references
from refed_dspy.tracking.mlflow_runs import experiment_run

__all__ = ["POWER", "BudgetStop", "cache_dir", "experiment", "own_limit_that_stopped"]

log = logging.getLogger(__name__)


def experiment(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    teacher: dspy.BaseLM | None = None,
    judge: dspy.BaseLM | None = None,
    references: list[Reference] | None = None,
    verbose: bool = False,
) -> ExperimentResult:
    """Run (or resume) the experiment of the file `path`; `refed experiment` from Python.

    Args:
        path: a run config with an `[experiment]` table (its `base`, another config, is read relative to it).
        overrides: `section.key=value` strings, as `--set` takes them; they apply to the experiment table too
            (`experiment.repeats=3`).
        teacher: a dspy.BaseLM to use in every cell instead of building one from [teacher] (the grid may not vary
            the teacher then).
        judge: the same for the judge.
        references: the references to use instead of reading [seeds].
        verbose: show what DSPy, its optimizers and MLflow print; by default it goes to `<experiment.out>/dspy.log`.

    Returns:
        The leaderboard, also written to experiment.json, .md and .html in `experiment.out`, with each cell's test
            score and its difference to the baseline with an interval, and the champion.

    Raises:
        ConfigError: the file, its `[experiment]` table or its base config is unusable (before any call).
        RefedError: what `synthesize` and `optimize` raise for a run of the experiment (its examples, a cell); the
            experiment resumes from the runs it finished.
    """
    settings, base = load_experiment(path, overrides)
    lms = {"teacher": teacher, "judge": judge}
    check_given_lms(settings, base, lms)
    out = Path(settings.out)
    # [local] serve = true: the local model the base config's LMs need is started when nothing serves it
    base_config = cell_config(base, {})
    local = {role: getattr(base_config, role) for role, lm in lms.items() if lm is None}
    with (
        stop_signals(),
        owned(out, "experiment", "refed experiment", flag="experiment.out"),
        served(base_config.local, local),
        quieted(out / LIBRARY_LOG, verbose),
        progress_within("experiment"),  # the lines of its examples and baselines' runs say whose they are
    ):
        started = time.monotonic()
        return _ExperimentRun(plan_experiment(settings, base, lms, given_references(references)), started).run()


class _ExperimentRun:
    """One invocation of a planned experiment: its estimate and examples, each baseline scored once, each cell run
    (unless it finished before) and compared with its baseline, the result tracked and written."""

    def __init__(self, plan: ExperimentPlan, started: float):
        self.plan = plan
        self.started = started
        self.estimate: dict[str, Any] = {}
        self.examples: dict[str, dict[str, list]] = {}  # target -> side -> examples
        self.baselines: dict[str, dict[str, Any]] = {}  # baseline key -> its row

    def run(self) -> ExperimentResult:
        plan = self.plan
        self.estimate = preflight(plan)
        self.examples = experiment_examples(plan)
        self.estimate = reestimate(plan, self.estimate, self.examples)
        split = {k: len(v) for k, v in plan.sides.items()}
        params = {"experiment": plan.settings.model_dump(mode="json"), "split": split}
        with experiment_run(plan.base_config, plan.out, params) as parent:
            rows = [self._cell(i, cell) for i, cell in enumerate(plan.grid, 1)]
            rows.sort(key=lambda r: (r.get("test_mean") is None, -(r.get("test_mean") or 0.0)))
            champion = champion_of(rows)
            result = self._result(rows, champion)
            if parent is not None:
                track(result, champion, plan.settings, parent)
        paths = write_outputs(result, plan.base)
        if result.mlflow_run_id:
            log_leaderboard(plan.base_config.tracking.mlflow_uri, result.mlflow_run_id, paths)
        return result

    def _cell(self, i: int, cell: Cell) -> dict[str, Any]:
        """The row of the `i`-th cell: its baseline scored first (once per key), then, unless it finished before, the
        cell run; compared with its baseline."""
        plan = self.plan
        cfg = plan.configs[cell.id]
        sets = self.examples[cfg.optimize.target]
        bkey = baseline_key(cfg)
        with shared_cache(plan.cache(cfg)):
            if bkey not in self.baselines:
                self.baselines[bkey] = run_baseline(plan, cfg, bkey, sets["test"])
            row = read_json(plan.out / "cells" / cell.id / "cell.json")
            ran = row.get("status") != "done" and self.baselines[bkey].get("status") == "done"
            if ran:
                log.info(
                    "experiment: cell %d of %d: %s: optimizing (about %d LM calls)",
                    i,
                    len(plan.grid),
                    cell.label,
                    self.estimate["optimize"][cell.id],
                )
                with progress_within(f"cell {i} of {len(plan.grid)} ({cell.label})"):
                    row = run_cell(plan, cell, sets, self.baselines[bkey], self.estimate["least"][cell.id])
            elif row.get("status") != "done":
                row = unstarted(plan, cell, bkey, "its baseline could not be scored within the budget")
        row.update(against_baseline(row, self.baselines[bkey], plan))
        if ran and row.get("status") == "done":
            log.info("experiment: cell %d of %d: %s: %s", i, len(plan.grid), cell.label, outcome(row))
        return row

    def _result(self, rows: list[dict[str, Any]], champion: dict[str, Any] | None) -> ExperimentResult:
        """What the experiment returns and experiment.json holds: the leaderboard (`rows`, best test score first), the
        baselines, the champion, the power figures, the estimate and what it spent."""
        plan, settings = self.plan, self.plan.settings
        per_target = {target: {side: len(v) for side, v in sets.items()} for target, sets in self.examples.items()}
        sizes = next(iter(per_target.values()))
        detectable = detectable_difference(smallest_test(per_target), settings.assumed_sd, plan.cell_level, POWER)
        statuses = {r.get("status") for r in rows} | {b.get("status") for b in self.baselines.values()}
        return ExperimentResult(
            name=settings.name,
            status="complete" if statuses == {"done"} else ("budget" if "budget" in statuses else "failed"),
            out=str(plan.out),
            split={side: len(refs) for side, refs in plan.sides.items()},
            examples=sizes,
            level=settings.level,
            cell_level=round(plan.cell_level, 6),
            detectable=round(detectable, 4),
            underpowered=detectable > settings.min_effect,
            cells=rows,
            baselines=[{k: v for k, v in b.items() if k != "scores"} for b in self.baselines.values()],
            champion=champion["id"] if champion else None,
            estimate=self.estimate,
            usage=plan.spend.total(),
            wall_s=round(time.monotonic() - self.started, 3),
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )


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
    row: dict[str, Any] = {"key": key, "target": cfg.optimize.target, "teacher": plan.model("teacher", cfg)}
    row["judge"] = plan.model("judge", cfg)
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


def outcome(row: dict[str, Any]) -> str:
    """A finished cell in a few words: its test score against its baseline, or that it kept it, and its calls."""
    calls = (row.get("usage") or {}).get("calls", 0)
    if row.get("kept") == "baseline":
        return f"kept baseline ({row.get('kept_reason') or 'the optimizer changed nothing'}); {calls} LM calls"
    d = row.get("difference") or {}
    versus = f", {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] against its baseline" if d else ""
    return f"test score {row.get('test_mean', 0.0):.4f} (0-1){versus}; {calls} LM calls"


def against_baseline(row: dict[str, Any], baseline: dict[str, Any], plan: ExperimentPlan) -> dict:
    """The cell's paired difference to its baseline on the test examples both were scored on, at each cell's level."""
    level, settings = plan.cell_level, plan.settings
    if row.get("status") != "done":
        return {"difference": None}
    keys = [k for k in row["scores"] if k in baseline["scores"]]
    if not keys:
        return {"difference": None}
    groups = row.get("groups") or {}
    diff = paired_difference(
        [row["scores"][k] for k in keys],
        [baseline["scores"][k] for k in keys],
        level=level,
        resamples=settings.resamples,
        seed=settings.seed,
        groups=[groups.get(k, k) for k in keys],  # examples of one reference are resampled together
    )
    out = {"baseline_mean": baseline["test_mean"], "difference": diff.as_dict()}
    mine, theirs = (row.get("synthesis") or {}).get("scores"), (baseline.get("synthesis") or {}).get("scores")
    if mine and theirs:  # different samples on each side: the two runs' means, each resampled on its own
        syn = unpaired_difference(mine, theirs, level=level, resamples=settings.resamples, seed=settings.seed)
        out["synthesis_difference"] = syn.as_dict()
    return out


def champion_of(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The champion: the best on validation among the cells that beat their baseline on the test set, so that its test
    score is not the maximum of several noisy ones (None: no cell did)."""
    winners = [r for r in rows if significantly_better(r.get("difference"))]
    return max(winners, key=lambda r: (r.get("val_after") or 0.0, r["test_mean"]), default=None)
