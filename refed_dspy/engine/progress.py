"""Progress of long commands on stderr: a tqdm bar on a terminal, else a status line at a fixed interval.

A run writing to a log file, a CI job or `nohup` sees no bar, so it gets one line at least every
`every_s` seconds (default 30) from a background thread: a call that takes minutes, or an
optimizer deep inside DSPy, still shows that the command is alive and what it has spent.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from refed_dspy.ledger.usage import usd
from refed_dspy.runtime.quiet import console

REDRAW_S = 0.2  # a terminal's bar is drawn at most 5 times a second (each redraw is a line of output)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rough_duration(seconds: float) -> str:
    """A duration to two figures at most, as `refed status` shows a batch's age and a local run its expected length:
    45s, 12m, 3.5h."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# what the work a command runs inside another is, for its progress lines: "experiment: cell 2 of 4 (optimizer=miprov2)"
_within: contextvars.ContextVar[str | None] = contextvars.ContextVar("refed_progress_within", default=None)


@contextlib.contextmanager
def progress_within(label: str) -> Iterator[None]:
    """Within the block, progress lines start with `label` and then say their own work ('experiment: cell 2 of 4
    (optimizer=miprov2): optimize: 934 LM calls ...'): a command's lines name the part of the larger work they are."""
    token = _within.set(label)
    try:
        yield
    finally:
        _within.reset(token)


class Heartbeat:
    """Prints `label: status()` to `stream` every `every_s` seconds until stopped (a daemon thread); inside
    `progress_within`, the label follows the larger work's."""

    def __init__(self, label: str, status: Callable[[], str], every_s: float = 30.0, stream: TextIO | None = None):
        within = _within.get()
        self.label = f"{within}: {label}" if within else label
        self.status, self.every_s = status, every_s
        self.stream = stream or console()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"refed-{label}-progress", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            with contextlib.suppress(Exception):  # a progress line must never break the command
                print(f"{self.label}: {self.status()}", file=self.stream, flush=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Progress:
    """Counted progress (samples, judgments): the stage it is in, done/total, LM calls, rejects, cost, rate and ETA.

    On a terminal: a tqdm bar, redrawn at most every `REDRAW_S` seconds of `clock` (`update` says when figures it held
    back are due). Elsewhere: a Heartbeat line every `every_s` seconds. Disabled: nothing. `stage_of`
    (set by the stage that runs) says what is being done now, asked each time a line is made, so a long stage
    that finishes no item (collecting feedback before the first sample) still names itself.
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        enabled: bool = True,
        desc: str = "samples",
        unit: str = "sample",
        every_s: float = 30.0,
        label: str = "refed",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.initial, self.unit = total, initial, unit
        self.done, self.calls, self.rejects, self.cost = initial, 0, 0, None
        self.started = time.monotonic()
        self.stage_of: Callable[[], str] | None = None
        self._bar = None
        self._beat: Heartbeat | None = None
        self._clock = clock
        self._drawn_at: float | None = None  # when the bar was last drawn (on `clock`)
        self._tokens = 0
        if not enabled:
            return
        if console().isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=console())
        else:
            self._beat = Heartbeat(label, self.line, every_s).start()

    def stage(self) -> str | None:
        """What is being done now ('collecting feedback (8 running)'), or None when nobody said."""
        return self.stage_of() if self.stage_of is not None else None

    def line(self) -> str:
        """The status line: the stage, done/total, rate, ETA, calls, rejects, cost."""
        elapsed = time.monotonic() - self.started
        made = self.done - self.initial
        rate = made / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 and left > 0 else ("done" if left <= 0 else "unknown")
        projected = self.projected()
        cost = usd(self.cost) + (f", projected {usd(projected)} in all" if projected is not None else "")
        stage = self.stage()
        return (
            (f"{stage}; " if stage else "")
            + f"{self.done}/{self.total} {self.unit}s, {rate:.2f}/s, ETA {eta}, {self.calls} LM calls, "
            f"{self.rejects} rejects, {cost} ({_duration(elapsed)} elapsed)"
        )

    def projected(self) -> float | None:
        """The total cost at the cost per item so far (None before the first item, or without a price)."""
        if self.cost is None or self.done <= 0:
            return None
        return self.cost / self.done * max(self.total, self.done)

    def update(self, done: int, totals: Any, rejects: int) -> float | None:
        """Record the latest figures (`totals`: a usage.Totals). The bar is redrawn at most once every `REDRAW_S`
        seconds: returns the seconds after which figures not drawn yet may be (update again then), None when the bar
        shows them all (or there is no bar)."""
        self.done, self.rejects = done, rejects
        usage = totals.as_dict()
        self.calls, self.cost = usage["calls"], usage["cost_usd"]
        self._tokens = usage["prompt_tokens"] + usage["completion_tokens"]
        if self._bar is None:
            return None
        now = self._clock()
        if self._drawn_at is not None and (left := self._drawn_at + REDRAW_S - now) > 0:
            return left
        self._drawn_at = now
        self._draw()
        return None

    def _draw(self, refresh: bool = True) -> None:
        """Put the latest figures on the bar, and draw it (`refresh`)."""
        bar = self._bar
        bar.n = self.done
        stage = self.stage()
        if stage:
            bar.set_description_str(stage, refresh=False)
        projected = self.projected()
        bar.set_postfix_str(
            f"calls={self.calls} tok={self._tokens:,} cost={'?' if self.cost is None else f'${self.cost:.4f}'} "
            f"projected={'?' if projected is None else f'${projected:.4f}'} rejects={self.rejects}",
            refresh=False,
        )
        if refresh:
            bar.refresh()

    def close(self) -> None:
        """Stop showing progress; a bar is drawn a last time with the latest figures."""
        if self._bar is not None:
            self._draw(refresh=False)  # closing draws it
            self._bar.close()
        if self._beat is not None:
            self._beat.stop()
