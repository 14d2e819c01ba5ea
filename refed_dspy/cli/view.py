"""What a person sees of a refed dir, read-only: `refed view` (the local viewer) and `refed status` (where a run dir
or an experiment dir stands)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from refed_dspy.config.section import expand_home


def _cmd_view(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    # the viewer makes no network request: a run's references from the Hub are read from its local cache, or not shown
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

    from refed_dspy.errors import RunDirError
    from refed_dspy.store.ownership import refuse_folder
    from refed_dspy.view import View, serve
    from refed_dspy.view.index import is_viewable

    path = Path(args.run_dir)
    if not is_viewable(path):
        refuse_folder(path, "a run dir refed view shows", is_viewable)  # a user's runs/ given for one of its runs
        raise RunDirError(
            f"{path} is not a run dir, a filtered dir, a compare dir, an experiment dir or an evaluation (refed made "
            "none of them there, and it has no samples.jsonl, compare.json, filter_summary.json or answers.jsonl)"
        )
    if args.filtered and not (Path(args.filtered) / "filter_summary.json").is_file():
        raise RunDirError(f"--filtered {args.filtered} is not the output of `refed filter` (no filter_summary.json)")
    view = View(path, args.filtered)
    server = serve(view, args.port)
    shows = "an evaluation's answers" if view.kind == "evaluation" else f"{len(view.rows)} samples"
    where = view.status()["path"]
    if args.filtered:  # the run's samples, each marked kept or removed by the filter's output
        where, shows = path, f"{shows}, each marked kept or removed by {args.filtered}"
    print(f"serving {where} ({shows}) at http://127.0.0.1:{server.port}/ (read-only; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "view",
        help="browse a run's samples, judgments and rejects in a local web page",
        description="Serve a read-only viewer of RUN_DIR (a run dir, a `refed filter` output dir, a "
        "`refed compare` dir, a `refed experiment` dir, or a `refed evaluate` output or the training folder holding "
        "it) on 127.0.0.1: the samples with search and filters, one "
        "sample with the draft and the improved response side by side, the judge's scores and reasons, the "
        "reference, the rejects with what the model returned; an experiment's cells and each cell's program; an "
        "evaluation's figures and each instruction's two answers with the judge's verdicts. A run "
        "still being written shows new samples on reload.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=expand_home)
    p.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port on 127.0.0.1, 1-65535 (default 8765; 0 = any free port; one in use is refused)",
    )
    p.add_argument(
        "--filtered",
        metavar="DIR",
        type=expand_home,
        help="a `refed filter` output of RUN_DIR: show which samples it kept",
    )
    p.set_defaults(func=_cmd_view)


def _cmd_status(args: argparse.Namespace) -> int:
    from refed_dspy.store.jsonl import json_text
    from refed_dspy.view.status import run_status, status_text

    status = run_status(args.run_dir)
    print(json_text(status.to_json(), indent=2) if args.json else status_text(status))
    return 0


def register_status(sub: Any) -> None:
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
