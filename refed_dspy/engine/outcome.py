"""How an engine's run ended, in the words of a summary: pure functions of the engine's state."""

from __future__ import annotations

from typing import Any


def run_status(aborted: bool, detached: bool, interrupted: bool, done: bool, stop_reason: str | None) -> str:
    """aborted, submitted (batches left waiting), interrupted, complete (the stage says `done`), else why the run
    stopped short (its stop reason; 'exhausted' when it has none)."""
    if aborted:
        return "aborted"
    if detached:
        return "submitted"
    if interrupted:
        return "interrupted"
    return "complete" if done else (stop_reason or "exhausted")


def run_figures(
    budget_stop: str | None, first_call: Any, retries: dict[str, int], window: dict[str, Any]
) -> dict[str, Any]:
    """Retries by reason, the window's figures, for a run the budget stopped what the budget said, and under a cost
    budget what the first call was reserved at (`first_call`, before any call had answered)."""
    return {
        **({"budget_stop": budget_stop} if budget_stop else {}),
        **({"budget_first_call": first_call} if first_call else {}),
        "retries": dict(retries),
        "concurrency": window,
    }
