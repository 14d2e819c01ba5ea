"""`refed optimize`: tune a program against the judge."""

from __future__ import annotations

import argparse
from typing import Any

from refed_dspy.cli.common import add_config_args, add_mismatch_args, add_verbose_arg, on_mismatch
from refed_dspy.ledger.usage import usd


def _cmd_optimize(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.optimizers.outputs import kept_line
    from refed_dspy.optimizers.run import optimize

    config = load_config(args.config, args.overrides)
    result = optimize(config, on_mismatch=on_mismatch(args), verbose=args.verbose or args.debug)
    usage = result.usage
    print(
        f"optimizer {result.optimizer} (target {result.extra.get('target', 'respond')}): valset score {result.score_before:.4f} -> {result.score_after:.4f} "
        f"({result.n_train} train / {result.n_val} val examples, {len(result.steps)} steps)"
    )
    print(
        f"LM calls {usage['calls']} ("
        + ", ".join(f"{r} {v['calls']}" for r, v in usage["by_role"].items())
        + f"), cost {usd(usage['cost_usd'])}"
    )
    failures = result.extra.get("metric_failures") or {}
    if failures.get("failed"):
        print(
            f"judge failures: {failures['failed']} of {failures['calls']} judgings scored 0 ("
            + ", ".join(f"{n} {r}" for r, n in failures["by_reason"].items())
            + f"); the last: {failures['last']}"
        )
    if failures.get("copies"):
        print(
            f"copies: {failures['copies']} of {failures['calls']} predictions copied their reference and scored 0 "
            "unjudged (quality.copy_threshold)"
        )
    kept = kept_line(result.extra)
    if kept:
        print(kept)
    print(f"wrote {result.program_path} (use it: refed synthesize --program {result.program_path})")
    if result.model_uri:
        print(f"MLflow run {result.mlflow_run_id}, model {result.model_uri}")
    return 0


def register_optimize(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "optimize",
        help="tune a program (optimize.target) with a DSPy optimizer against the judge",
        description="Compile the program of optimize.target (respond: generate + improve; instructions: "
        "describe + synthesize; pipeline: every predictor of the method) with [optimize].optimizer "
        "(MIPROv2, GEPA, bootstrap, bootstrap_random_search, SIMBA) against its judge metric, on "
        "examples from optimize.examples_run or a small refed synthesis (respond), or on the references "
        "(instructions, pipeline). Writes program.json, instructions.txt, before_after.md and "
        "optimize_summary.json to optimize.out (default <run.dir>/optimize); with tracking on, logs all "
        "of it and the program to MLflow.",
    )
    add_config_args(p)
    add_mismatch_args(p, "reuse an examples run dir made by a different config", "synthesize the examples again")
    add_verbose_arg(p, "optimize.out")
    p.set_defaults(func=_cmd_optimize)
