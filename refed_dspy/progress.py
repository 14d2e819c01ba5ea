"""A progress bar for runs: samples, samples/s, calls, tokens, cost and ETA (tqdm, on a terminal)."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Shows progress on stderr when enabled and stderr is a terminal; otherwise does nothing."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "samples"):
        self._bar = None
        self._last = 0.0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True, file=sys.stderr)

    def update(self, done: int, totals: Any, stats: Any) -> None:
        if self._bar is None:
            return
        self._bar.n = done
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            cost = totals.as_dict()["cost_usd"]
            self._bar.set_postfix_str(
                f"calls={totals.calls} tok={totals.total['prompt_tokens'] + totals.total['completion_tokens']:,} "
                f"cost={'?' if cost is None else f'${cost:.4f}'} rejects={sum(stats.rejects.values())}",
                refresh=False,
            )
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
