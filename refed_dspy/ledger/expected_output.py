"""How many output tokens a call is expected to write, learned from the calls already made: what a cost budget
reserves a call at, instead of its `max_tokens` worst case (a reasoning model's 16,000 tokens would leave a small
budget unable to start anything).

Per role, and per stage within a role (a feedback call and a response differ), the completion tokens of answered calls
are kept as a running mean and spread (Welford). A call is reserved at the mean plus a margin learned from the spread:
three standard deviations, and never less than half the mean (a few calls say little of the spread), capped at the
call's `max_tokens`. Before a role has answered anything there is nothing to expect: the caller reserves the worst
case. Pure arithmetic, no I/O; the ledger holds it under its lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SPREAD_MARGIN = 3.0  # standard deviations above the mean
LEAST_MARGIN = 0.5  # of the mean: the margin while few calls have shown their spread


@dataclass
class OutputStats:
    """Some calls' completion tokens (or costs): their count, mean and sum of squared deviations (Welford), and the
    most."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    most: float = 0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        self.most = max(self.most, value)

    def task_share(self) -> float:
        """What a piece of work's calls are reserved at each before their prompts are known: the mean with the least
        margin, at most the most seen (the work's calls are then reserved one by one at their own expected cost)."""
        return min(self.most, self.mean * (1 + LEAST_MARGIN))

    @property
    def margin(self) -> float:
        """The margin above the mean a call is reserved with."""
        spread = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        return max(SPREAD_MARGIN * spread, LEAST_MARGIN * self.mean)

    def reserve(self, limit: int) -> int:
        """The output tokens a call is reserved at: mean plus margin, at most `limit` (its max_tokens)."""
        return min(limit, math.ceil(self.mean + self.margin)) if limit > 0 else math.ceil(self.mean + self.margin)


class ExpectedOutput:
    """What the calls of each role (and of each stage within it) wrote; see the module docstring."""

    def __init__(self) -> None:
        self.by_role: dict[str, OutputStats] = {}
        self.by_stage: dict[tuple[str, str], OutputStats] = {}

    def learn(self, role: str, stage: str, completion_tokens: int) -> None:
        """An answered call of `role` at `stage` wrote `completion_tokens` (hidden reasoning included)."""
        self.by_role.setdefault(role, OutputStats()).add(completion_tokens)
        self.by_stage.setdefault((role, stage), OutputStats()).add(completion_tokens)

    def seen(self, role: str) -> bool:
        """A call of `role` has answered."""
        return role in self.by_role

    def reserve(self, role: str, stage: str, limit: int) -> int | None:
        """The output tokens a call of `role` at `stage` is reserved at (its stage's calls, else its role's; at most
        `limit`); None before a call of `role` has answered (then only its worst case is safe)."""
        stats = self.by_stage.get((role, stage)) or self.by_role.get(role)
        return None if stats is None else stats.reserve(limit)
