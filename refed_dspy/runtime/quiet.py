"""Other libraries' output that tells a user nothing they can act on, kept off the terminal: for a whole command
(`for_a_command`: their log records below WARNING, the lines they say on first use, warnings nobody can act on), and
for the length of a block: log records dropped by their message (`dropping`), and everything they print sent to a log
file (`quieted`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from refed_dspy.secrets import MaskedStream, mask


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


# Libraries that set their own loggers' levels (DSPy, on import, to INFO): set again for a command.
_SELF_LEVELLED = ("httpx", "LiteLLM", "dspy", "httpcore", "openai")
# Warnings other libraries log on first use or on every use, by logger and phrase: matplotlib's while it builds its font
# cache (a timer says it after 5 s, on a fresh machine or a fresh MPLCONFIGDIR).
_LIBRARY_RECORDS = {"matplotlib.font_manager": ("building the font cache",)}
# Python warnings of other libraries, by the start of their message: MLflow's when an export's local path matches two
# of its dataset source kinds (it picks one; nothing differs for the user).
_LIBRARY_WARNINGS = ("The specified dataset source can be interpreted in multiple ways",)


def for_a_command(debug: bool = False) -> None:
    """How a `refed` command shows log records on stderr, set once as it starts: refed's own (logger `refed_dspy`) from
    INFO up, every other library's from WARNING up (matplotlib's "generated new fontManager", MLflow's database
    creation and new-experiment lines, alembic's migrations: said on first use, telling nothing), MLflow's through its
    own handler too (MLFLOW_LOGGING_LEVEL, unless the user set it), and none of the warnings of `_LIBRARY_RECORDS` and
    `_LIBRARY_WARNINGS`. DSPy's per-call warning about a truncated reply is dropped (the reply is a reject that says
    so). `debug` (--debug): everything, from DEBUG up."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("refed_dspy").setLevel(logging.DEBUG if debug else logging.INFO)
    for name in _SELF_LEVELLED:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("dspy.clients.lm").setLevel(logging.DEBUG if debug else logging.ERROR)
    if debug:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow is imported, which it is not yet
    for name, phrases in _LIBRARY_RECORDS.items():
        logging.getLogger(name).addFilter(_Drop(lambda text, phrases=phrases: any(p in text for p in phrases)))
    for start in _LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=f"^{re.escape(start)}")


# libraries whose handlers hold the stderr they were made with (a redirect of sys.stderr does not reach them): they
# are imported before the redirect (so that their handler holds the terminal, not the sink) and their records below
# WARNING are dropped for the length of a quieted block
_BOUND_LOGGERS = ("optuna",)
_lock = threading.Lock()
_console: TextIO | None = None
_depth = 0  # quieted blocks open (a verbose one included): a nested block changes nothing


def console() -> TextIO:
    """Where our own progress lines go: the process's stderr, also while other libraries' output is quieted."""
    return _console or sys.stderr


class _Sink(io.TextIOBase):
    """What other libraries print while quieted: appended to a log file (none: dropped), without progress bars' redraws
    (text with a carriage return, and the newline that ends a bar). Once closed, what still reaches it (a thread that
    outlived the block, a handler made inside it) goes to the stream it replaced."""

    def __init__(self, path: Path | None, after: TextIO):
        super().__init__()
        self._path, self._file, self._after = path, None, after
        self._closed = False
        self._after_bar = False
        self._write_lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._write_lock:  # the check under the lock: a write racing close() must not reopen the closed file
            if self._closed:
                return self._after.write(text)
            redraw = "\r" in text.replace("\r\n", "\n")  # a bar redraws with a bare carriage return; \r\n ends a line
            bar = redraw or (self._after_bar and text == "\n")
            self._after_bar = redraw
            if self._path is not None and not bar:
                if self._file is None:  # opened at the first line: a block that printed nothing leaves no file
                    self._path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self._path.open("a", encoding="utf-8")
                self._file.write(mask(text))
        return len(text)

    def flush(self) -> None:
        with self._write_lock:
            if self._closed:
                self._after.flush()
            elif self._file is not None:
                self._file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with self._write_lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


def _import_bound_loggers() -> None:
    for name in _BOUND_LOGGERS:
        with contextlib.suppress(ImportError):
            __import__(name)


@contextlib.contextmanager
def quieted(log_path: Path | None = None, verbose: bool = False) -> Iterator[None]:
    """Within the block, what other libraries print on stdout and stderr (DSPy's progress bars and bootstrapping
    lines, MIPROv2's proposed programs and signature sources, MLflow's INFO lines, warnings) goes to `log_path` instead
    (progress bars dropped), and optuna's INFO records are dropped; our own progress (`console()`) and log records
    still reach the terminal. `verbose`: nothing changes. A block inside another changes nothing (the outer one's
    choice holds, verbose or not). Everything is restored after: the streams (unless someone replaced them
    meanwhile), logger levels and the last-resort handler. A thread of the user's that prints meanwhile prints to the
    log too (`verbose` keeps it on the terminal). The streams are the process's: a block another thread opens while
    one is open is inside it (its libraries' output goes to the first block's log)."""
    global _console, _depth
    with _lock:
        owner = _depth == 0 and not verbose
        _depth += 1
    if not owner:
        try:
            yield
        finally:
            with _lock:
                _depth -= 1
        return
    _import_bound_loggers()
    out, err = sys.stdout, sys.stderr
    with _lock:
        _console = err
    sink_out = _Sink(log_path, out)
    sink_err = _Shared(sink_out, err)
    levels = {name: logging.getLogger(name).level for name in _BOUND_LOGGERS}
    last_resort = logging.lastResort
    # a program with no logging set up shows warnings through the last-resort handler, which writes to sys.stderr as
    # it is at the time: ours must still reach the terminal
    logging.lastResort = logging.StreamHandler(err if isinstance(err, MaskedStream) else MaskedStream(err))
    logging.lastResort.setLevel(logging.WARNING)
    for name in _BOUND_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    sys.stdout, sys.stderr = sink_out, sink_err
    try:
        yield
    finally:
        if sys.stdout is sink_out:  # replaced meanwhile by someone else: theirs to restore
            sys.stdout = out
        if sys.stderr is sink_err:
            sys.stderr = err
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.lastResort = last_resort
        sink_out.close()
        sink_err.close()
        with _lock:
            _console = None
            _depth -= 1


class _Shared(io.TextIOBase):
    """stderr's face of the one sink stdout writes to (one file, one order of lines); once closed, stderr's own
    stream gets what still arrives."""

    def __init__(self, sink: _Sink, after: TextIO):
        super().__init__()
        self._sink, self._after, self._closed = sink, after, False

    def write(self, text: str) -> int:
        return self._after.write(text) if self._closed else self._sink.write(text)

    def flush(self) -> None:
        (self._after if self._closed else self._sink).flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self._closed = True
