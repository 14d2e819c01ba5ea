"""An experiment dir written before optimize.threshold followed the starting program's score: its finished cells are
not silently compared with cells optimized under the new default, and the message says how to resume it as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from refed_dspy.errors import ConfigError
from refed_dspy.experiments.experiment_config import cell_config, load_experiment
from refed_dspy.experiments.experiment_plan import _check_finished_cells
from refed_dspy.experiments.grid import cells
from refed_dspy.experiments.keys import LEGACY_THRESHOLD, NOT_FIGURES, baseline_key, config_hash
from refed_dspy.store.jsonl import write_json_atomic

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "experiment.toml"


def _finished_by_the_old_version(out: Path, more: list[str]) -> tuple[list, dict]:
    settings, base = load_experiment(CONFIG, ["experiment.grid={'optimize.optimizer' = ['bootstrap']}", *more])
    grid = cells(settings.grid, settings.repeats)
    cfg = cell_config(base, grid[0].overrides(cell_config(base, {}).optimize.seed))
    old = cfg.model_copy(update={"optimize": cfg.optimize.model_copy(update={"threshold": LEGACY_THRESHOLD})})
    # what the old version wrote: its spending and progress keys dropped, tracking kept with its default experiment
    before = {k: v for k, v in NOT_FIGURES.items() if k != "tracking"}
    written = config_hash(old, before, **{"tracking.experiment": "refed"})
    (out / "cells" / grid[0].id).mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "cells" / grid[0].id / "cell.json", {"status": "done", "config_hash": written})
    return grid, base


def test_a_cell_finished_under_the_old_default_says_how_to_resume_it(tmp_path):
    grid, base = _finished_by_the_old_version(tmp_path, [])
    with pytest.raises(ConfigError, match=r"finished with optimize.threshold = 0.7, .*set optimize.threshold = 0.7"):
        _check_finished_cells(grid, base, tmp_path)
    # with the old threshold set, it resumes: the cell is the same, and so is its baseline's key (no re-scoring)
    grid, base = _finished_by_the_old_version(tmp_path, ["optimize.threshold=0.7"])
    _check_finished_cells(grid, base, tmp_path)
    unset = cell_config(load_experiment(CONFIG)[1], {})
    assert baseline_key(unset) == baseline_key(cell_config(base, {}))
