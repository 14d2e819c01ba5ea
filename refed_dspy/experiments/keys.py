"""What identifies a part of an experiment across invocations: a baseline (what its scores depend on), an example
(its inputs), and a finished cell's config (what its figures depend on)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dspy

from refed_dspy.config import Config

LEGACY_THRESHOLD = 0.7  # optimize.threshold's default before it followed the starting program's score
# config fields added since experiments began: while at their defaults they are left out of the keys, so an experiment
# dir made before them resumes (its finished cells and baselines keep their keys)
ADDED = {"optimize": ("copy_threshold",), "report": ("copy_threshold",)}
_DEFAULTS = Config().model_dump(mode="json")


def _added_at_default(data: dict[str, Any]) -> dict[str, Any]:
    """The config's dump `data` without the ADDED fields that hold their defaults."""
    for section, keys in ADDED.items():
        for key in keys:
            if section in data and data[section].get(key, _DEFAULTS[section][key]) == _DEFAULTS[section][key]:
                data[section].pop(key, None)
    return data


def baseline_key(cfg: Config) -> str:
    """What a baseline's scores depend on: target, method, teacher, judge and how the judge scores. (Until the trace
    threshold's default became the starting program's score, the threshold was in it too, which an untraced score
    never depends on: an experiment of then keeps its key while the threshold is that default.)"""
    weights = [cfg.optimize.win_weight, cfg.optimize.novelty_weight]
    what = {
        "target": cfg.optimize.target,
        "method": cfg.synthesis.method,
        "teacher": cfg.teacher.model_dump(mode="json"),
        "judge": cfg.judge.model_dump(mode="json"),
        "criteria": cfg.judging.criteria,
        "weights": weights + [LEGACY_THRESHOLD if cfg.optimize.threshold is None else cfg.optimize.threshold],
    }
    if cfg.optimize.copy_threshold != _DEFAULTS["optimize"]["copy_threshold"]:  # added since: a key only when moved
        what["copy_threshold"] = cfg.optimize.copy_threshold
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
    "run": ("progress", "progress_every_s", "stop_grace_s"),
    "tracking": ("enabled", "mlflow_uri", "experiment", "log_traces", "telemetry"),
}


def config_hash(cfg: Config, drop: dict[str, tuple[str, ...]] = NOT_FIGURES, **values: Any) -> str:
    """What a finished cell's figures depend on: its config (before the experiment points it at its dirs) but for
    the keys `drop` names (its spending limits, progress display and tracking); `values` set keys first
    ("section.key" = value)."""
    data = _added_at_default(cfg.model_dump(mode="json"))
    for path, value in values.items():
        section, key = path.split(".", 1)
        data.setdefault(section, {})[key] = value
    for section, keys in drop.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def finished_hashes(cfg: Config) -> set[str]:
    """The config hashes a finished cell of `cfg` may hold: this version's, and those earlier versions wrote (the
    whole config; the tracking section kept, its experiment then defaulting to "refed")."""
    before_tracking = {k: v for k, v in NOT_FIGURES.items() if k != "tracking"}
    return {
        config_hash(cfg),
        config_hash(cfg, {}),
        config_hash(cfg, before_tracking),
        config_hash(cfg, before_tracking, **{"tracking.experiment": "refed"}),
        config_hash(cfg, {}, **{"tracking.experiment": "refed"}),
    }
