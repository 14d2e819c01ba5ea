"""What a run puts in MLflow's run table: the few figures people compare across runs (calls, cost and LM time, in
all and by role) as metrics, and the by-stage breakdown as a table artifact, instead of every leaf of a usage dict
(11 fields x every stage: 100+ metrics no one compares)."""

from __future__ import annotations

from typing import Any

USAGE_TABLE = "usage_by_stage.json"
_COLUMNS = (
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "repairs",
    "lm_seconds",
    "cost_usd",
)


def usage_figures(usage: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """`calls`, `cost_usd` and `lm_seconds`, in all and `.<role>` by role (an unpriced cost left out)."""
    out: dict[str, float] = {}
    parts = [("", usage)] + [(f".{role}", u) for role, u in sorted((usage.get("by_role") or {}).items())]
    for suffix, part in parts:
        for key in ("calls", "cost_usd", "lm_seconds"):
            value = part.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{prefix}{key}{suffix}"] = float(value)
    return out


def usage_table(usage: dict[str, Any]) -> dict[str, list[Any]]:
    """The by-stage breakdown as columns (`stage` and the usage fields), for `mlflow.log_table`."""
    stages = sorted((usage.get("by_stage") or {}).items())
    table: dict[str, list[Any]] = {"stage": [name for name, _ in stages]}
    for column in _COLUMNS:
        table[column] = [part.get(column) for _, part in stages]
    return table
