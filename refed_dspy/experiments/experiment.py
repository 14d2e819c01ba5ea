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
   nested under it, and the champion's program registered under an alias (refed_dspy.tracking.experiment_runs).

Every part shares one DSPy cache (`<out>/cache/<endpoints>/`: the examples synthesis, the baselines, the cells'
optimizations and test scoring, the synthesis checks, and a resume): no request is paid twice, and a cell whose
program is the baseline's (its compiled program scored below the baseline on validation, or its optimizer gave it
back unchanged) gets the same answers, a difference of exactly 0. Cells whose LMs differ only in api_base keep
caches apart (DSPy's cache key ignores api_base).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.clients.lm import require_price
from refed_dspy.config import Config
from refed_dspy.engine.budget import CallBudget
from refed_dspy.errors import ConfigError
from refed_dspy.experiments.allowance import BudgetStop, own_limit_that_stopped
from refed_dspy.experiments.baseline import _baseline
from refed_dspy.experiments.cell import _run_cell, _unstarted
from refed_dspy.experiments.difference import _compare, _outcome
from refed_dspy.experiments.estimate import estimate_experiment
from refed_dspy.experiments.experiment_config import ExperimentSettings, cell_config, load_experiment
from refed_dspy.experiments.experiment_examples import _examples
from refed_dspy.experiments.experiment_outputs import _log_leaderboard, _programs, _track
from refed_dspy.experiments.experiment_page import render_page
from refed_dspy.experiments.experiment_plan import _check_finished_cells, _check_pinned, cache_dir
from refed_dspy.experiments.experiment_result import ExperimentResult
from refed_dspy.experiments.grid import Cell, cells
from refed_dspy.experiments.keys import baseline_key, example_key
from refed_dspy.experiments.leaderboard import HEADER, experiment_markdown, leaderboard_rows
from refed_dspy.experiments.optimize import LIBRARY_LOG
from refed_dspy.experiments.preflight import POWER, _budget_warnings, _cells_text, _power_warnings, _sizes_text
from refed_dspy.experiments.spend import Spend, total_of
from refed_dspy.experiments.stats import detectable_difference, significantly_better
from refed_dspy.quiet import quieted
from refed_dspy.stops import stop_signals
from refed_dspy.store.cache import shared_cache
from refed_dspy.store.jsonl import read_json, write_json_atomic, write_text_atomic
from refed_dspy.store.ownership import owned
from refed_dspy.store.records import Reference
from refed_dspy.store.seeds import read_references
from refed_dspy.store.split import interleaved, split_three
from refed_dspy.synthesis.provenance import with_lm_of
from refed_dspy.tracking.experiment_runs import experiment_run

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
    """Run (or resume) the experiment of the file `path` (a run config with an `[experiment]` table); `teacher` and
    `judge` replace the LMs the config builds, in every cell (the grid may not vary them then). What DSPy, its
    optimizers and MLflow print goes to `<experiment.out>/dspy.log` unless `verbose`."""
    settings, base = load_experiment(path, overrides)
    base_config = cell_config(base, {})
    grid = cells(settings.grid, settings.repeats)
    for role, lm in (("teacher", teacher), ("judge", judge)):
        varied = [p for p in settings.grid if p == role or p.startswith(f"{role}.")]
        if lm is not None and varied:
            raise ConfigError(f"{role}= is given, so the grid cannot vary {', '.join(varied)}")
    if settings.max_cost_usd is not None:  # before any call: every LM that will spend the budget needs a price
        for cell in grid:
            cfg = cell_config(base, cell.overrides(0))
            for role, spec, given in (("teacher", cfg.teacher, teacher), ("judge", cfg.judge, judge)):
                used = spec if given is None else getattr(with_lm_of(cfg, role, given), role)
                require_price(used, role, "experiment.max_cost_usd")
    out = Path(settings.out)
    with (
        stop_signals(),
        owned(out, "experiment", "refed experiment", flag="experiment.out"),
        quieted(out / LIBRARY_LOG, verbose),
    ):
        return _run(settings, base, base_config, grid, out, teacher, judge, references)


def _run(
    settings: ExperimentSettings,
    base: dict[str, Any],
    base_config: Config,
    grid: list[Cell],
    out: Path,
    teacher: Any,
    judge: Any,
    references: list[Reference] | None,
) -> ExperimentResult:
    started = time.monotonic()
    if references is None:
        seeds = base_config.seeds
        references, _ = read_references(seeds.source, seeds.format, seeds.split, seeds.limit)
    train_refs, val_refs, test_refs = split_three(
        references, settings.test_fraction, settings.val_fraction, settings.seed, key=lambda r: r.id
    )
    sides = {"train": train_refs, "val": val_refs, "test": test_refs}
    if not all(sides.values()):
        raise ConfigError(
            f"{len(references)} references split into {len(train_refs)} train, {len(val_refs)} validation and "
            f"{len(test_refs)} test: every side needs at least one (more references, or other fractions)"
        )
    _check_pinned(out / "split.json", {side: sorted(r.id for r in refs) for side, refs in sides.items()})
    _check_finished_cells(grid, base, out)
    cell_level = 1 - (1 - settings.level) / max(1, len(grid))
    refs = {side: len(v) for side, v in sides.items()}
    estimate = estimate_experiment(grid, base, settings, refs)
    expected_test = next(iter(estimate["sizes"].values()))["test"]
    _power_warnings(settings, len(grid), cell_level, expected_test, len(test_refs))
    ledger = CallBudget(settings.max_calls, settings.max_cost_usd)  # the whole experiment's calls and cost
    spend = Spend(out / "spent.json", ledger)  # what earlier invocations spent, by part
    log.info(
        "experiment: %d %s; about %d LM calls in all before any is made (examples %d, baselines %d, cells: %s)",
        len(grid),
        "cell" if len(grid) == 1 else "cells",
        estimate["total"],
        estimate["examples"],
        estimate["baselines"],
        _cells_text(grid, estimate),
    )
    _budget_warnings(settings, grid, base, estimate)
    examples = {}
    # the examples synthesis takes references side by side: should it reach its size early, every side has some
    ordered = interleaved([test_refs, val_refs, train_refs])
    for target in sorted({cell_config(base, c.overrides(0)).optimize.target for c in grid}):
        with shared_cache(cache_dir(out, base_config, teacher, judge)):
            exs = _examples(target, settings, base_config, out, teacher, ordered, spend)
        examples[target] = {
            side: [e for e in exs if e.reference_id in {r.id for r in refs}] for side, refs in sides.items()
        }
        _check_pinned(
            out / f"examples-{target}.json",
            {side: sorted(example_key(e) for e in v) for side, v in examples[target].items()},
        )
        if not examples[target]["test"] or not examples[target]["train"] or not examples[target]["val"]:
            raise ConfigError(
                f"target {target}: the examples split into "
                + ", ".join(f"{len(v)} {k}" for k, v in examples[target].items())
                + ": every side needs at least one (raise experiment.examples)"
            )
    made = {target: {side: len(v) for side, v in sets.items()} for target, sets in examples.items()}
    if made != estimate["sizes"]:  # the cells are estimated again on the examples as they came out
        assumed = estimate["sizes"]
        estimate = {**estimate_experiment(grid, base, settings, refs, made), "examples": estimate["examples"]}
        estimate["total"] = estimate["examples"] + estimate["baselines"] + sum(estimate["cells"].values())
        n_test = next(iter(made.values()))["test"]
        log.info(
            "experiment: the examples came out %s (the estimate assumed %s): %d test examples detect differences of "
            "%.3f or more; the cells now take about %s LM calls (%s)",
            _sizes_text(made),
            _sizes_text(assumed),
            n_test,
            detectable_difference(n_test, settings.assumed_sd, cell_level, POWER),
            sum(estimate["cells"].values()),
            _cells_text(grid, estimate),
        )
    check = (test_refs, settings.synthesize) if settings.synthesize else None
    params = {"experiment": settings.model_dump(mode="json"), "split": {k: len(v) for k, v in sides.items()}}
    with experiment_run(base_config, out, params) as parent:
        rows, baselines = [], {}
        for i, cell in enumerate(grid, 1):
            cfg = cell_config(base, cell.overrides(base_config.optimize.seed))
            sets = examples[cfg.optimize.target]
            bkey = baseline_key(cfg)
            with shared_cache(cache_dir(out, cfg, teacher, judge)):
                if bkey not in baselines:
                    baselines[bkey] = _baseline(cfg, bkey, sets["test"], out, teacher, judge, spend, check)
                row = read_json(out / "cells" / cell.id / "cell.json")
                ran = row.get("status") != "done" and baselines[bkey].get("status") == "done"
                if ran:
                    log.info(
                        "experiment: cell %d of %d: %s: optimizing (about %d LM calls)",
                        i,
                        len(grid),
                        cell.label,
                        estimate["optimize"][cell.id],
                    )
                    least = estimate["least"][cell.id]
                    row = _run_cell(cell, cfg, sets, out, teacher, judge, baselines[bkey], spend, check, least)
                elif row.get("status") != "done":
                    row = _unstarted(cell, cfg, bkey, "its baseline could not be scored within the budget")
            row.update(_compare(row, baselines[bkey], cell_level, settings))
            if ran and row.get("status") == "done":
                log.info("experiment: cell %d of %d: %s: %s", i, len(grid), cell.label, _outcome(row))
            rows.append(row)
        rows.sort(key=lambda r: (r.get("test_mean") is None, -(r.get("test_mean") or 0.0)))
        # the champion is chosen on validation among the cells that beat their baseline on the test set, so that its
        # test score is not the maximum of several noisy ones
        winners = [r for r in rows if significantly_better(r.get("difference"))]
        champion = max(winners, key=lambda r: (r.get("val_after") or 0.0, r["test_mean"]), default=None)
        n_test = len(next(iter(examples.values()))["test"])
        detectable = detectable_difference(n_test, settings.assumed_sd, cell_level, POWER)
        statuses = {r.get("status") for r in rows} | {b.get("status") for b in baselines.values()}
        result = ExperimentResult(
            name=settings.name,
            status="complete" if statuses == {"done"} else ("budget" if "budget" in statuses else "failed"),
            out=str(out),
            split={side: len(refs) for side, refs in sides.items()},
            examples={side: len(v) for side, v in next(iter(examples.values())).items()},
            level=settings.level,
            cell_level=round(cell_level, 6),
            detectable=round(detectable, 4),
            underpowered=detectable > settings.min_effect,
            cells=rows,
            baselines=[{k: v for k, v in b.items() if k != "scores"} for b in baselines.values()],
            champion=champion["id"] if champion else None,
            estimate=estimate,
            usage=total_of([ledger.totals.as_dict()]),
            wall_s=round(time.monotonic() - started, 3),
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if parent is not None:
            _track(result, champion, settings, parent)
    json_path, md_path, page_path = out / "experiment.json", out / "experiment.md", out / "experiment.html"
    result.json_file, result.markdown_file, result.page_file = str(json_path), str(md_path), str(page_path)
    write_json_atomic(json_path, result.model_dump(mode="json", by_alias=True))
    write_text_atomic(md_path, experiment_markdown(result))
    write_text_atomic(page_path, render_page(result, HEADER, leaderboard_rows(result), _programs(result, base)))
    if result.mlflow_run_id:
        _log_leaderboard(result.mlflow_run_id, [json_path, md_path, page_path])
    return result
