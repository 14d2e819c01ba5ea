"""The cells of an experiment's grid: every combination of the grid's values, each repeated with its own seed.
Pure functions: a cell's id depends only on its values and repeat, so a resumed experiment finds its cells again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

GRID_FILE = "grid.json"  # in an experiment dir: the cells of the latest invocation, in order (for refed status)


@dataclass(frozen=True)
class Cell:
    """One run of the grid: `values` (config path -> value; a table value sets the keys under its path), and which
    `repeat` of them it is (0-based)."""

    values: dict[str, Any] = field(hash=False)
    repeat: int = 0

    @property
    def id(self) -> str:
        """A short readable name plus a hash of the values: stable across invocations, safe as a directory name."""
        digest = hashlib.sha256(json.dumps(self.values, sort_keys=True, default=str).encode()).hexdigest()[:6]
        return f"{_slug(self.values)}-r{self.repeat}-{digest}"

    @property
    def label(self) -> str:
        """What a table shows for the cell: its values (the last part of each path) and repeat."""
        parts = [f"{path.rsplit('.', 1)[-1]}={_short(value)}" for path, value in self.values.items()]
        return ", ".join(parts + [f"repeat {self.repeat}"])

    def overrides(self, seed: int) -> dict[str, Any]:
        """The config values this cell sets: its grid values, flattened to paths, and `optimize.seed`."""
        out: dict[str, Any] = {}
        for path, value in self.values.items():
            if isinstance(value, dict):
                out.update({f"{path}.{k}": v for k, v in value.items()})
            else:
                out[path] = value
        out["optimize.seed"] = seed + self.repeat
        return out


def cells(grid: dict[str, list[Any]], repeats: int) -> list[Cell]:
    """Every combination of `grid`'s values (non-empty lists; ExperimentSettings checks them), in the grid's order,
    each `repeats` times."""
    paths = list(grid)
    combos = itertools.product(*(grid[p] for p in paths)) if paths else [()]
    return [Cell(dict(zip(paths, combo, strict=True)), r) for combo in combos for r in range(repeats)]


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("model") or value.get("name") or next(iter(value.values()), ""))
    return str(value)


def _slug(values: dict[str, Any]) -> str:
    text = "_".join(_short(v).rsplit("/", 1)[-1] for v in values.values()) or "base"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:48].strip("-") or "cell"
