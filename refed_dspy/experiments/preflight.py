"""What an experiment says before money is spent: the estimate of every part's LM calls, whether its test set can
detect `min_effect`, and which limits the estimate does not fit; once the examples exist, the cells estimated again
on their real sizes (that estimate decides which cells start).

The estimate of an experiment's LM calls before any is made: the examples synthesis, each baseline, and each cell's optimization
and test scoring, replayed on one call model per cache (optimizers/teleprompters/base.py) in the order the
experiment runs them, so that what the cache answers (the uncompiled program's answers the examples synthesis paid
for, the validation scoring every cell of one baseline shares, a program two optimizers both reach) is not counted
twice. What only the LMs decide (which traces pass, which proposals are accepted) is a coin: the estimate is the mean
of 5 draws at even odds, and the range spans those draws and odds of 1 in 4 and 3 in 4.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.experiments.config import Cell, ExperimentSettings, baseline_key, cell_config
from refed_dspy.experiments.plan import ExperimentPlan
from refed_dspy.experiments.stats import detectable_difference, least_units, smallest_test
from refed_dspy.methods import METHODS
from refed_dspy.optimizers.plan import examples_config, target_program
from refed_dspy.optimizers.teleprompters import OPTIMIZERS
from refed_dspy.optimizers.teleprompters.base import PASS_RATE, CallModel, CompileSettings

log = logging.getLogger(__name__)

POWER = 0.8


def preflight(plan: ExperimentPlan) -> dict[str, Any]:
    """The experiment's estimate (estimate_experiment's) on the sizes the settings imply, said on stderr with the power
    check and the limits it does not fit, before any call."""
    grid = plan.grid
    refs = {side: len(v) for side, v in plan.sides.items()}
    estimate = estimate_experiment(grid, plan.base, plan.settings, refs)
    _power_warnings(plan, smallest_test(estimate["sizes"]))
    log.info(
        "experiment: %d %s; about %d LM calls in all before any is made (examples %d, baselines %d, cells: %s)",
        len(grid),
        "cell" if len(grid) == 1 else "cells",
        estimate["total"],
        estimate["examples"],
        estimate["baselines"],
        _cells_text(grid, estimate),
    )
    _budget_warnings(plan, estimate)
    return estimate


def reestimate(plan: ExperimentPlan, estimate: dict[str, Any], examples: dict[str, dict[str, list]]) -> dict[str, Any]:
    """`estimate`, or when the examples (target -> side -> examples) came out of other sizes than it assumed, the
    cells estimated again on theirs (said in one line)."""
    made = {target: {side: len(v) for side, v in sets.items()} for target, sets in examples.items()}
    if made == estimate["sizes"]:
        return estimate
    assumed = estimate["sizes"]
    refs = {side: len(v) for side, v in plan.sides.items()}
    estimate = {
        **estimate_experiment(plan.grid, plan.base, plan.settings, refs, made),
        "examples": estimate["examples"],
    }
    estimate["total"] = estimate["examples"] + estimate["baselines"] + sum(estimate["cells"].values())
    n_test = smallest_test(made)
    log.info(
        "experiment: the examples came out %s (the estimate assumed %s): %d test examples detect differences of "
        "%.3f or more; the cells now take about %s LM calls (%s)",
        _sizes_text(made),
        _sizes_text(assumed),
        n_test,
        detectable_difference(n_test, plan.settings.assumed_sd, plan.cell_level, POWER),
        sum(estimate["cells"].values()),
        _cells_text(plan.grid, estimate),
    )
    return estimate


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


def _power_warnings(plan: ExperimentPlan, n_test: int) -> None:
    """Before any call: whether about `n_test` test examples can detect experiment.min_effect, and whether the test
    references are enough to make any difference significant at each cell's level."""
    settings, cells, cell_level, test_refs = plan.settings, len(plan.grid), plan.cell_level, len(plan.sides["test"])
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


def _budget_warnings(plan: ExperimentPlan, estimate: dict[str, Any]) -> None:
    """Before any call: the limits the estimate does not fit. A cell whose own optimize.max_calls is below the low end
    of its range is not started; one below its estimate may stop before its optimizer finishes."""
    settings = plan.settings
    if settings.max_calls is not None and estimate["total"] > settings.max_calls:
        log.warning(
            "warning: experiment: about %d LM calls are needed and experiment.max_calls is %d: cells that no longer "
            "fit are not started (raise it and run the same command to go on)",
            estimate["total"],
            settings.max_calls,
        )
    for cell in plan.grid:
        own = plan.configs[cell.id].optimize.max_calls
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


JUDGE_CALLS_RESPOND = 3  # a judged sample: the final response scored, and compared with the draft in both orders
ODDS = (0.25, 0.75)  # the coins' other odds, for the range
DRAWS = 5  # draws of the coins at even odds whose mean is the estimate


def metric_judge_calls(opt: Any) -> int:
    """Judge calls the respond target's metric makes per example under `opt` (an [optimize] section): the rubric score,
    and the comparison with the draft in both orders unless its win weighs nothing (optimize.win_weight = 0)."""
    return 1 + (2 if opt.win_weight > 0 else 0)


def synthesis_calls(syn: Any, n_refs: int) -> int:
    """LM calls a synthesis run of `syn` (a [synthesis] section) on `n_refs` references should make, repairs and
    rejects aside: each kind of task its method runs, times the calls that task makes at most. (The run's own call
    cap, synthesis.max_calls_per_sample x size, is a bound, not an estimate: 136 against 52 made in a trial.)"""
    method = METHODS.get(syn.method)
    counts, worst = method.work_counts(syn, n_refs), method.worst_calls(syn)
    return sum(n * worst.get(kind, 0) for kind, n in counts.items())


def examples_calls(cfg: Config, size: int, n_refs: int) -> int:
    """LM calls the examples synthesis should make: `size` refed samples at one instruction per feature."""
    return synthesis_calls(examples_config(cfg, Path(cfg.run.dir), size).synthesis, n_refs)


def side_sizes(settings: ExperimentSettings, target: str, refs: dict[str, int]) -> dict[str, int]:
    """Examples expected on each side before any is made (`refs`: references per side): the respond target's follow
    their references' share of experiment.examples; the other targets' examples are the references."""
    if target != "respond":
        return dict(refs)
    total = sum(refs.values())
    return {side: max(1, round(settings.examples * n / total)) for side, n in refs.items()}


def _cell_calls(m: CallModel, cfg: Config, n: dict[str, int]) -> tuple[int, int, dict[str, int]]:
    """One cell on `m`: the starting program scored on validation, the optimizer, the result scored on validation,
    then on the test examples. (optimization calls, test calls, all of them by role)."""
    opt = cfg.optimize
    s = CompileSettings(
        lm=None,
        proposer_lm=None,
        auto=opt.auto,
        max_demos=opt.max_demos,
        num_candidates=opt.num_candidates,
        num_trials=opt.num_trials,
        max_metric_calls=opt.max_metric_calls,
        max_steps=opt.max_steps,
        bsize=opt.bsize,
        seed=opt.seed,
        n_train=n["train"],
        n_val=n["val"],
    )
    start, roles = m.calls, (m.teacher, m.judge, m.proposer)
    for i in range(n["val"]):
        m.run(m.baseline, "val", i)
    program = OPTIMIZERS.get(opt.optimizer).simulate(m, s)
    for i in range(n["val"]):
        m.run(program, "val", i)
    optimizing = m.calls - start
    for i in range(n["test"]):
        m.run(program, "test", i)
    by_role = {"teacher": m.teacher - roles[0], "judge": m.judge - roles[1], "proposer": m.proposer - roles[2]}
    return optimizing, m.calls - start - optimizing, by_role


def _replay(
    grid: list[Cell],
    base: dict[str, Any],
    settings: ExperimentSettings,
    refs: dict[str, int],
    sizes: dict[str, dict[str, int]] | None,
    salt: int,
    odds: float,
) -> dict[str, Any]:
    """The whole experiment replayed once, cell by cell in order, with one draw of the coins (`salt`, `odds`): the
    cells of one baseline share one call model, as they share one cache. {"baselines", "sizes", "cells": {id:
    (optimizing, testing, by role, synthesis check)}}."""
    out: dict[str, Any] = {"baselines": 0, "sizes": {}, "cells": {}}
    models: dict[str, CallModel] = {}
    seed = cell_config(base, {}).optimize.seed
    for cell in grid:
        cfg = cell_config(base, cell.overrides(seed))
        opt = cfg.optimize
        n = (sizes or {}).get(opt.target) or side_sizes(settings, opt.target, refs)
        out["sizes"][opt.target] = n
        respond = opt.target == "respond"
        check = 0
        if settings.synthesize:
            check_run = cfg.synthesis.model_copy(update={"size": settings.synthesize})
            check = synthesis_calls(check_run, refs["test"]) + settings.synthesize * JUDGE_CALLS_RESPOND
        key = baseline_key(cfg)
        if key not in models:
            judge_calls = metric_judge_calls(opt) if respond else 2
            # the respond examples were made by the uncompiled program: its answers are in the experiment's cache
            predictors = len(target_program(cfg).predictors())
            m = models[key] = CallModel(predictors, judge_calls, respond, odds, odds, salt)
            for i in range(n["test"]):
                m.run(m.baseline, "test", i)
            out["baselines"] += m.calls + check
        out["cells"][cell.id] = (*_cell_calls(models[key], cfg, n), check)
    return out


def estimate_experiment(
    grid: list[Cell],
    base: dict[str, Any],
    settings: ExperimentSettings,
    refs: dict[str, int],
    sizes: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """The experiment's calls: `examples`, `baselines`, and by cell id its `cells` total (optimizing and test
    scoring, plus its synthesis check), `optimize` (what optimize.max_calls caps) with its range `least` to `most`,
    and its `roles` (teacher, judge, proposer); `total`; `sizes`, the examples per side it assumed. `refs`:
    references per side; `sizes`: the examples per side of each target once they exist (before: their share of
    experiment.examples, and the examples synthesis is estimated too)."""
    draws = [_replay(grid, base, settings, refs, sizes, salt, PASS_RATE) for salt in range(DRAWS)]
    # each end of the range is the mean over as many draws at its odds as the estimate has: one draw alone made an
    # end of 0 when no trace happened to pass in it
    ends = [[_replay(grid, base, settings, refs, sizes, salt, odds) for salt in range(DRAWS)] for odds in ODDS]
    out: dict[str, Any] = {"examples": 0, "baselines": draws[0]["baselines"], "sizes": draws[0]["sizes"]}
    if not sizes and "respond" in out["sizes"]:
        respond = next(c for c in grid if cell_config(base, c.overrides(0)).optimize.target == "respond")
        out["examples"] = examples_calls(cell_config(base, respond.overrides(0)), settings.examples, sum(refs.values()))
    for name in ("cells", "optimize", "least", "most", "roles"):
        out[name] = {}
    for cell in grid:
        mine = [d["cells"][cell.id] for d in draws]
        optimizing = round(sum(c[0] for c in mine) / DRAWS)
        out["optimize"][cell.id] = optimizing
        out["cells"][cell.id] = optimizing + round(sum(c[1] for c in mine) / DRAWS) + mine[0][3]
        out["roles"][cell.id] = {r: round(sum(c[2][r] for c in mine) / DRAWS) for r in mine[0][2]}
        spread = [optimizing] + [round(sum(d["cells"][cell.id][0] for d in end) / DRAWS) for end in ends]
        out["least"][cell.id], out["most"][cell.id] = min(spread), max(spread)
    out["total"] = out["examples"] + out["baselines"] + sum(out["cells"].values())
    return out
