"""What judgments say, read back from a run dir's files: their figures (judge_summary.json), and why the samples
without one have none. Pure functions over judgment rows, and their readers."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from statistics import fmean
from typing import Any

from pydantic import Field

from refed_dspy.config import Config
from refed_dspy.store.jsonl import read_jsonl
from refed_dspy.store.records import self_preference
from refed_dspy.store.results import Optional, Result
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
    run_dir: str = Field(description="The judged run dir.")
    judge: str = Field(description="The judge's model string.")
    self_preference: str | None = Optional(
        "The judge's model when it is also the model of the samples' teacher: judges favour their own model's outputs."
    )
    criteria: list[str] = Field(description="judging.criteria: each scored 1-10.")
    adapter: dict[str, Any] | None = Field(description="The output format the judge was asked for, and why.")
    samples: int = Field(description="The samples in the run dir.")
    judged: int = Field(description="The samples with a judgment.")
    unjudged: int = Field(description="The samples without one.")
    new: int = Field(description="Judgments this invocation added.")
    mean_score: float | None = Field(description="The mean pointwise score (1-10) of the judged samples.")
    mean_by_criterion: dict[str, float] = Field(description="The mean score of each criterion.")
    pairs: int = Field(description="Samples judged pairwise: improved response against draft, in both orders.")
    improvement_win_rate: float | None = Field(description="Share of pairs the improved response won in both orders.")
    improvement_tie_rate: float | None = Field(
        description="Share of pairs judged a tie (or that the orders disagreed on)."
    )
    improvement_loss_rate: float | None = Field(description="Share of pairs the draft won in both orders.")
    position_bias_rate: float | None = Field(
        description="Share of pairs decisive in both orders but for the same position (the verdict followed the order)."
    )
    rejects: dict[str, int] = Field(
        description="Samples still without a judgment, by the reason of their last failure."
    )
    retries: dict[str, Any] | None = Optional("Retries by reason.")
    budget_stop: str | None = Optional("Stopped by the budget: which limit, and what had been spent.")
    budget_first_call: str | None = Optional(
        "Under a cost budget: what the first call was reserved at (its worst case), before any call showed what one "
        "costs."
    )
    concurrency: dict[str, Any] | None = Optional("The configured window of calls in flight and how AIMD moved it.")
    mode: str | None = Optional("online | batch")
    batch: dict[str, Any] | None = Optional("Batch mode: batches, requests, and what the batch price saved.")
    endpoints: dict[str, Any] | None = Optional("Several api_base endpoints: calls and failures per endpoint.")
    ray: dict[str, Any] | None = Optional(
        "Judged on Ray: the cluster's address and each worker's node, pid, tasks, calls and whether it is alive."
    )
    usage: dict[str, Any] = Field(description="Calls, tokens and cost of the judging, in total and by stage.")
    cost_usd: float | None = Field(description="The judging's cost in USD (None: the judge's price is unknown).")
    wall_s: float = Field(description="Wall time of this invocation, in seconds.")
    finished_at: str = Field(description="When this invocation finished (UTC, ISO 8601).")


def judge_summary(
    rundir: RunDir,
    samples: list[dict[str, Any]],
    config: Config,
    usage: dict[str, Any],
    status: str,
    wall: float,
    new: int,
    price_known: bool,
    adapter: dict[str, Any] | None = None,
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
            "self_preference": self_preference(config.judge.model, {s["meta"].get("teacher") for s in samples}),
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
