"""What an experiment says before money is spent: whether its test set can detect `min_effect`, and which limits its
estimate does not fit; and the estimate's words (each cell's calls, the examples' sizes)."""

from __future__ import annotations

import logging
from typing import Any

from refed_dspy.experiments.experiment_config import ExperimentSettings, cell_config
from refed_dspy.experiments.grid import Cell
from refed_dspy.experiments.stats import detectable_difference, least_units

log = logging.getLogger(__name__)

POWER = 0.8


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
