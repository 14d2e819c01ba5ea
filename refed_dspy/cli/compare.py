"""`refed compare`: several methods on the same references and size."""

from __future__ import annotations

import argparse
from typing import Any

from refed_dspy.cli.common import add_config_args, add_ledger_arg, add_mismatch_args, on_mismatch


def _cmd_compare(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.experiments.compare import columns_for, compare, markdown_table, parse_methods

    config = load_config(args.config, args.overrides)
    methods = parse_methods(args.methods)
    mismatch = on_mismatch(args)
    result = compare(
        config,
        methods,
        on_mismatch=mismatch,
        show_progress=config.run.progress and not args.quiet,
        judge=args.judge,
        score=args.score,
    )
    print(markdown_table(result["rows"], columns_for(result["rows"])), end="")
    print(f"wrote {result.json_file} and {result.markdown_file}")
    return 0 if all(r["status"] == "complete" for r in result["rows"]) else 1


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "compare",
        help="run several methods on the same references and size, and compare them",
        description="Run each method into <run.dir>/<method>/ (resumable like any run) and print one "
        "table: samples, LM calls with feedback calls apart, tokens, cost, rejects and wall time. "
        "The table is also written to <run.dir>/compare.json and compare.md.",
    )
    add_config_args(p)
    p.add_argument(
        "--methods",
        "-m",
        default="refed,sample_feedback,instruction_feedback,no_feedback",
        help="comma-separated methods (default: the paper's four: refed,sample_feedback,instruction_feedback,no_feedback)",
    )
    add_mismatch_args(p, "continue run dirs made by a different config", "start every method's run over")
    add_ledger_arg(p)
    p.add_argument(
        "--judge", action="store_true", help="also judge each run (config [judge]/[judging]) and add judge columns"
    )
    p.add_argument(
        "--score",
        action="store_true",
        help="also measure each run's data with the [scoring] model (the scorer extra) and add its columns: IFD of "
        "the final responses and of the drafts, the share at IFD >= 1, perplexity given the instruction, coherence",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)
