"""When a run has stopped yielding: most of what it makes is discarded (duplicate or near-duplicate instructions,
samples rejected for good), so asking for more would spend calls on nothing. Pure bookkeeping, no I/O."""

from __future__ import annotations

from collections import deque

YIELD_WINDOW = 100  # the outcomes looked at: enough that a run with a normal share of duplicates never trips it


class YieldWatch:
    """The share of the last `window` outcomes (an instruction dropped by dedup, a sample rejected for good, a sample
    kept) that became samples; below `min_yield` over a full window, the run is exhausted."""

    def __init__(self, min_yield: float, window: int = YIELD_WINDOW):
        self.min_yield = min_yield
        self.window = window
        self.recent: deque[bool] = deque(maxlen=window)
        self.discarded = 0  # in this invocation
        self.reason: str | None = None  # set once, when the run is exhausted

    def note(self, kept: bool) -> None:
        """One outcome: a sample kept (True) or something discarded (False)."""
        self.recent.append(kept)
        self.discarded += not kept
        if self.reason is None and self.min_yield > 0 and len(self.recent) == self.window:
            kept_n = sum(self.recent)
            if kept_n < self.min_yield * self.window:
                self.reason = (
                    f"{self.window - kept_n} of the last {self.window} instructions were duplicates or rejected "
                    f"(synthesis.min_yield = {self.min_yield:g}): these references and this teacher give no more"
                )

    @property
    def exhausted(self) -> bool:
        return self.reason is not None
