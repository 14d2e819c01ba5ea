"""What judgments say, read back from a run dir's files: their figures (judge_summary.json), and why the samples
without one have none. Pure functions over judgment rows, and their readers."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from statistics import fmean
from typing import Any

from pydantic import Field

from refed_dspy.config import Config
from refed_dspy.results import Optional, Result
from refed_dspy.store.jsonl import read_jsonl
from refed_dspy.store.rundir import RunDir


def unjudged_reasons(judged: set[str], reject_rows: list[dict[str, Any]]) -> Counter:
    """Why the samples without a judgment have none: the reason of each one's last judge reject (pure; the usage rows
    of attempts that were retried do not count)."""
    last = {
        r.get("sample_id"): r.get("reason", "unknown")
        for r in reject_rows
        if r.get("sample_id") not in judged and not r.get("attempt")
    }
    return Counter(last.values())


class JudgeSummary(Result):
    """The figures of all judgments of a run dir (judge_summary.json)."""

    status: str = Field(description="complete | partial | budget | interrupted | aborted | submitted")
    run_dir: str
    judge: str
    criteria: list[str]
    adapter: dict[str, Any] | None
    samples: int
    judged: int
    unjudged: int
    new: int = Field(description="Judgments this invocation added.")
    mean_score: float | None
    mean_by_criterion: dict[str, float]
    pairs: int
    improvement_win_rate: float | None
    improvement_tie_rate: float | None
    improvement_loss_rate: float | None
    position_bias_rate: float | None
    rejects: dict[str, int] = Field(
        description="Samples still without a judgment, by the reason of their last failure."
    )
    retries: dict[str, Any] | None = Optional("Retries by reason.")
    budget_stop: str | None = Optional("Stopped by the budget: which limit, and what had been spent.")
    concurrency: dict[str, Any] | None = Optional("The configured window of calls in flight and how AIMD moved it.")
    mode: str | None = Optional("online | batch")
    batch: dict[str, Any] | None = Optional("Batch mode: batches, requests, and what the batch price saved.")
    endpoints: dict[str, Any] | None = Optional("Several api_base endpoints: calls and failures per endpoint.")
    ray: dict[str, Any] | None = Optional(
        "Judged on Ray: the cluster's address and each worker's node, pid, tasks, calls and whether it is alive."
    )
    usage: dict[str, Any]
    cost_usd: float | None
    wall_s: float
    finished_at: str


def judge_summary(
    rundir: RunDir,
    samples: list[dict[str, Any]],
    config: Config,
    usage: dict[str, Any],
    status: str,
    wall: float,
    new: int,
    price_known: bool,
    adapter: dict[str, str] | None = None,
    engine: dict[str, Any] | None = None,
) -> JudgeSummary:
    """Figures of all judgments in the run dir (read back from the files).

    `status` 'complete' becomes 'partial' unless every sample has a judgment; `rejects` counts the samples
    still without one by the reason of their last failure.
    """
    rows = list(read_jsonl(rundir.judgments))
    stats = judgment_stats(rows)
    judged = {r["sample_id"] for r in rows}
    rejects = unjudged_reasons(judged, list(read_jsonl(rundir.judge_rejects)))
    unjudged = sum(1 for s in samples if s["meta"]["id"] not in judged)
    if status == "complete" and unjudged:
        status = "partial"
    return JudgeSummary(
        **{
            "status": status,
            "run_dir": str(rundir.path),
            "judge": config.judge.model,
            "criteria": list(config.judging.criteria),
            "adapter": adapter,
            "samples": len(samples),
            "judged": len(rows),
            "unjudged": unjudged,
            "new": new,
            **stats,
            "rejects": dict(rejects),
            **(engine or {}),
            "usage": usage,
            "cost_usd": usage["cost_usd"] if price_known else None,
            "wall_s": round(wall, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )


def judgment_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean scores, improvement win/tie/loss rates and position-bias rate of judgment rows (pure)."""
    overall = [r["pointwise"]["overall"] for r in rows if r.get("pointwise")]
    by_criterion: dict[str, list[int]] = {}
    for r in rows:
        for name, value in ((r.get("pointwise") or {}).get("scores") or {}).items():
            by_criterion.setdefault(name, []).append(value)
    pairs = [r["pairwise"] for r in rows if r.get("pairwise")]
    winners = Counter(p["winner"] for p in pairs)
    n = len(pairs)
    return {
        "mean_score": round(fmean(overall), 4) if overall else None,
        "mean_by_criterion": {k: round(fmean(v), 4) for k, v in by_criterion.items()},
        "pairs": n,
        "improvement_win_rate": round(winners["improved"] / n, 4) if n else None,
        "improvement_tie_rate": round(winners["tie"] / n, 4) if n else None,
        "improvement_loss_rate": round(winners["draft"] / n, 4) if n else None,
        "position_bias_rate": round(sum(1 for p in pairs if p.get("flipped")) / n, 4) if n else None,
    }


def load_judgments(rundir: RunDir) -> dict[str, dict[str, Any]]:
    """sample id -> judgment row."""
    return {row["sample_id"]: row for row in read_jsonl(rundir.judgments)}
