"""The engine's window of LM calls in flight, AIMD: halved on a rate limit, grown back as calls succeed.

A 429 halves the window (never below one call), once for all the work started before the last halving: those calls
met the same limit, and halving again for each would collapse the window. Each piece of work that succeeds grows it
by its slots over the window (about one call per window of successes), up to the configured concurrency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Window:
    """The AIMD window of calls in flight (see the module docstring); `limit` is its size now. `on_move(old, new, why)`
    hears each move to another whole number of calls ("rate_limited", "grew"): a run's events."""

    def __init__(self, concurrency: int):
        self.concurrency = concurrency
        self.limit = float(concurrency)
        self.min_limit = self.limit
        self.last_decrease = 0.0
        self.on_move: Callable[[float, float, str], None] | None = None

    def grow(self, slots: int) -> None:
        """Work of `slots` succeeded."""
        old = self.limit
        self.limit = min(float(self.concurrency), self.limit + slots / self.limit)
        if self.on_move is not None and int(self.limit) != int(old):
            self.on_move(old, self.limit, "grew")

    def halve(self, started: float, now: float) -> None:
        """Work started at `started` met a rate limit at `now`."""
        if started >= self.last_decrease:
            old = self.limit
            self.limit = max(1.0, self.limit / 2)
            self.min_limit = min(self.min_limit, self.limit)
            self.last_decrease = now
            if self.on_move is not None and int(self.limit) != int(old):
                self.on_move(old, self.limit, "rate_limited")

    def figures(self) -> dict[str, Any]:
        """For a summary: the configured concurrency, the window at the end and its smallest size."""
        return {
            "configured": self.concurrency,
            "final_limit": round(self.limit, 2),
            "min_limit": round(self.min_limit, 2),
        }
