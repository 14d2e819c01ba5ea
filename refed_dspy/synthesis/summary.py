"""The figures of a synthesis run (summary.json, a RunSummary): counts read back from its files, usage of all its
invocations."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.results import Optional, Result
from refed_dspy.store.jsonl import read_json, read_jsonl


@dataclass
class RunStats:
    """Figures of this invocation (the summary adds those of earlier invocations from the files)."""

    started: float = field(default_factory=time.monotonic)
    new_samples: int = 0
    rejects: Counter = field(default_factory=Counter)


def earlier_figures(summary_path: Path) -> tuple[float, int]:
    """Wall time and retries of earlier invocations, from the summary they left (0 when there is none)."""
    old = read_json(summary_path)
    try:
        wall = float(old.get("wall_s_total", old.get("wall_s", 0.0)))
    except (TypeError, ValueError):
        wall = 0.0
    try:
        retries = int((old.get("retries") or {}).get("total", 0))
    except (TypeError, ValueError, AttributeError):
        retries = 0
    return wall, retries


def estimate_error(
    path: Any, usage: dict[str, Any], samples: int, size: int, batch: bool, tier: str = "default"
) -> dict[str, Any]:
    """{"estimate": ...}: what `refed estimate` said (its estimate.json in the run dir) and how far off the run is,
    in cost (at the price of the mode and of the service tier asked for) and calls, once the run has all its samples;
    {} without an estimate."""
    e = read_json(path)
    total = e.get("total") if isinstance(e, dict) else None
    if not isinstance(total, dict) or e.get("size") != size:
        return {}
    key = "batch_cost_usd" if batch else "cost_usd" if tier == "default" else f"{tier}_cost_usd"
    out: dict[str, Any] = {
        "cost_usd": total.get(key),
        "calls": total.get("calls"),
        "cost_range_usd": [
            total.get(key.replace("cost_usd", "cost_low_usd")),
            total.get(key.replace("cost_usd", "cost_high_usd")),
        ],
    }
    if samples >= size:
        cost = usage.get("cost_usd")
        if cost is not None and out["cost_usd"]:
            out["cost_error"] = round((cost - out["cost_usd"]) / out["cost_usd"], 4)
        if out["calls"]:
            out["calls_error"] = round((usage["calls"] - out["calls"]) / out["calls"], 4)
    return {"estimate": out}


def reject_counts(rejects_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Reject records by reason and by stage."""
    by_reason: Counter = Counter()
    by_stage: Counter = Counter()
    for row in read_jsonl(rejects_path):
        by_reason[row.get("reason", "unknown")] += 1
        by_stage[row.get("stage", "unknown")] += 1
    return dict(by_reason), dict(by_stage)


def per_sample(usage: dict[str, Any], samples: int) -> dict[str, Any]:
    """Calls, tokens and cost per sample ({} before the first)."""
    if not samples:
        return {}
    return {
        "calls": round(usage["calls"] / samples, 3),
        "prompt_tokens": round(usage["prompt_tokens"] / samples, 1),
        "completion_tokens": round(usage["completion_tokens"] / samples, 1),
        "reasoning_tokens": round((usage.get("reasoning_tokens") or 0) / samples, 1),
        "cost_usd": round(usage["cost_usd"] / samples, 6) if usage["cost_usd"] is not None else None,
    }


def timing(stats: RunStats, earlier_wall_s: float) -> dict[str, Any]:
    """Wall time of this invocation and of all, samples per second, and when it finished."""
    wall = time.monotonic() - stats.started
    return {
        "wall_s": round(wall, 3),
        "wall_s_total": round(earlier_wall_s + wall, 3),
        "samples_per_s": round(stats.new_samples / wall, 3) if wall > 0 else None,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class RunSummary(Result):
    """A synthesis run's figures (summary.json), of all its invocations."""

    status: str = Field(description="complete | budget | exhausted | interrupted | aborted | submitted")
    exhausted: str | None = Optional("Why the run stopped short with nothing left worth asking for (status exhausted).")
    run_dir: str = Field(description="The run directory.")
    method: str = Field(description="synthesis.method.")
    teacher: str = Field(description="The teacher's model string.")
    teachers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The samples' teachers (model, endpoint) with their sample counts; more than one after a resume "
        "onto another teacher.",
    )
    program: str = Field(description="The program the run executed: built-in, a file, an MLflow URI or python:...")
    program_hash: str = Field(description="Content hash of that program.")
    program_origin: dict[str, Any] | None = Optional(
        "When an experiment made the program: the experiment, its dir, the cell, whether it was the champion, and "
        "the cell's test score and difference."
    )
    adapter: dict[str, Any] | None = Field(description="The output format the teacher was asked for, and why.")
    lm_defaults: str | None = Optional(
        "The teacher model's own settings that stood in for what the config left unset, where they are not the usual "
        "ones (a reasoning model's temperature and output limit)."
    )
    config_hash: str = Field(description="A short hash of the config fields that decide the output (fingerprint.json).")
    size: int = Field(description="synthesis.size: the samples asked for.")
    samples: int = Field(description="The samples in samples.jsonl.")
    new_samples: int = Field(description="Samples this invocation added.")
    references: int = Field(description="The references read.")
    feedback_collected: int = Field(description="The references whose feedback was collected (feedback.jsonl).")
    units: int = Field(description="Work units done: (reference, feature, pass) triples (journal.jsonl).")
    instructions_kept: int = Field(description="New instructions kept after deduplication.")
    rejects: dict[str, int] = Field(description="Reject records by reason.")
    rejects_by_stage: dict[str, int] = Field(description="Reject records by stage.")
    retries: dict[str, Any] = Field(description="Retries of all invocations (`total`) and of this one by reason.")
    max_calls: int | None = Field(description="The call budget the run stopped at (None: none).")
    budget_stop: str | None = Optional("Stopped by the budget: which limit, and what had been spent.")
    budget_first_call: str | None = Optional(
        "Under a cost budget: what the first call was reserved at (its worst case), before any call showed what one "
        "costs; later calls are reserved at their expected cost with a learned margin."
    )
    concurrency: dict[str, Any] = Field(description="The configured window of calls in flight and how AIMD moved it.")
    mode: str = Field(description="online | batch")
    batch: dict[str, Any] | None = Optional("Batch mode: batches, requests, and what the batch price saved.")
    endpoints: dict[str, Any] | None = Optional("Several api_base endpoints: calls and failures per endpoint.")
    usage: dict[str, Any] = Field(description="Calls, tokens and cost, in total and by stage.")
    per_sample: dict[str, Any] = Field(description="Calls, tokens and cost per sample.")
    cost_usd: float | None = Field(description="The cost of every invocation in USD (None: a price is unknown).")
    estimate: dict[str, Any] | None = Optional("What `refed estimate` said, and how far off the run came out.")
    price_known: bool = Field(description="Whether the teacher's price is known.")
    ray: dict[str, Any] | None = Optional(
        "On Ray: the cluster's address and each worker's node, tasks, calls and state."
    )
    wall_s: float = Field(description="Wall time of this invocation, in seconds.")
    wall_s_total: float = Field(description="Wall time of every invocation, in seconds.")
    samples_per_s: float | None = Field(description="Samples this invocation added, per second.")
    finished_at: str = Field(description="When this invocation finished (UTC, ISO 8601).")
