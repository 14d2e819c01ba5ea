"""Other libraries' output that tells a user nothing they can act on, kept off the terminal for the length of a
block: log records dropped by their message (`dropping`), and everything they print sent to a log file (`quieted`)."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO


class _Drop(logging.Filter):
    def __init__(self, matches: Callable[[str], bool]):
        super().__init__()
        self.matches = matches

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.matches(record.getMessage())


@contextlib.contextmanager
def dropping(loggers: Iterable[str], what: Iterable[str] | Callable[[str], bool]) -> Iterator[None]:
    """Within the block, records of the named loggers are not emitted when their message holds any of the phrases
    `what` (or, a function, when `what(message)` is true)."""
    if callable(what):
        drop = _Drop(what)
    else:
        phrases = tuple(what)
        drop = _Drop(lambda text: any(phrase in text for phrase in phrases))
    found = [logging.getLogger(name) for name in loggers]
    for one in found:
        one.addFilter(drop)
    try:
        yield
    finally:
        for one in found:
            one.removeFilter(drop)


# libraries whose handlers hold the stderr they were made with (a redirect of sys.stderr does not reach them): their
# records below WARNING are dropped for the length of a quieted block
_BOUND_LOGGERS = ("optuna",)
_lock = threading.Lock()
_console: TextIO | None = None


def console() -> TextIO:
    """Where our own progress lines go: the process's stderr, also while other libraries' output is quieted."""
    return _console or sys.stderr


class _Sink(io.TextIOBase):
    """What other libraries print while quieted: appended to a log file (none: dropped), without progress bars' redraws
    (text with a carriage return, and the newline that ends a bar)."""

    def __init__(self, path: Path | None):
        super().__init__()
        self._path, self._file = path, None
        self._after_bar = False

    def write(self, text: str) -> int:
        bar = "\r" in text or (self._after_bar and text == "\n")
        self._after_bar = "\r" in text
        if self._path is not None and not bar:
            if self._file is None:  # opened at the first line: a block that printed nothing leaves no file
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self._path.open("a", encoding="utf-8")
            self._file.write(text)
        return len(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@contextlib.contextmanager
def quieted(log_path: Path | None = None, verbose: bool = False) -> Iterator[None]:
    """Within the block, what other libraries print on stdout and stderr (DSPy's progress bars and bootstrapping
    lines, MIPROv2's proposed programs and signature sources, MLflow's INFO lines, warnings) goes to `log_path` instead
    (progress bars dropped), and optuna's INFO records are dropped; our own progress (`console()`) and log records
    still reach the terminal. `verbose`: nothing changes. Nested blocks use the outermost one's file. Everything is
    restored after, the user's streams, logger levels and last-resort handler included."""
    global _console
    with _lock:
        if verbose or _console is not None:
            owner = False
        else:
            owner, _console = True, sys.stderr
    if not owner:
        yield
        return
    sink = _Sink(log_path)
    levels = {name: logging.getLogger(name).level for name in _BOUND_LOGGERS}
    last_resort = logging.lastResort
    # a program with no logging set up shows warnings through the last-resort handler, which writes to sys.stderr as
    # it is at the time: ours must still reach the terminal
    logging.lastResort = logging.StreamHandler(_console)
    logging.lastResort.setLevel(logging.WARNING)
    for name in _BOUND_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.lastResort = last_resort
        sink.close()
        with _lock:
            _console = None
