"""An experiment's file: a run config (every section `refed optimize` reads) plus an `[experiment]` table that says
which config values to vary, how often, and how to split and judge. `base` in that table names another config file
to start from (relative to the experiment file); the experiment file's own sections are laid over it.

The cells of its grid (`Cell`, `cells`): every combination of the grid's values, each repeated with its own seed.
Pure functions: a cell's id depends only on its values and repeat, so a resumed experiment finds its cells again.

And what identifies a part of an experiment across invocations: a baseline (what its scores depend on), an example
(its inputs), and a finished cell's config (what its figures depend on).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from pydantic import Field, ValidationError, field_validator

from refed_dspy.config import Config, apply_overrides, config_from_dict, describe_errors
from refed_dspy.config.load import forget_replaced_models, nested
from refed_dspy.config.schema import PROMPT_FORMAT
from refed_dspy.config.section import Section, UserPath, tomllib
from refed_dspy.errors import ConfigError


class ExperimentSettings(Section):
    """The `[experiment]` table."""

    name: str = Field(
        "experiment",
        description="A name for the experiment: its page's title, its MLflow experiment (unless "
        "tracking.experiment is set) and its registered model's name.",
    )
    out: UserPath = Field(
        "experiments/experiment",
        description="The experiment's directory: examples, cells, results.",
    )
    base: UserPath | None = Field(None, description="A config file to start from, relative to the experiment file.")
    grid: dict[str, Any] = Field(  # a list per path, checked below with a message that says so
        default_factory=dict,
        description='Config paths and the values each takes, e.g. "optimize.optimizer" = ["bootstrap", '
        '"miprov2"]; a table value sets the keys under its path (teacher = [{model = ..., api_base = ...}]). '
        "Every combination is a cell.",
    )
    repeats: int = Field(1, ge=1, le=20, description="Runs of each combination, with optimize.seed + 0, 1, ...")
    examples: int = Field(
        36, ge=3, description="Examples synthesized for the respond target (split with the references)."
    )
    test_fraction: float = Field(
        0.34, gt=0, lt=1, description="Share of the references (and their examples) held out for the test score."
    )
    val_fraction: float = Field(
        0.4, gt=0, lt=1, description="Share of the other references the optimizers validate on (the rest: training)."
    )
    seed: int = Field(0, description="Seeds the split by reference, the same for every cell.")
    level: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="Confidence of the intervals, simultaneous over the cells (each interval at 1 - (1 - level) / "
        "cells, Bonferroni).",
    )
    min_effect: float = Field(
        0.05, gt=0, le=1, description="The smallest test-score difference (0-1 scale) the test set should detect."
    )
    assumed_sd: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Spread of per-example score differences assumed before any is measured (for the power check).",
    )
    resamples: int = Field(10_000, ge=1000, description="Bootstrap resamples per interval.")
    synthesize: int = Field(
        0,
        ge=0,
        description="When > 0: each cell's program, and its baseline, also drive a synthesis run of this many samples "
        "on the test references, judged, and the two runs' judged means are compared with a bootstrap interval.",
    )
    max_calls: int | None = Field(
        None,
        gt=0,
        description="LM calls the whole experiment may make: examples, baselines, every cell's optimizing "
        "and judging. A cell that does not fit is not started.",
    )
    max_cost_usd: float | None = Field(None, gt=0, description="The same, in US dollars (needs every LM's price).")
    registered_model: str | None = Field(
        None,
        description="Model Registry name of the champion's program (default: the experiment's name and a short hash "
        "of its out directory, so that two experiment dirs of one name never share a model and its alias).",
    )
    alias: str = Field("champion", description="The registry alias that points at the champion's program.")

    @field_validator("grid")
    @classmethod
    def _grid_paths(cls, grid: dict[str, Any]) -> dict[str, list[Any]]:
        for path, values in grid.items():
            if not isinstance(values, list):
                raise ValueError(f"{path!r} must be a list of the values it takes: write [{json.dumps(values)}]")
            if not values:
                raise ValueError(f"{path!r} must be a non-empty list of values")
            if path == "optimize.seed":
                raise ValueError("the grid cannot set optimize.seed: repeats set it")
        return grid


def set_values(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the config dict `data` with each `path -> value` set (paths as `--set` takes them), the values taken
    as one layer over `data` (forget_replaced_models: a cell's teacher leaves the base teacher's limits and prices)."""
    layer = nested([(path.split("."), value) for path, value in values.items()])
    out = json.loads(json.dumps(forget_replaced_models(data, layer)))
    for path, value in values.items():
        node = out
        keys = path.split(".")
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"experiment.grid: {path!r}: '{key}' is not a table")
            node = child
        node[keys[-1]] = value
    return out


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> tuple[ExperimentSettings, dict[str, Any]]:
    """The experiment's settings and its base config (a plain dict, validated as a Config) from `path`; `overrides`
    (`--set`) apply to both (`experiment.repeats=3`, `teacher.model=...`). ConfigError, one line, for what is wrong."""
    data = _read_toml(Path(path))
    data = apply_overrides(data, overrides or [])
    table = data.pop("experiment", None)
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [experiment] table (see docs/guides/experiments.md)")
    try:
        settings = ExperimentSettings.model_validate(table)
    except ValidationError as err:
        raise ConfigError("[experiment]: " + "; ".join(describe_errors(err.errors(), ExperimentSettings))) from None
    if settings.base:
        base_path = (Path(path).parent / settings.base).resolve()
        base = _read_toml(base_path, "experiment.base: the config file")
        data = _merge(forget_replaced_models(base, data), data)
    if "experiment" not in (data.get("tracking") or {}):  # MLflow files the runs under the experiment's own name
        data = _merge(data, {"tracking": {"experiment": settings.name}})
    config_from_dict(data)  # the base must be a valid run config
    return settings, data


def cell_config(base: dict[str, Any], values: dict[str, Any]) -> Config:
    """The run config of one cell: the base with the cell's values set."""
    try:
        return config_from_dict(set_values(base, values))
    except ConfigError as err:
        raise ConfigError(f"experiment cell {values}: {err}") from None


def _read_toml(path: Path, what: str = "experiment file") -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def is_experiment_file(path: str | Path) -> bool:
    """`path` is a TOML file with an [experiment] table (False when it cannot be read: the caller's load says why)."""
    try:
        return isinstance(_read_toml(Path(path)).get("experiment"), dict)
    except ConfigError:
        return False


def resolved_experiment(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[Config, dict[str, Any], list[dict[str, Any]]]:
    """An experiment file resolved: the base run config (its `base` merged, defaults filled), the [experiment] table
    with its defaults, and the cells of its grid (id, label, values)."""
    settings, base = load_experiment(path, overrides)
    table = settings.model_dump(mode="json", exclude_none=True)
    grid = [{"id": c.id, "label": c.label, "values": c.values} for c in cells(settings.grid, settings.repeats)]
    return cell_config(base, {}), table, grid


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


def baseline_key(cfg: Config) -> str:
    """What a baseline's scores depend on: target, method, teacher, judge, how the judge scores (not the trace
    threshold: an untraced score never depends on it) and the prompt format."""
    weights = [cfg.optimize.win_weight, cfg.optimize.novelty_weight]
    what = {
        "target": cfg.optimize.target,
        "method": cfg.synthesis.method,
        "teacher": cfg.teacher.identity("teacher"),
        "judge": cfg.judge.identity("judge"),
        "criteria": cfg.judging.criteria,
        "weights": weights,
        "copy_threshold": cfg.quality.copy_threshold,  # a copy of the reference scores 0 unjudged
        "prompt_format": PROMPT_FORMAT,  # how the program's and the judge's asks are worded
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def example_key(ex: dspy.Example) -> str:
    """An example by its inputs."""
    inputs = {k: str(ex[k]) for k in sorted(ex.inputs().keys())}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


# what may change after a cell finished without changing its figures: the limits on spending (raising the one that
# stopped another cell must not refuse the finished ones) and how progress is shown
NOT_FIGURES = {
    "optimize": ("max_calls", "max_cost_usd"),
    "synthesis": ("max_calls", "max_cost_usd", "max_calls_per_sample"),
    "judging": ("max_calls", "max_cost_usd"),
    "run": ("progress", "progress_every_s", "stop_grace_s", "new_ledger"),
    "tracking": ("enabled", "mlflow_uri", "experiment", "log_traces", "trace_sample_ratio", "telemetry"),
}
# whole sections no cell's figures depend on: how a run is watched ([metrics]: its endpoint and exporters) and how
# data is measured after the fact ([scoring]: refed score, report --score; [train], [evaluate]: the students made of it);
# a cell finished before them keeps its hash
NOT_CELLS = ("metrics", "scoring", "train", "evaluate")


def config_hash(cfg: Config, drop: dict[str, tuple[str, ...]] = NOT_FIGURES, **values: Any) -> str:
    """What a finished cell's figures depend on: its config (before the experiment points it at its dirs) but for
    the keys `drop` names (its spending limits, progress display and tracking); `values` set keys first
    ("section.key" = value). The LM sections as LMSpec.identity gives them (the temperature and output limit sent, a
    field added later left out at its default), and the prompt format."""
    data = cfg.model_dump(mode="json", exclude=set(NOT_CELLS))
    data["teacher"], data["judge"] = cfg.teacher.identity("teacher"), cfg.judge.identity("judge")
    data["prompt_format"] = PROMPT_FORMAT
    for path, value in values.items():
        section, key = path.split(".", 1)
        data.setdefault(section, {})[key] = value
    for section, keys in drop.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def finished_hashes(cfg: Config) -> set[str]:
    """The config hash a finished cell of `cfg` holds."""
    return {config_hash(cfg)}
