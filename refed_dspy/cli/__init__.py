"""The `refed` command: one module per command group, each adding its commands to the parser.

A mistake of the user's prints one line on stderr and exits 2 (`--debug` shows the traceback). The command
modules load what they run only when it runs, so `refed --help` starts fast.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from refed_dspy.cli import compare, data, experiment, judge, maintenance, optimize, settings, synthesize, view
from refed_dspy.errors import RefedError
from refed_dspy.sync import stop_running

GROUPS = (
    synthesize,
    compare,
    judge,
    data,
    settings,
    optimize,
    experiment,
    view,
    maintenance,
)  # in `refed --help` order
EXIT_CODES = """exit codes (every command):
  0    done
  1    finished short: partial, exhausted, stopped by a budget, or a filter that kept less than a tenth
       of its input (what was made is kept)
  2    your input: a config, seed file, model, key or run dir it cannot use (one line on stderr; nothing
       written is damaged)
  3    stopped by the provider or the machine (resumable: run the same command again)
  128+N  stopped by signal N (Ctrl-C, SIGTERM, SIGHUP; resumable)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Synthesize instruction-tuning data with Reference-Level Feedback (Mehri et al., EACL 2026), "
        "as a declarative DSPy program.",
        epilog=f"Run `refed COMMAND --help` for a command's options.\n\n{EXIT_CODES}",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def _version() -> str:
    from refed_dspy import __version__

    return __version__


_signals: list[int] = []
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop_like_sigint(signum: int, frame) -> None:  # noqa: ARG001
    """SIGTERM (timeout, Docker, systemd, Slurm) and SIGHUP stop a command the way Ctrl-C does: the running coroutine
    is cancelled (a run lets its calls in flight finish and writes its summary), or, when none runs yet or any more,
    KeyboardInterrupt is raised. This does not go through SIGINT, which a process started in the background by a
    shell ignores. The exit code then says which signal it was (128 + its number)."""
    _signals.append(signum)
    if not stop_running():
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `refed` console script."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_like_sigint)
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(judge.with_action(sys.argv[1:] if argv is None else list(argv)))
        level = logging.DEBUG if args.debug else logging.INFO
        logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
        if getattr(args, "func", None):
            import dspy  # noqa: F401 - DSPy sets its loggers to INFO on import: import it first, then quiet them
        for noisy in ("httpx", "LiteLLM", "dspy", "httpcore", "openai"):
            logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
        # truncated replies are recorded as rejects; DSPy's per-call warning would only repeat that
        logging.getLogger("dspy.clients.lm").setLevel(logging.DEBUG if args.debug else logging.ERROR)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except RefedError as err:
        if debug:  # the traceback, and still the documented exit code
            import traceback

            traceback.print_exc()
        print(f"refed: error: {err.cli_message()}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        signum = _signals[-1] if _signals else signal.SIGINT
        print(
            f"refed: stopped by {signal.Signals(signum).name}; what was written is kept, run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 128 + signum
