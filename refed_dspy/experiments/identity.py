"""What identifies a part of an experiment across invocations: a baseline (what its scores depend on), an example
(its inputs), and a finished cell's config (what its figures depend on)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dspy

from refed_dspy.config import Config
from refed_dspy.config.fingerprint import PROMPT_FORMAT


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
# data is measured after the fact ([scoring]: refed score, report --score); a cell finished before them keeps its hash
NOT_CELLS = ("metrics", "scoring")


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
