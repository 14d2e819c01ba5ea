"""Progress of long commands on stderr: one status line, redrawn in place on a terminal, else printed at an interval.

On a terminal the line is redrawn every `TICK_S` seconds (so a long call or a stage that finishes nothing still shows
time passing) and when the figures change, at most once every `REDRAW_S` seconds. A run writing to a log file, a CI
job or `nohup` gets no redraw codes: one plain line every `every_s` seconds (default 30) from a background thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from refed_dspy.ledger.usage import usd
from refed_dspy.runtime.quiet import console
from refed_dspy.text.counts import counted

REDRAW_S = 0.2  # a terminal's line is drawn at most 5 times a second
TICK_S = 1.0  # and at least once a second while the command runs
UNKNOWN_WIDTH = 200  # a terminal that reports no width (a pseudo-terminal nobody sized) gets lines cut here


def duration(seconds: float) -> str:
    """A duration as a progress line shows it: 45s, 12m05s, 3h20m."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def per_time(per_s: float) -> str:
    """A rate in the unit a reader takes in: `12.30/s`, else `0.11/min` or `0.04/h` (a local model's run)."""
    if per_s >= 0.1 or per_s <= 0:
        return f"{per_s:.2f}/s"
    return f"{per_s * 60:.2f}/min" if per_s * 60 >= 0.1 else f"{per_s * 3600:.2f}/h"


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
    """Within the block, progress lines start with `label`, after the label of the work the block is inside, and then
    say their own work ('experiment: cell 2 of 4 (optimizer=miprov2): optimize: 934 LM calls ...'): a command's lines
    name the part of the larger work they are."""
    outer = _within.get()
    token = _within.set(f"{outer}: {label}" if outer else label)
    try:
        yield
    finally:
        _within.reset(token)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # a closed or odd stream is no terminal
        return False


def _width(stream: TextIO) -> int:
    """The terminal's columns, or UNKNOWN_WIDTH when it does not say (0 columns: a pseudo-terminal nobody sized)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or UNKNOWN_WIDTH


class Heartbeat:
    """Shows `label: status()` on `stream` while a command runs, from a daemon thread.

    On a terminal the line is redrawn in place every `TICK_S` seconds and on `draw()`, at most once every
    `REDRAW_S` seconds of `clock`, cut to the terminal's width; `stop()` draws it a last time and ends it.
    Elsewhere a plain line every `every_s` seconds. Inside `progress_within`, the label follows the larger work's.
    """

    def __init__(
        self,
        label: str,
        status: Callable[[], str],
        every_s: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        within = _within.get()
        self.label = f"{within}: {label}" if within else label
        self.status, self.every_s = status, every_s
        self.stream = stream or console()
        self.on_terminal = _is_terminal(self.stream)
        self._clock = clock
        self._drawn_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._beat, name=f"refed-{label}-progress", daemon=True)

    def _text(self) -> str:
        """The line; a status that fails says so instead (a progress line must never break the command)."""
        try:
            return f"{self.label}: {self.status()}"
        except Exception as err:  # noqa: BLE001
            return f"{self.label}: (no figures: {type(err).__name__})"

    def _beat(self) -> None:
        while not self._stop.wait(TICK_S if self.on_terminal else self.every_s):
            with contextlib.suppress(Exception):  # a progress line must never break the command (a closed stream)
                if self.on_terminal:
                    self.draw()
                else:
                    print(self._text(), file=self.stream, flush=True)

    def draw(self) -> float | None:
        """On a terminal, redraw the line now, unless it was drawn less than `REDRAW_S` ago: then return the seconds
        after which it may be (ask again then). None when drawn, or when this is no terminal."""
        if not self.on_terminal:
            return None
        with self._lock:
            if self._ended:
                return None
            now = self._clock()
            if self._drawn_at is not None and (left := self._drawn_at + REDRAW_S - now) > 0:
                return left
            self._drawn_at = now
            self._put(self._text())
        return None

    def _put(self, text: str, end: str = "") -> None:
        with contextlib.suppress(OSError, ValueError):  # a stream closed under us: no line, the command goes on
            self.stream.write("\r" + text[: _width(self.stream) - 1] + "\x1b[K" + end)
            self.stream.flush()

    def say(self, text: str) -> None:
        """Print a line of its own (a terminal's status line is cleared first and drawn again under it)."""
        with self._lock:
            if not self.on_terminal or self._ended:
                print(text, file=self.stream, flush=True)
                return
            self.stream.write("\r\x1b[K" + text + "\n")
            self._put(self._text())

    def start(self) -> Heartbeat:
        if self.on_terminal:
            self.draw()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop; on a terminal the line is drawn a last time with the latest figures, and ended."""
        self._stop.set()
        if not self.on_terminal:
            return
        with self._lock:
            if self._ended:
                return
            self._ended = True
            with contextlib.suppress(Exception):
                self._put(self._text(), end="\n")

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


PACED_ITEMS = 2  # items done after the first, at least, before the progress line says an ETA


class Progress:
    """Counted progress (samples, judgments): the stage it is in, done/total, rate, ETA, LM calls, rejects, and the
    cost against its cap, shown by a Heartbeat (redrawn on a terminal, a line every `every_s` seconds elsewhere;
    disabled: nothing).

    The rate and ETA are measured: from the time the first item was done (a stage that finishes nothing, collecting
    feedback before the first sample, does not dilute the rate), revised at every item. The ETA is said once
    `PACED_ITEMS` items came after the first ("unknown" before: one item says nothing of the pace of a pipeline whose
    items come in bursts, and an ETA from it ran ten times the run's length). `stage_of` (set by the stage that runs)
    says what is being done now, asked each time a line is made.
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        enabled: bool = True,
        unit: str = "sample",
        every_s: float = 30.0,
        label: str = "refed",
        clock: Callable[[], float] = time.monotonic,
        cap_usd: float | None = None,
    ):
        self.total, self.initial, self.unit, self.cap_usd = total, initial, unit, cap_usd
        self.done, self.calls, self.rejects, self.cost = initial, 0, 0, None
        self.started = clock()
        self.stage_of: Callable[[], str] | None = None
        self._clock = clock
        self._first: tuple[float, int] | None = None  # when the first item of this invocation was done, and the count
        self._beat = Heartbeat(label, self.line, every_s, clock=clock).start() if enabled else None

    def stage(self) -> str | None:
        """What is being done now ('collecting feedback (8 running)'), or None when nobody said."""
        return self.stage_of() if self.stage_of is not None else None

    def rate(self) -> float:
        """Items a second: since the first item was done (from the start before that)."""
        now = self._clock()
        if self._first is not None and self.done > self._first[1] and now > self._first[0]:
            return (self.done - self._first[1]) / (now - self._first[0])
        elapsed = now - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The status line: the stage, done/total, rate, ETA, calls, rejects, cost against the cap."""
        rate, left = self.rate(), self.total - self.done
        paced = self._first is not None and self.done - self._first[1] >= PACED_ITEMS
        eta = duration(left / rate) if paced and rate > 0 and left > 0 else ("done" if left <= 0 else "unknown")
        projected = self.projected()
        cost = usd(self.cost) + (f" of {usd(self.cap_usd)} cap" if self.cap_usd is not None else "")
        cost += f", projected {usd(projected)} in all" if projected is not None else ""
        stage = self.stage()
        # before this invocation's first item a rate of 0.00/s would read as a stalled run
        pace = (
            f"{per_time(rate)}, ETA {eta}"
            if self.done > self.initial or left <= 0
            else f"no {self.unit} done yet{' this time' if self.initial else ''}, ETA {eta}"
        )
        return (
            (f"{stage}; " if stage else "") + f"{self.done}/{self.total} {self.unit}s, {pace}, {self.calls} LM calls, "
            f"{counted(self.rejects, 'reject')}, {cost} ({duration(self._clock() - self.started)} elapsed)"
        )

    def projected(self) -> float | None:
        """The total cost at the cost per item so far (None before the first item, or without a price)."""
        if self.cost is None or self.done <= 0:
            return None
        return self.cost / self.done * max(self.total, self.done)

    def update(self, done: int, totals: Any, rejects: int) -> float | None:
        """Record the latest figures (`totals`: a usage.Totals) and redraw the line on a terminal, at most once every
        `REDRAW_S` seconds: returns the seconds after which figures not drawn yet may be (update again then), None
        when the line shows them all (or there is no terminal line)."""
        if self._first is None and done > self.initial:
            self._first = (self._clock(), done)
        self.done, self.rejects = done, rejects
        usage = totals.as_dict()
        self.calls, self.cost = usage["calls"], usage["cost_usd"]
        return self._beat.draw() if self._beat is not None else None

    def close(self) -> None:
        """Stop showing progress; a terminal's line is drawn a last time with the latest figures."""
        if self._beat is not None:
            self._beat.stop()
