"""`refed status RUN_DIR`: a run's provider batches (state, counts, age) and its cost, projected to the end.

Read-only: it reads the run dir's batch journals and summaries and asks no provider anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from refed_dspy.engine.batch_store import BatchStore
from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import read_json

_STORES = (("synthesis", "batches", "summary.json"), ("judging", "judge_batches", "judge_summary.json"))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _done(counts: dict[str, int]) -> tuple[int, int]:
    """(answered, failed) from either provider's request counts."""
    if "succeeded" in counts:
        return counts.get("succeeded", 0) + counts.get("errored", 0), counts.get("errored", 0)
    return counts.get("completed", 0) + counts.get("failed", 0), counts.get("failed", 0)


def projected_cost(summary: dict[str, Any], total: int | None) -> float | None:
    """The run's cost when it has all `total` items, at its cost per item so far (None: nothing to go by)."""
    cost = summary.get("cost_usd")
    have = summary.get("samples") if "samples" in summary else summary.get("judged")
    if cost is None or not have or not total:
        return None
    return cost / have * max(total, have)


def status_report(run_dir: str | Path, now: float | None = None) -> str:
    """What `refed status` prints."""
    path = Path(run_dir)
    if not (path / "config.toml").exists() and not (path / "batches").exists():
        raise RunDirError(f"{path} is not a run directory (no config.toml)")
    now = time.time() if now is None else now
    out = [f"run dir: {path}"]
    for label, name, summary_name in _STORES:
        summary = read_json(path / summary_name)
        if summary:
            size = summary.get("size") if label == "synthesis" else summary.get("samples")
            have = summary.get("samples") if label == "synthesis" else summary.get("judged")
            cost = summary.get("cost_usd")
            line = f"{label}: {summary.get('mode', 'online')} mode, status {summary.get('status')}, {have}/{size} done"
            if cost is not None:
                line += f", ${cost:.4f} so far"
                projected = projected_cost(summary, size)
                if projected is not None:
                    line += f", projected ${projected:.4f} in all"
                saved = (summary.get("batch") or {}).get("saved_usd")
                if saved is not None:
                    line += f" (batch price saved ${saved:.4f})"
            out.append(line)
        if not (path / name).exists():
            continue
        store = BatchStore(path, name, readonly=True)
        out.append(
            f"  {'batch':7} {'stage':10} {'provider id':22} {'state':12} {'requests':>8} {'answered':>8} "
            f"{'failed':>6} {'age':>6}"
        )
        for b in store.batches.values():
            answered, failed = _done(b.counts)
            if b.collected:
                got = [store.results.get(cid) for cid in b.custom_ids]
                answered = sum(1 for r in got if r is not None and not r.lost)
                failed = sum(1 for r in got if r is not None and not r.lost and r.status >= 400)
            out.append(
                f"  {b.local_id:7} {b.stage:10} {(b.provider_id or '(not created)'):22} {b.status:12} "
                f"{len(b.custom_ids):>8} {answered:>8} {failed:>6} {_age(now - b.planned_at):>6}"
            )
        open_ = store.open_batches()
        waiting = sum(len(b.custom_ids) for b in open_)
        out.append(
            f"  {len(store.batches)} batches, {len(open_)} open ({waiting} requests waiting); "
            f"{sum(store.lost_count.values())} requests came back unanswered and were sent again"
        )
    if len(out) == 1:
        out.append("no summary and no batches yet")
    return "\n".join(out)
