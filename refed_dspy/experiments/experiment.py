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

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.clients.boundary import bounded
from refed_dspy.clients.lm import build_lm, price_of, require_price
from refed_dspy.clients.local_serving import serving
from refed_dspy.config import Config
from refed_dspy.engine.budget import CallBudget, Limit
from refed_dspy.errors import ConfigError, FinishedShort, first_line
from refed_dspy.experiments.estimate import estimate_experiment
from refed_dspy.experiments.experiment_config import ExperimentSettings, cell_config, load_experiment
from refed_dspy.experiments.experiment_page import program_view, render_page
from refed_dspy.experiments.experiment_result import ExperimentResult
from refed_dspy.experiments.grid import Cell, cells
from refed_dspy.experiments.keys import LEGACY_THRESHOLD, baseline_key, config_hash, example_key, finished_hashes
from refed_dspy.experiments.leaderboard import HEADER, experiment_markdown, leaderboard_rows
from refed_dspy.experiments.optimize import LIBRARY_LOG, examples_config, optimize, target_program
from refed_dspy.experiments.spend import Spend, total_of
from refed_dspy.experiments.stats import (
    detectable_difference,
    least_units,
    paired_difference,
    significantly_better,
    unpaired_difference,
)
from refed_dspy.money import usd
from refed_dspy.optimizers.compile import evaluate_detailed
from refed_dspy.optimizers.examples import examples_from_run, reference_examples
from refed_dspy.optimizers.metrics import make_metric
from refed_dspy.quality.judge import judge_run
from refed_dspy.quiet import quieted
from refed_dspy.stops import stop_signals
from refed_dspy.store.cache import shared_cache, use_run_cache
from refed_dspy.store.jsonl import read_json, read_jsonl, write_json_atomic, write_text_atomic
from refed_dspy.store.ownership import owned
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import RunDir
from refed_dspy.store.seeds import read_references
from refed_dspy.store.split import interleaved, split_three
from refed_dspy.sync import run_sync
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.synthesis.provenance import with_lm_of
from refed_dspy.synthesis.shortfall import shortfall_cause
from refed_dspy.tracking.experiment_runs import (
    champion_model_name,
    champion_tags,
    experiment_run,
    log_cell,
    log_experiment,
    register_champion,
)
from refed_dspy.tracking.figures import usage_figures

log = logging.getLogger(__name__)
POWER = 0.8


class BudgetStop(FinishedShort):
    """The experiment's budget stopped a piece of it; `usage` says what that piece had spent."""

    def __init__(self, message: str, usage: dict[str, Any] | None = None):
        super().__init__(message)
        self.usage = usage or {}


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
    # [local] serve = true: the local model the base config's LMs need is started when nothing serves it
    local = {role: getattr(base_config, role) for role, lm in (("teacher", teacher), ("judge", judge)) if lm is None}
    with (
        stop_signals(),
        owned(out, "experiment", "refed experiment", flag="experiment.out"),
        serving(base_config.local, local),
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


def _outcome(row: dict[str, Any]) -> str:
    """A finished cell in a few words: its test score against its baseline, or that it kept it, and its calls."""
    calls = (row.get("usage") or {}).get("calls", 0)
    if row.get("kept") == "baseline":
        return f"kept baseline ({row.get('kept_reason') or 'the optimizer changed nothing'}); {calls} LM calls"
    d = row.get("difference") or {}
    versus = f", {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] against its baseline" if d else ""
    return f"test score {row.get('test_mean', 0.0):.4f} (0-1){versus}; {calls} LM calls"


def _cells_text(grid: list[Cell], estimate: dict[str, Any]) -> str:
    """Each cell's estimate with its optimization's range: "bootstrap-r0-9da64c 75 (optimizing 41, 30-52)"."""
    return ", ".join(
        f"{c.id} {estimate['cells'][c.id]} (optimizing {estimate['optimize'][c.id]}, "
        f"{estimate['least'][c.id]}-{estimate['most'][c.id]})"
        for c in grid
    )


def _sizes_text(sizes: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{target}: {n['train']} train / {n['val']} validation / {n['test']} test" for target, n in sizes.items()
    )


def _power_warnings(settings: ExperimentSettings, cells: int, cell_level: float, n_test: int, test_refs: int) -> None:
    """Before any call: whether about `n_test` test examples can detect experiment.min_effect, and whether
    `test_refs` test references can make any difference significant at each cell's level."""
    detectable = detectable_difference(n_test, settings.assumed_sd, cell_level, POWER)
    if detectable > settings.min_effect:
        log.warning(
            "warning: experiment: about %d test examples detect differences of %.3f or more (%d %s, level %.4f "
            "each, %d%% power, spread %.2f); experiment.min_effect %.3f cannot be told from noise: add references, or "
            "raise experiment.test_fraction or experiment.examples",
            n_test,
            detectable,
            cells,
            "cell" if cells == 1 else "cells",
            cell_level,
            int(POWER * 100),
            settings.assumed_sd,
            settings.min_effect,
        )
    if test_refs < least_units(cell_level):
        log.warning(
            "warning: experiment: %d test references cannot make any difference significant at level %.4f (each of "
            "%d %s): that takes at least %d, a reference's examples being resampled together; add references or "
            "raise experiment.test_fraction",
            test_refs,
            cell_level,
            cells,
            "cell" if cells == 1 else "cells",
            least_units(cell_level),
        )


def _budget_warnings(settings: ExperimentSettings, grid: list[Cell], base: dict[str, Any], estimate: dict) -> None:
    """Before any call: the limits the estimate does not fit. A cell whose own optimize.max_calls is below the low end
    of its range is not started; one below its estimate may stop before its optimizer finishes."""
    if settings.max_calls is not None and estimate["total"] > settings.max_calls:
        log.warning(
            "warning: experiment: about %d LM calls are needed and experiment.max_calls is %d: cells that no longer "
            "fit are not started (raise it and run the same command to go on)",
            estimate["total"],
            settings.max_calls,
        )
    for cell in grid:
        own = cell_config(base, cell.overrides(0)).optimize.max_calls
        need, least = estimate["optimize"][cell.id], estimate["least"][cell.id]
        if own is not None and least > own:
            log.warning(
                "warning: experiment: cell %s (%s) needs %d LM calls at least to optimize (the low end of its range, "
                "%d-%d) and its optimize.max_calls is %d: it is not started (raise optimize.max_calls, or shrink the "
                "optimizer's settings)",
                cell.id,
                cell.label,
                least,
                least,
                estimate["most"][cell.id],
                own,
            )
        elif own is not None and need > own:
            log.warning(
                "warning: experiment: cell %s (%s) optimizes in about %d LM calls (range %d-%d) and its "
                "optimize.max_calls is %d: it may stop before its optimizer finishes (raise optimize.max_calls, or "
                "shrink the optimizer's settings)",
                cell.id,
                cell.label,
                need,
                least,
                estimate["most"][cell.id],
                own,
            )


def _programs(result: ExperimentResult, base: dict[str, Any]) -> dict[str, tuple[dict, dict]]:
    """For each finished cell: its baseline's program and its own, as predictor views (instructions, demos)."""
    out = {}
    for row in result.cells:
        state = read_json(row.get("program") or "")
        if row.get("status") != "done" or not state:
            continue
        baseline = target_program(cell_config(base, Cell(row["values"], row["repeat"]).overrides(0))).dump_state()
        out[row["id"]] = (program_view(baseline), program_view(state))
    return out


def _track(result: ExperimentResult, champion: dict | None, settings: ExperimentSettings, parent: Any) -> None:
    """Cells' figures into their child runs, the champion into the Model Registry; a tracking failure is a warning
    (every figure is in experiment.json)."""
    result.mlflow_run_id = parent.info.run_id
    try:
        for row in result.cells:
            if row.get("status") == "done":
                log_cell(row.get("mlflow_run_id"), row)
        if champion is not None and champion.get("model_uri"):
            runs = {r["mlflow_run_id"] for r in result.cells if r.get("mlflow_run_id")}
            name = settings.registered_model or champion_model_name(settings.name, result.out, runs)
            tags, description = champion_tags(result, champion)
            result.champion_uri = register_champion(
                champion["model_uri"], champion.get("mlflow_run_id"), name, settings.alias, tags, description
            )
    except Exception as err:  # noqa: BLE001 - tracking must not lose a finished experiment
        log.warning("warning: MLflow tracking of the experiment failed (%s: %s)", type(err).__name__, first_line(err))
    diff = (champion or {}).get("difference") or {}
    figures = {
        "calls": result.usage["calls"],
        "cost_usd": result.usage["cost_usd"],
        "cells": len(result.cells),
        "cells_done": sum(r.get("status") == "done" for r in result.cells),
        "cells_significantly_better": sum(significantly_better(r.get("difference")) for r in result.cells),
        "test_examples": result.examples["test"],
        "detectable_difference": result.detectable,
        "champion_test_score": (champion or {}).get("test_mean"),
        "champion_test_difference": diff.get("mean"),
        "wall_s": result.wall_s,
        **usage_figures(result.usage),
    }
    try:  # apart: a failure here must not keep the champion from the registry
        log_experiment(result.mlflow_run_id, figures)
    except Exception as err:  # noqa: BLE001 - every figure is in experiment.json
        log.warning(
            "warning: MLflow: the experiment's figures were not logged (%s: %s)", type(err).__name__, first_line(err)
        )


def _log_leaderboard(run_id: str, paths: list[Path]) -> None:
    try:
        from mlflow import MlflowClient

        for path in paths:
            MlflowClient().log_artifact(run_id, str(path))
    except Exception as err:  # noqa: BLE001 - the files are written
        log.warning("warning: MLflow: the leaderboard was not logged (%s: %s)", type(err).__name__, first_line(err))


def _check_finished_cells(grid: list[Cell], base: dict[str, Any], out: Path) -> None:
    """Before any call: a finished cell whose config has changed since (judge, teacher, optimizer settings) is refused,
    since its scores would be compared with another baseline's."""
    for cell in grid:
        row = read_json(out / "cells" / cell.id / "cell.json")
        cfg = cell_config(base, cell.overrides(cell_config(base, {}).optimize.seed))
        if row.get("status") != "done" or row.get("config_hash") in finished_hashes(cfg):
            continue
        if cfg.optimize.threshold is None:
            legacy = cfg.model_copy(
                update={"optimize": cfg.optimize.model_copy(update={"threshold": LEGACY_THRESHOLD})}
            )
            if row.get("config_hash") in finished_hashes(legacy):
                raise ConfigError(
                    f"cell {cell.id} finished with optimize.threshold = {LEGACY_THRESHOLD}, the default before it "
                    "followed the starting program's score: set optimize.threshold = 0.7 in the experiment file to "
                    "resume this experiment as it was, or give experiment.out a new directory"
                )
        raise ConfigError(
            f"cell {cell.id} finished under other settings (the judge, teacher or optimizer settings changed "
            "since): its scores would be compared with another baseline's; give experiment.out a new directory"
        )


def _check_pinned(path: Path, sides: dict[str, list[str]]) -> None:
    """The split (of references, `split.json`; of each target's examples, `examples-<target>.json`) is fixed for the
    life of the experiment: a resumed one whose sides would hold other items is refused."""
    before = read_json(path)
    if before and before != sides:
        raise ConfigError(
            f"{path}: the references or examples now split differently (other seeds, fractions, references or "
            "experiment.examples) than when this experiment began; its cells would not compare: give experiment.out "
            "a new directory"
        )
    if not before:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, sides)


def _examples(
    target: str,
    settings: ExperimentSettings,
    config: Config,
    out: Path,
    teacher: Any,
    references: list[Reference],
    spend: Spend,
) -> list[dspy.Example]:
    """The examples of `target`, each with its reference_id (the respond target's from a complete synthesis run, within
    what the experiment's budget leaves: a run it cut short stops the experiment, which the same command resumes)."""
    if target != "respond":
        return reference_examples(references)
    ex_config = examples_config(config, out, size=settings.examples)
    rd = RunDir(ex_config.run.dir)
    finished = read_json(rd.summary).get("status") in ("complete", "exhausted")
    if not finished:
        calls, cost = _left(spend.ledger, "the examples synthesis")
        syn = ex_config.synthesis
        update = {"max_calls": _least(syn.max_calls, calls), "max_cost_usd": _least(syn.max_cost_usd, cost)}
        ex_config = ex_config.model_copy(update={"synthesis": syn.model_copy(update=update)})
        summary = run_sync(
            arun_synthesis(ex_config, teacher=teacher, references=references, on_mismatch="error", show_progress=False)
        )
        spend.set_total("examples", summary.get("usage"))
        cause = shortfall_cause(summary) or summary.get("exhausted") or "see its rejects.jsonl"
        if summary.get("status") == "exhausted" and summary.get("samples"):
            # the references gave all they will (what was rejected is final): these are the examples, if every side
            # has some (checked by the caller)
            log.warning(
                "warning: experiment: the examples synthesis gave %s of %d samples: its references yield no more (%s)",
                summary.get("samples"),
                settings.examples,
                cause,
            )
        elif summary.get("status") == "budget":
            raise FinishedShort(
                f"the examples synthesis into {rd.path} was stopped by the experiment's budget with "
                f"{summary.get('samples')} of {settings.examples} samples; every cell must see the same examples, so "
                "none started (raise experiment.max_calls / max_cost_usd; the same command goes on)"
            )
        elif summary.get("status") != "complete":
            raise FinishedShort(
                f"the examples synthesis into {rd.path} ended {summary.get('status')} with {summary.get('samples')} of "
                f"{settings.examples} samples; every cell must see the same examples, so none started ({cause}; the "
                "same command goes on)"
            )
    refs = {r.id: (r.instruction, r.response) for r in references}
    return examples_from_run(rd.path, refs)


def cache_dir(out: Path, cfg: Config, teacher: Any = None, judge: Any = None) -> Path:
    """The experiment's one DSPy cache for the endpoints `cfg` (or the LMs handed in) reach: every part (examples,
    baselines, cells, synthesis checks, resumes) that asks the same thing of them is answered once. DSPy's cache key
    ignores api_base, so cells whose LMs differ only in their endpoint keep apart."""
    ends = {
        role: (lm.kwargs.get("api_base") if lm is not None and hasattr(lm, "kwargs") else None) or spec.endpoints
        for role, spec, lm in (("teacher", cfg.teacher, teacher), ("judge", cfg.judge, judge))
    }
    return out / "cache" / hashlib.sha256(json.dumps(ends, sort_keys=True).encode()).hexdigest()[:10]


def _score(
    program: dspy.Module,
    test: list[dspy.Example],
    cfg: Config,
    teacher: Any,
    judge: Any,
    eval_dir: Path,
    spend: Spend,
    part: str,
) -> dict[str, Any]:
    """Judge `program` on the test examples: per-example scores (by example key), with each example's reference,
    their mean, and the calls paid (recorded as `part` of `spend`; BudgetStop when judging them all would pass what
    the experiment may still spend)."""
    use_run_cache(RunDir(eval_dir))
    calls_from, cost_from = _experiment_limits(spend.ledger, "the judging of the test examples")
    budget = CallBudget(*_left(spend.ledger, part), calls_from=calls_from, cost_from=cost_from)
    t = bounded(teacher if teacher is not None else build_lm(cfg.teacher, "teacher"), "teacher", fresh=True)
    j = bounded(judge if judge is not None else build_lm(cfg.judge, "judge"), "judge", fresh=True)
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
        "scores": {example_key(ex): score for ex, _, score in rows},
        "groups": {example_key(ex): str(ex.get("reference_id") or example_key(ex)) for ex, _, _ in rows},
        "program_failures": sum(1 for _, pred, _ in rows if pred is None),
        "judge_failures": metric.failure_summary()["failed"],
        "last_error": errors[-1] if errors else None,
        "usage": budget.as_dict(),
    }


def _left(ledger: CallBudget, what: str = "") -> tuple[int | None, float | None]:
    """The calls and cost the experiment may still spend (None: no such limit); BudgetStop when nothing is left
    (`what`: the part that was about to start)."""
    calls = None if ledger.max_calls is None else ledger.max_calls - ledger.total_calls
    cost = None if ledger.max_cost_usd is None else ledger.max_cost_usd - ledger.total_cost
    if calls is not None and calls < 1:
        raise BudgetStop(
            f"{what or 'the next part'} was not started: experiment.max_calls = {ledger.max_calls} is spent "
            f"({ledger.total_calls} calls); raise it and run the same command"
        )
    if cost is not None and cost <= 0:
        raise BudgetStop(
            f"{what or 'the next part'} was not started: experiment.max_cost_usd = {usd(ledger.max_cost_usd)} is spent "
            f"({usd(ledger.total_cost)}); raise it and run the same command"
        )
    return calls, cost


def _experiment_limits(ledger: CallBudget, what: str) -> tuple[Limit | None, Limit | None]:
    """Where the limits of a part of the experiment come from: what experiment.max_calls / max_cost_usd leave it."""
    calls = cost = None
    if ledger.max_calls is not None:
        left = ledger.max_calls - ledger.total_calls
        calls = Limit(
            "experiment.max_calls",
            f"= {ledger.max_calls} leaves {what} {left} ({ledger.total_calls} spent by the experiment before it)",
        )
    if ledger.max_cost_usd is not None:
        left = ledger.max_cost_usd - ledger.total_cost
        cost = Limit(
            "experiment.max_cost_usd",
            f"= {usd(ledger.max_cost_usd)} leaves {what} {usd(left)} ({usd(ledger.total_cost)} spent by the experiment "
            "before it)",
        )
    return calls, cost


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


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


def _synthesis_check(
    cfg: Config,
    program: str | None,
    references: list[Reference],
    size: int,
    run_dir: Path,
    teacher: Any,
    judge: Any,
    spend: Spend,
    part: str,
) -> dict[str, Any]:
    """A synthesis run of `size` samples on the test references driven by `program` (a program.json; None: the
    built-in one), judged: its judged mean, each sample's judged score, and what it cost (BudgetStop past `left`)."""
    data = cfg.model_dump(mode="json")
    data["run"]["dir"] = str(run_dir)
    data["synthesis"].update(size=size, program=program, mode="online")
    data["judging"]["mode"] = "online"
    data["tracking"]["enabled"] = False
    calls, cost = _left(spend.ledger, part)
    data["synthesis"]["max_calls"] = _least(cfg.synthesis.max_calls, calls)
    data["synthesis"]["max_cost_usd"] = _least(cfg.synthesis.max_cost_usd, cost)
    syn_config = Config.model_validate(data)
    summary = run_sync(arun_synthesis(syn_config, teacher=teacher, references=references, on_mismatch="error"))
    spent = summary.get("usage") or {}
    spend.set_total(f"{part}:synthesize", spent)
    if summary.get("status") == "budget":
        raise BudgetStop(f"the synthesis check into {run_dir} stopped at the experiment's budget", spent)
    calls, cost = _left(spend.ledger, part)
    data["judging"]["max_calls"] = _least(cfg.judging.max_calls, calls)
    data["judging"]["max_cost_usd"] = _least(cfg.judging.max_cost_usd, cost)
    judged = judge_run(run_dir, Config.model_validate(data), judge_lm=judge)
    spend.set_total(f"{part}:judge", judged.get("usage"))
    usage = total_of([spent, judged.get("usage") or {}])
    if judged.get("status") == "budget":
        raise BudgetStop(f"judging the synthesis check in {run_dir} stopped at the experiment's budget", usage)
    rd = RunDir(run_dir)
    scores = [float(row["pointwise"]["overall"]) for row in read_jsonl(rd.judgments) if row.get("pointwise")]
    return {"mean": judged.get("mean_score"), "samples": summary.get("samples"), "scores": scores, "usage": usage}


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


def own_limit_that_stopped(
    tripped: str, max_calls: int | None, max_cost_usd: float | None, calls_left: int | None, cost_left: float | None
) -> str | None:
    """The cell's own optimize limit that stopped it, or None when what the experiment left was the tighter one (or
    the stop was another): `tripped` is the ledger's reason (engine/budget.py words it), the limits the cell's own,
    the lefts what the experiment's budget allowed when the cell started."""
    for phrase, name, own, left in (
        ("the LM-call budget of ", "max_calls", max_calls, calls_left),
        ("the cost budget of ", "max_cost_usd", max_cost_usd, cost_left),
    ):
        if phrase in tripped and own is not None and (left is None or own < left):
            return f"optimize.{name} = {own}"
    return None


def _amounts(calls: Any, cost: Any) -> str:
    return " and ".join(x for x in (f"{calls} calls" if calls is not None else "", usd(cost) if cost else "") if x)


def _cell_limits(
    ledger: CallBudget, judging: dict[str, Any], cfg: Config, opt_calls: int | None, opt_cost: float | None
) -> tuple[Limit | None, Limit | None]:
    """Which limit binds a cell's optimization, calls and cost: its own optimize limit, or what the experiment's leaves
    it (said with its numbers), whichever is less."""

    def one(kind: str, own: Any, left: Any, total: Any, spent: Any, held: Any) -> Limit | None:
        if own is not None and (left is None or own <= left):
            return Limit(f"optimize.{kind}")
        if left is None:
            return None
        show = usd if kind == "max_cost_usd" else str
        return Limit(
            f"experiment.{kind}",
            f"= {show(total)} leaves this cell {show(left)} to optimize with ({show(spent)} spent by the experiment "
            f"before it, {show(held or 0)} kept for judging its test examples)",
        )

    return (
        one("max_calls", cfg.optimize.max_calls, opt_calls, ledger.max_calls, ledger.total_calls, judging.get("calls")),
        one(
            "max_cost_usd",
            cfg.optimize.max_cost_usd,
            opt_cost,
            ledger.max_cost_usd,
            ledger.total_cost,
            judging.get("cost_usd"),
        ),
    )


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


def _compare(row: dict[str, Any], baseline: dict[str, Any], level: float, settings: ExperimentSettings) -> dict:
    """The cell's paired difference to its baseline on the test examples both were scored on."""
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
