"""How a command stops: on a signal, and at the points where its process may die.

Stopping on a signal: Ctrl-C, SIGTERM or SIGHUP stop a command the same way however its process was started, and
what other libraries print while the stop unwinds through them is not shown.

The `refed` command handles all three itself (refed_dspy.cli). From Python, `stop_signals()` (what `optimize` and
`experiment` run in) leaves SIGINT as the caller has it: the default raises KeyboardInterrupt, which stops the work; a
caller that ignores SIGINT keeps ignoring it. SIGTERM and SIGHUP, at their default (the process ends on the spot, its
ledger unwritten), stop the work as Ctrl-C does for the length of the block. Only the main thread can set handlers:
elsewhere nothing changes.

While a stop unwinds, DSPy's, Optuna's and MLflow's words about it (a trial "failed" with KeyboardInterrupt and its
traceback, a callback that could not finish, "SIGINT received. Cancelling.") are dropped: the stop is said once, by
the command.

Where it may die: the points of a run where the process may die and a resume must still pay for nothing twice and
lose nothing.

`checkpoint(name, stage)` marks each where it is passed; it calls the HOOKS, and there are none but in a test. The kill
tests add one that stops the process with SIGKILL at a point of their choosing, as a crash or `kill -9` would
(tests/crash_at), so that what a resume must find is known exactly instead of hoped for from a kill at some moment.

Online (every LM-bound command):
- `answer_paid`: a call the provider answered (not the cache) is over: its answer is in the run's cache and its
  request settled in the write-ahead log; `stage` is the call's stage (generate, improve, judge...).
- `before_record`: a piece of work the engine ran is over, each of its calls answered; what it produced is not
  written yet; `stage` is the kind of work (feedback, unit, sample, judge).

A provider's batch, in batch mode (`stage`: the stage of the batch's calls): `before_upload`, `after_upload`,
`after_create`, `while_polling`, `while_writing_results`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

from refed_dspy.runtime.sync import StopSignal, stop_running

_stopping = threading.Event()
_QUIET_LOGGERS = ("optuna", "dspy", "mlflow")
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


def stopping() -> bool:
    """Whether a stop signal has arrived and is unwinding the work."""
    return _stopping.is_set()


def note_stop() -> None:
    """A stop signal arrived (a handler calls this before it raises or cancels)."""
    _stopping.set()


def clear_stop() -> None:
    """The stop has been handled (the next work starts afresh)."""
    _stopping.clear()


def _stop_now(signum: int, frame) -> None:  # noqa: ARG001
    """Stop as Ctrl-C does: the coroutine run_sync runs is cancelled (a synthesis writes its summary), else
    KeyboardInterrupt."""
    note_stop()
    if not stop_running():
        raise StopSignal


class _QuietWhileStopping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _stopping.is_set() or record.levelno >= logging.CRITICAL:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, KeyboardInterrupt) or record.levelno >= logging.WARNING)


_quiet = _QuietWhileStopping()


@contextlib.contextmanager
def quiet_while_stopping() -> Iterator[None]:
    """Within the block, the warnings and errors of DSPy, Optuna and MLflow are dropped once a stop has begun."""
    found = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    for one in found:
        one.addFilter(_quiet)
    try:
        yield
    finally:
        for one in found:
            one.removeFilter(_quiet)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block (main thread only): SIGINT at Python's default, and SIGTERM and SIGHUP at theirs, raise
    KeyboardInterrupt and mark the stop; a handler or disposition the caller set is left as it is. Restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear_stop()
    before = {}
    for signum in (signal.SIGINT, *STOP_SIGNALS):
        current = signal.getsignal(signum)
        if current is signal.default_int_handler or current == signal.SIG_DFL:
            before[signum] = current
            signal.signal(signum, _stop_now)
    try:
        with quiet_while_stopping():
            yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


ONLINE = ("answer_paid", "before_record")
BATCH = ("before_upload", "after_upload", "after_create", "while_polling", "while_writing_results")
CHECKPOINTS = ONLINE + BATCH


HOOKS: list[Callable[[str, str], None]] = []  # called with (name, stage) at each point passed


def checkpoint(name: str, stage: str = "") -> None:
    """The run passed the point `name` (one of CHECKPOINTS) with work or calls of `stage`."""
    for hook in HOOKS:
        hook(name, stage)
