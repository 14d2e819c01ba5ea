"""`refed synthesize` and `refed estimate`: make a dataset, and price it first."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from refed_dspy.cli.common import (
    add_config_args,
    add_ledger_arg,
    add_mismatch_args,
    add_quiet_arg,
    add_ray_arg,
    on_mismatch,
    ray_overrides,
)
from refed_dspy.config.section import expand_home
from refed_dspy.errors import ConfigError, RunInterrupted


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.api import synthesize
    from refed_dspy.synthesis.summary import format_summary

    overrides = list(args.overrides) + ray_overrides(args)
    if args.program:
        overrides.append(f"synthesis.program={json.dumps(args.program)}")
    config = load_config(args.config, overrides)
    mismatch = on_mismatch(args)
    if args.detach and config.synthesis.mode != "batch":
        raise ConfigError('--detach needs synthesis.mode = "batch" (online calls cannot outlive the process)')
    try:
        summary = synthesize(
            config,
            on_mismatch=mismatch,
            show_progress=config.run.progress,
            detach=args.detach,
            answers_from=args.answers_from,
        )
    except RunInterrupted as stop:  # a signal: what was made and spent, as a finished run says it; then the stop's line
        print(format_summary(stop.summary))
        raise
    print(format_summary(summary))
    if summary["status"] == "submitted":
        print(
            f"batches submitted; `refed status {config.run.dir}` shows them; run the same command to collect the "
            "results and go on"
        )
        return 0
    if summary["status"] == "exhausted":
        print(
            f"stopped short at {summary['samples']}/{summary['size']} samples: {summary.get('exhausted')}",
            file=sys.stderr,
        )
    return 0 if summary["status"] == "complete" else 1


def _cmd_estimate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from refed_dspy.config import load_config
    from refed_dspy.errors import RunDirError
    from refed_dspy.store.jsonl import json_text, write_json_atomic
    from refed_dspy.store.ownership import check, claim
    from refed_dspy.synthesis.estimate import estimate, format_estimate
    from refed_dspy.synthesis.pilot import pilot_estimate

    config = load_config(args.config, args.overrides)
    ours = {"kind": "run", "also": ("compare",), "flag": "run.dir"}  # a comparison's dir may hold one too
    if not args.no_save:
        try:
            check(config.run.dir, **ours)
        except RunDirError as err:
            raise RunDirError(f"{err} (or pass --no-save)") from None
    if args.pilot is not None:
        if args.no_save:
            raise ConfigError("--pilot writes its run into <run.dir>/pilot: it cannot go with --no-save")
        e = pilot_estimate(config, args.pilot, show_progress=config.run.progress)
    else:
        e = estimate(config, say=lambda line: print(f"estimate: {line}", file=sys.stderr, flush=True))
    print(json_text(e.to_json(), indent=2) if args.json else format_estimate(e))  # --json: stdout is JSON alone
    said = sys.stderr if args.json else sys.stdout
    run_dir = Path(config.run.dir)
    if not args.no_save and _begun_by(config):  # an estimate made now is measured on the run itself
        print(
            f"not written to {run_dir / 'estimate.json'}: a run of this config (whatever its size) has begun in "
            f"{run_dir}, and the file keeps the estimate made before it began (the run's summary states its error)",
            file=said,
        )
    elif not args.no_save:
        try:
            claim(config.run.dir, **ours)
            write_json_atomic(run_dir / "estimate.json", e.to_json())
            print(f"wrote {run_dir / 'estimate.json'} (the run's summary will state the estimate's error)", file=said)
        except RunDirError as err:
            print(err, file=sys.stderr)
        except OSError as err:
            print(f"cannot write {run_dir / 'estimate.json'}: {err.strerror or err}", file=sys.stderr)
    return 0


def _begun_by(config: Any) -> bool:
    """Whether a run of `config` has begun in its run dir (its summary says so; a run stopped before it wrote one has
    its ledger); a run of another config is not (an estimate is then for the run that replaces it)."""
    from refed_dspy.config import config_hash
    from refed_dspy.store.jsonl import read_json
    from refed_dspy.store.rundir import RunDir

    rundir = RunDir(config.run.dir)
    summary = read_json(rundir.summary)
    if summary.get("config_hash"):
        return summary["config_hash"] == config_hash(config)
    return rundir.ledger.exists()


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "synthesize",
        help="run (or resume) a synthesis run",
        description="Run a synthesis run into run.dir. Running the same command again resumes it: "
        "no sample lost or duplicated, no paid LM call repeated.",
    )
    add_config_args(p)
    add_mismatch_args(
        p, "continue a run dir made by a different config", "delete the run dir's records and cache and start over"
    )
    add_ledger_arg(p)
    p.add_argument(
        "--program",
        metavar="P",
        type=expand_home,
        help="respond and improve with a compiled program: a program.json from "
        "`refed optimize`, or an MLflow model URI (models:/NAME/VERSION, models:/NAME@ALIAS such as an "
        "experiment's champion, runs:/RUN_ID/program); "
        "same as --set synthesis.program=P",
    )
    p.add_argument(
        "--answers-from",
        metavar="DIR",
        type=expand_home,
        help="the directory of work this run builds on (the `refed optimize` out dir its --program came from, or "
        "another run dir): a request its cache answered is answered from there, not paid again (the feedback the "
        "optimization's examples collected on the same references)",
    )
    add_ray_arg(p)
    add_quiet_arg(p)
    p.add_argument(
        "--detach",
        action="store_true",
        help="batch mode: submit the batches the run can make now and exit "
        "(status 'submitted'); run the same command again to collect and go on",
    )
    p.set_defaults(func=_cmd_synthesize)

    p = sub.add_parser(
        "estimate",
        help="calls, tokens and cost of a synthesis config per stage, online and batch, before spending",
        description="Walks the first references through the real prompts (no LM "
        "call is made), counts their tokens with the model's tokenizer and scales to synthesis.size; it says "
        "which output format and tokenizer it assumed, and how long it took the replies to be and where from: "
        "this model's earlier runs beside run.dir, else the defaults (replies as long as the references'). With "
        "--pilot N it pays for N real samples instead and projects from what they cost and how long they wrote. "
        "Writes <run.dir>/estimate.json, against which the run's summary states the estimate's error "
        "(not once a run of that config has begun there).",
    )
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print the estimate as JSON alone, instead of the table")
    p.add_argument("--no-save", action="store_true", help="do not write <run.dir>/estimate.json")
    p.add_argument(
        "--pilot",
        type=int,
        metavar="N",
        help="pay for N real samples (a run in <run.dir>/pilot, kept and resumable) and project the whole run from "
        "what they measured, instead of walking the prompts",
    )
    p.set_defaults(func=_cmd_estimate)
