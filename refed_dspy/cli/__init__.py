"""The `refed` command: one module per command group, each adding its commands to the parser.

A mistake of the user's prints one line on stderr and exits 2 (`--debug` shows the traceback). The command
modules load what they run only when it runs, so `refed --help` starts fast. What a command prints, a traceback
included, masks every key the process holds (refed_dspy.secrets).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import re
import signal
import sys
from typing import NoReturn

from refed_dspy.cli import (
    data,
    experiment,
    judge,
    maintenance,
    settings,
    synthesize,
    training,
    view,
)
from refed_dspy.clients.destination import refusal_in
from refed_dspy.errors import FULL, RefedError, write_error
from refed_dspy.runtime.quiet import for_a_command
from refed_dspy.runtime.stops import STOP_SIGNALS, note_stop
from refed_dspy.runtime.sync import StopSignal, stop_running
from refed_dspy.secrets import masked_streams

GROUPS = (
    synthesize.register,
    view.register_status,
    experiment.register_compare,
    judge.register,
    data.register,
    judge.register_score,
    training.register,
    settings.register,
    experiment.register_optimize,
    experiment.register,
    view.register,
    maintenance.register,
)  # each adds its commands to the parser, in `refed --help` order
EXIT_CODES = """exit codes (every command):
  0    done
  1    finished short: partial, exhausted, stopped by a budget, or a filter that kept less than a tenth
       of its input (what was made is kept)
  2    your input: a config, seed file, model, key or run dir it cannot use (one line on stderr; nothing
       written is damaged), a key of another provider than the model's, or an endpoint whose first calls
       answer 404, refuse the key or reply in another format (one or two calls made)
  3    stopped by the provider or the machine (resumable: run the same command again)
  128+N  stopped by signal N (Ctrl-C, SIGTERM, SIGHUP; resumable); 141 (SIGPIPE) when what reads its
       output goes away (`| head`)"""


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors for an unknown option or command name the nearest known one ('did you mean
    --config?'), with the usage of the command that was given it."""

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's own signature
        known, extras = super().parse_known_args(args, namespace)
        if extras:  # the innermost command's parser meets them first: its own usage and options
            self.error(f"unrecognized arguments: {' '.join(extras)}{_nearest(extras[0], self._options())}")
        return known, extras

    def error(self, message: str) -> NoReturn:
        choice = re.match(r"argument \S+: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            message += _nearest(choice[1], re.findall(r"'([^']+)'", choice[2]))
        super().error(message)

    def _options(self) -> list[str]:
        return list(self._option_string_actions)  # every spelling of every option (argparse's own table)


def _nearest(given: str, known: list[str]) -> str:
    """'; did you mean X?' for the known name closest to `given` (its part before '=' for an option), or ''."""
    close = difflib.get_close_matches(given.split("=", 1)[0], known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="refed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Synthesize instruction-tuning data with Reference-Level Feedback (Mehri et al., EACL 2026), "
        "as a declarative DSPy program.",
        epilog=f"Run `refed COMMAND --help` for a command's options.\n\n{EXIT_CODES}",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in GROUPS:
        register(sub)
    return parser


def _version() -> str:
    from refed_dspy import __version__

    return __version__


_signals: list[int] = []


def _stop_like_sigint(signum: int, frame) -> None:  # noqa: ARG001
    """Ctrl-C, SIGTERM (timeout, Docker, systemd, Slurm) and SIGHUP stop a command the same way: the running coroutine
    is cancelled (a run lets its calls in flight finish and writes its summary), or, when none runs yet or any more
    (an optimization), KeyboardInterrupt is raised. The command sets this handler itself, so a SIGINT stops it even
    where the shell that started it in the background made the process ignore SIGINT. The exit code then says which
    signal it was (128 + its number). A run that winds down says so at once: its calls in flight take seconds."""
    _signals.append(signum)
    note_stop()
    if not stop_running():
        raise StopSignal
    name = signal.Signals(signum).name
    line = f"refed: {name}: stopping once the calls in flight finish (a second {name} stops without waiting for them)\n"
    with contextlib.suppress(OSError):  # a write the handler can make whatever the interrupted code holds
        os.write(2, (("\n" if os.isatty(2) else "") + line).encode())  # a terminal's ^C ends no line


def _exit_now_if_threads_linger(code: int) -> int:
    """After a stop, the threads an optimizer started may still wait on a call in flight (it is counted as paid
    already), and torch's own threads (not Python's: a training stopped mid-step) can abort the interpreter's shutdown
    ("terminate called without an active exception", SIGABRT): the process ends now instead. Returns `code` when
    neither is there."""
    import threading

    lingering = any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate())
    if lingering or "torch" in sys.modules:
        _end_now(code)
    return code


def _end_now(code: int) -> None:
    """End the process with `code` now, its streams and logs flushed, no interpreter shutdown."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _ended(code: int) -> int:
    """The command has ended with `code`: a stop signal from now on (during the interpreter's shutdown) ends the
    process with that code, not a traceback from whatever shutdown code it interrupts."""
    for signum in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(signum, lambda *_: _end_now(code))
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `refed` console script. Its stdout and stderr mask every key the process holds, and so does
    the traceback of an error nobody foresaw (printed here, exit 1, as Python itself would exit)."""
    with masked_streams():
        try:
            code = _main(argv)
        except BrokenPipeError:  # what reads stdout went away (`| head`): end as SIGPIPE would end the process
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush there at exit
            code = 128 + signal.SIGPIPE
        except Exception:  # noqa: BLE001 - Python would print it on the stream it holds, unmasked
            import traceback

            traceback.print_exc()
            code = 1
    return _ended(code) if argv is None else code


def _said(err: RefedError, debug: bool) -> int:
    """Print `err` as the command's one line on stderr (`debug`: after its traceback) and return its exit code."""
    if debug:  # the traceback, and still the documented exit code
        import traceback

        traceback.print_exc()
    print(f"refed: error: {err.cli_message()}", file=sys.stderr)
    return err.exit_code


def _main(argv: list[str] | None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        # inside the try: a signal caught while the next handler is being set stops the command as any other
        for signum in (signal.SIGINT, *STOP_SIGNALS):
            signal.signal(signum, _stop_like_sigint)
        parser = build_parser()
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
        if getattr(args, "func", None):
            import dspy  # noqa: F401 - DSPy sets its loggers to INFO on import: import it first, then quiet them
        for_a_command(args.debug)  # other libraries' records below WARNING and their first-use lines stay off stderr
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except RefedError as err:
        return _said(err, debug)
    except OSError as err:
        if err.errno not in FULL:
            raise
        # a full disk met where no writer of ours turned it into our error (another library's file): one line too
        return _said(write_error(err.filename or "a file", err), debug)
    except Exception as err:
        refused = refusal_in(err)  # a key refused where a client of another library wrapped the refusal in its error
        if refused is None:
            raise
        return _said(refused, debug)
    except KeyboardInterrupt:
        signum = _signals[-1] if _signals else signal.SIGINT
        print(
            f"refed: stopped by {signal.Signals(signum).name}; nothing it wrote is lost: run the same command again "
            "to go on",  # true too of a stop before anything was written (a local model still starting)
            file=sys.stderr,
        )
        # the console script ends now; a caller of main() in its own process gets the code
        return _exit_now_if_threads_linger(128 + signum) if argv is None else 128 + signum
