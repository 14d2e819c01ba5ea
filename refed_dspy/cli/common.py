"""What several commands share: the config options, the choice for a run dir made by another config, and the
config of an existing run dir."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from refed_dspy.config.section import expand_home


def add_config_args(p: argparse.ArgumentParser, example: str = "synthesis.size=200") -> None:
    """`--config FILE` and `--set` (`example`: a field the command reads)."""
    p.add_argument(
        "--config", "-c", metavar="FILE", type=expand_home, help="TOML config file (default: built-in defaults)"
    )
    add_set_arg(p, example)


def add_set_arg(p: argparse.ArgumentParser, example: str) -> None:
    """`--set SECTION.KEY=VALUE` (repeatable) into `args.overrides`."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one config field, e.g. --set {example} (repeatable; VALUE none unsets an optional field)",
    )


def add_ray_arg(p: argparse.ArgumentParser, concurrency: str = "synthesis.concurrency") -> None:
    """`--ray [ADDRESS]`: run the LM calls on Ray (the [ray] extra); same as --set ray.enabled=true (ray.address);
    `concurrency`: the field that says how many calls each worker keeps in flight."""
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the LM calls on Ray workers (pip install 'refed-dspy[ray]'): ADDRESS is what ray.init takes "
        "('auto', 'ray://host:10001'); none starts a local Ray. Same as --set ray.enabled=true "
        f"[--set ray.address=ADDRESS]; ray.workers sets the workers, {concurrency} the calls each keeps in flight",
    )


def ray_overrides(args: argparse.Namespace) -> list[str]:
    """The --set overrides `--ray [ADDRESS]` stands for (none without it)."""
    if getattr(args, "ray", None) is None:
        return []
    return ["ray.enabled=true"] + ([f"ray.address={json.dumps(args.ray)}"] if args.ray else [])


def add_mismatch_args(p: argparse.ArgumentParser, resume_help: str, fresh_help: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume-anyway", action="store_true", help=resume_help)
    group.add_argument("--fresh", action="store_true", help=fresh_help)


def add_ledger_arg(p: argparse.ArgumentParser) -> None:
    """`--new-ledger`: the same as --set run.new_ledger=true (appended to the overrides)."""
    p.add_argument(
        "--new-ledger",
        dest="overrides",
        action="append_const",
        const="run.new_ledger=true",
        help="start a new write-ahead ledger (ledger.jsonl, judge_ledger.jsonl) when the one there is gone or cannot "
        "be believed (the command refuses, exit 2, and names this flag): the old one is set aside beside it, and "
        "what it said earlier invocations paid that no record holds (for optimize: all they paid) no longer counts "
        "in the totals and the budget; same as --set run.new_ledger=true",
    )


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    """`--quiet`/`-q`: the same as --set run.progress=false (appended to the overrides)."""
    p.add_argument(
        "--quiet",
        "-q",
        dest="overrides",
        action="append_const",
        const="run.progress=false",
        help="no progress line (same as --set run.progress=false)",
    )


def on_mismatch(args: argparse.Namespace) -> str:
    """What to do with a run dir (or judgments) made by another config: error, resume, or fresh."""
    return "fresh" if args.fresh else ("resume" if args.resume_anyway else "error")


def config_for_run(args: argparse.Namespace, run_dir: str) -> Any:
    """--config when given, else the run dir's own config.toml; --set applies to either."""
    from refed_dspy.config import load_config
    from refed_dspy.errors import RunDirError
    from refed_dspy.store.ownership import is_run_dir, refuse_folder
    from refed_dspy.store.rundir import RunDir, kept_seeds

    if not Path(run_dir).exists():  # a mistyped path: no --config makes it a run dir
        raise RunDirError(f"{run_dir} is not a run directory (no such path)")
    if args.config:
        return load_config(args.config, args.overrides)
    path = RunDir(run_dir).config
    if not path.exists():
        refuse_folder(Path(run_dir), "a run directory", is_run_dir)  # a compare dir, a user's runs/: its run dirs
        raise RunDirError(
            f"{run_dir} is not a run directory (no config.toml); pass --config or run `refed synthesize` first"
        )
    # judge, filter, report, export: the method need not be here; references handed in from Python are its seeds
    return kept_seeds(RunDir(run_dir), load_config(path, args.overrides, record=True))


def config_for_source(args: argparse.Namespace, source: str) -> Any:
    """--config when given, else the run dir's own config.toml when `source` is a run dir, else the defaults; --set
    applies to each (`refed score`, `refed train`: a source is a run dir or a dataset)."""
    from pathlib import Path

    from refed_dspy.config import load_config
    from refed_dspy.store.rundir import RunDir

    if args.config:
        return load_config(args.config, args.overrides)
    own = RunDir(source).config
    if Path(source).is_dir() and own.exists():
        return load_config(own, args.overrides, record=True)
    return load_config(None, args.overrides)


def prints_help(parser: argparse.ArgumentParser) -> Any:
    """A command function for a command group named without its action: its help, and exit 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def add_verbose_arg(p: argparse.ArgumentParser, where: str) -> None:
    """--verbose: what DSPy, its optimizers, optuna and MLflow print, on the terminal instead of <where>/dspy.log."""
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help=f"show what DSPy, its optimizers, optuna and MLflow print (progress bars, proposed programs) instead of "
        f"keeping it in <{where}>/dspy.log",
    )
