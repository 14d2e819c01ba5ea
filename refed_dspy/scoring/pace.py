"""How long a scoring has left, measured on the batches it has made.

The work of a batch is what a padded batch costs the model: its passes times its longest pass's tokens, and more
for a long pass's attention (`scorer.batch_work`; the tokens as the loaded model's tokenizer counts them, or estimated
from characters for a server, the same way for the batches made and the batches left). The clock
starts once the model is loaded (`Pace.start`): the one-time load is in no batch's time. From the second batch on
the first is left out too, as it may carry a first pass's warm-up (memory allocated, a server's first request). So
the rate is the work made over the seconds it took, revised with every batch, and a long batch weighs as its length.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """A time left in words, to about 5%: 45 s, 3 min 20 s (to 10 s under 10 minutes), 12 min, 2.5 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 600:
        minutes, rest = divmod(round(seconds / 10) * 10, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Pace:
    """The rate and the time left of a scoring's batches (see the module docstring).

    Args:
        total: the work of every batch to make (see the module docstring).
        pairs: the pairs those batches score, for the rate in pairs a second.
        clock: seconds, monotonic.
    """

    def __init__(self, total: float, pairs: int, clock: Callable[[], float] = time.perf_counter):
        self.total, self.pairs, self.clock = total, pairs, clock
        self.done = 0.0
        self.batches = 0
        self.started: float | None = None  # when the clock started (the model loaded)
        self._first: tuple[float, float] | None = None  # (work, when) at the end of the first batch
        self.last: float | None = None  # when the last batch was made

    def start(self) -> None:
        """The model is loaded: the first batch's time counts from now."""
        self.started = self.clock()

    def add(self, work: float) -> None:
        """A batch of `work` is made (now)."""
        if self.started is None:
            self.start()
        self.done += work
        self.batches += 1
        self.last = self.clock()
        if self._first is None:
            self._first = (self.done, self.last)

    def rate(self) -> float | None:
        """Work a second over the batches made, up to the last one (the first left out once there are others: a batch
        under way does not slow the figure); None before one is."""
        if self._first is None or self.started is None or self.last is None:
            return None
        work, since = self._first
        if self.batches == 1 or self.last <= since:
            work, since = 0.0, self.started
        seconds = self.last - since
        return (self.done - work) / seconds if seconds > 0 else None

    def seconds_left(self) -> float | None:
        """The work left over the rate, less the time the batch under way has taken; None before a batch is made."""
        rate = self.rate()
        if not rate or self.last is None:
            return None
        return max(0.0, max(self.total - self.done, 0.0) / rate - (self.clock() - self.last))

    def status(self) -> str:
        """'about 3 min left at 0.41 pairs/s' ('' before a batch is made)."""
        rate, left = self.rate(), self.seconds_left()
        if rate is None or left is None:
            return ""
        pairs_per_s = rate * self.pairs / self.total if self.total else 0.0
        return f"about {duration(left)} left at {pairs_per_s:.2f} pairs/s"
