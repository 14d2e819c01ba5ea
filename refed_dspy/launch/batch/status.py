"""A run's provider batches as `refed status` shows them: their counts, and a table (state, requests, age).

Read-only: it reads the run dir's batch journal (a torn last line is skipped, not cut off) and asks no provider
anything.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from refed_dspy.engine.progress import rough_duration
from refed_dspy.launch.batch.store import BatchStore
from refed_dspy.store.results import Result

BATCH_DIRS = {"synthesis": "batches", "judging": "judge_batches"}


class OpenBatch(Result):
    """A batch not yet collected: at the provider, or planned and not yet created there."""

    id: str
    stage: str
    provider_id: str | None
    state: str = Field(description="planned, or the provider's last status seen")
    requests: int
    answered: int
    failed: int
    age_s: float


class BatchCounts(Result):
    """The batches of one stage of a run (synthesis or judging)."""

    batches: int
    open: int
    waiting_requests: int = Field(description="Requests in the open batches.")
    resent_requests: int = Field(description="Requests that came back unanswered and were sent again.")
    open_batches: list[OpenBatch]


def read_batches(run_dir: str | Path, name: str) -> BatchStore | None:
    """The batch record `name` of `run_dir`, read-only (None when the run has none)."""
    if not (Path(run_dir) / name).is_dir():
        return None
    return BatchStore(run_dir, name, readonly=True)


def _done(counts: dict[str, int]) -> tuple[int, int]:
    """(answered, failed) from either provider's request counts."""
    if "succeeded" in counts:
        return counts.get("succeeded", 0) + counts.get("errored", 0), counts.get("errored", 0)
    return counts.get("completed", 0) + counts.get("failed", 0), counts.get("failed", 0)


def batch_counts(store: BatchStore, now: float) -> BatchCounts:
    """How many batches, which are still open (with the provider's last counts) and their requests, how many
    requests went out again."""
    open_ = store.open_batches()
    return BatchCounts(
        batches=len(store.batches),
        open=len(open_),
        waiting_requests=sum(len(b.custom_ids) for b in open_),
        resent_requests=sum(store.lost_count.values()),
        open_batches=[
            OpenBatch(
                id=b.local_id,
                stage=b.stage,
                provider_id=b.provider_id,
                state=b.status,
                requests=len(b.custom_ids),
                answered=_done(b.counts)[0],
                failed=_done(b.counts)[1],
                age_s=round(max(0.0, now - b.planned_at), 1),
            )
            for b in open_
        ],
    )


def batch_lines(counts: BatchCounts) -> list[str]:
    """What `refed status` prints of one stage's batches: a line of counts, then a table of the open ones."""
    out = [
        f"{counts.batches} batches, {counts.open} open ({counts.waiting_requests} requests waiting); "
        f"{counts.resent_requests} requests came back unanswered and were sent again"
    ]
    if counts.open_batches:
        out.append(
            f"  {'batch':7} {'stage':10} {'provider id':22} {'state':12} {'requests':>8} {'answered':>8} "
            f"{'failed':>6} {'age':>6}"
        )
    for b in counts.open_batches:
        out.append(
            f"  {b.id:7} {b.stage:10} {(b.provider_id or '(not created)'):22} {b.state:12} "
            f"{b.requests:>8} {b.answered:>8} {b.failed:>6} {rough_duration(b.age_s):>6}"
        )
    return out
