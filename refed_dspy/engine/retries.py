"""Work waiting to run again after a retryable failure (429, 5xx, a timeout, a reset), in the order it becomes due.

A piece of work (known by its key across attempts) is retried at most `max_retries` times, after
refed_dspy.clients.backoff's delay (seeded, so a run's backoffs repeat). The engine starts what is due as slots free.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from refed_dspy.clients.backoff import retry_delay_s
from refed_dspy.engine.failures import Failure


class Retries:
    """The engine's queue of work to retry (see the module docstring)."""

    def __init__(self, max_retries: int, seed: int = 0):
        self.max_retries = max_retries
        self.waiting: list[tuple[float, int, str, Any, int]] = []  # a heap of (due at, seq, kind, payload, slots)
        self.attempts: Counter = Counter()  # retries so far, by key of work
        self.by_reason: Counter = Counter()  # retries so far, by the failure's reason
        self._rng = random.Random(seed)
        self._seq = itertools.count()
        # hears each piece of work scheduled again: (its kind, the failure's reason, its retries so far, the wait
        # the provider asked for): a run's events and figures (refed_dspy.engine.watch)
        self.on_schedule: Callable[[str, str, int, float | None], None] | None = None

    def schedule(self, key: str, failure: Failure, work: tuple[str, Any, int], now: float) -> bool:
        """Queue `work` (kind, payload, slots) to run again after `failure`; False when its retries are used up."""
        if self.attempts[key] >= self.max_retries:
            return False
        self.attempts[key] += 1
        self.by_reason[failure.reason] += 1
        delay = retry_delay_s(self.attempts[key], self._rng.random(), failure.retry_after)
        heapq.heappush(self.waiting, (now + delay, next(self._seq), *work))
        if self.on_schedule is not None:
            self.on_schedule(work[0], failure.reason, self.attempts[key], failure.retry_after)
        return True

    def due(self, now: float) -> tuple[str, Any, int] | None:
        """The first work whose time has come (kind, payload, slots), still queued (`take` removes it); None if none."""
        if self.waiting and self.waiting[0][0] <= now:
            _, _, kind, payload, slots = self.waiting[0]
            return kind, payload, slots
        return None

    def take(self) -> None:
        """Remove the first work (the one `due` returned)."""
        heapq.heappop(self.waiting)

    def wait_s(self, now: float) -> float | None:
        """Seconds until the first work is due (0 when it is); None when nothing waits."""
        return max(0.0, self.waiting[0][0] - now) if self.waiting else None
