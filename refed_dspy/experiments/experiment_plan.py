"""What an experiment fixes before any call: the cache its parts share, the split it keeps for its life, and the
finished cells a resume may keep."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.errors import ConfigError
from refed_dspy.experiments.experiment_config import cell_config
from refed_dspy.experiments.grid import Cell
from refed_dspy.experiments.keys import LEGACY_THRESHOLD, finished_hashes
from refed_dspy.store.jsonl import read_json, write_json_atomic


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


def cache_dir(out: Path, cfg: Config, teacher: Any = None, judge: Any = None) -> Path:
    """The experiment's one DSPy cache for the endpoints `cfg` (or the LMs handed in) reach: every part (examples,
    baselines, cells, synthesis checks, resumes) that asks the same thing of them is answered once. DSPy's cache key
    ignores api_base, so cells whose LMs differ only in their endpoint keep apart."""
    ends = {
        role: (lm.kwargs.get("api_base") if lm is not None and hasattr(lm, "kwargs") else None) or spec.endpoints
        for role, spec, lm in (("teacher", cfg.teacher, teacher), ("judge", cfg.judge, judge))
    }
    return out / "cache" / hashlib.sha256(json.dumps(ends, sort_keys=True).encode()).hexdigest()[:10]
