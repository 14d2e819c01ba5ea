"""`refed status`: where a run dir or an experiment dir stands, read-only."""

from __future__ import annotations

import argparse
from typing import Any

from refed_dspy.config.section import expand_home


def _cmd_status(args: argparse.Namespace) -> int:
    from refed_dspy.store.jsonl import json_text
    from refed_dspy.view.status import run_status, status_text

    status = run_status(args.run_dir)
    print(json_text(status.to_json(), indent=2) if args.json else status_text(status))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="the state of any run dir: running (and by whom), complete, stopped, ...; samples, rejects, cost",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read-only: what RUN_DIR's records, summaries, lock and batch journals say now, whether a\n"
        "process is writing it or not. It takes no lock, writes nothing and asks no provider anything.\n\n"
        "states: running (a process holds the dir's lock: its PID, host and command are shown), complete,\n"
        "exhausted or budget (finished short), submitted (batch mode: batches wait at the provider),\n"
        "stopped (by a signal, or killed: run the same command to resume), failed (aborted by the\n"
        "provider or a streak of failures: the same command resumes)",
        epilog="exit codes: 0 the status was read (whatever the run's state); 2 RUN_DIR is not a run directory\n"
        "(one line on stderr)",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=expand_home)
    p.add_argument("--json", action="store_true", help="print the status as JSON alone (a RunStatus)")
    p.set_defaults(func=_cmd_status)
