"""What an experiment says before money is spent: the estimate of every part's LM calls, whether its test set can
detect `min_effect`, and which limits the estimate does not fit; once the examples exist, the cells estimated again
on their real sizes (that estimate decides which cells start)."""

from __future__ import annotations

import logging
from typing import Any

from refed_dspy.experiments.estimate import estimate_experiment
from refed_dspy.experiments.grid import Cell
from refed_dspy.experiments.plan import ExperimentPlan
from refed_dspy.experiments.stats import detectable_difference, least_units, smallest_test

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
