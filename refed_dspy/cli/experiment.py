"""Prompt optimization and comparisons: `refed optimize` (tune a program against the judge), `refed experiment` (a
grid of optimizations judged on held-out references) and `refed compare` (several methods on the same references and
size)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from refed_dspy.cli.common import (
    add_config_args,
    add_ledger_arg,
    add_mismatch_args,
    add_quiet_arg,
    add_set_arg,
    add_verbose_arg,
    on_mismatch,
)
from refed_dspy.config.section import expand_home
from refed_dspy.ledger.usage import usd


def _cmd_experiment(args: argparse.Namespace) -> int:
    from refed_dspy.experiments.experiment import experiment
    from refed_dspy.experiments.outputs import (
        HEADER,
        champion_line,
        kept_lines,
        leaderboard_rows,
        synthesis_lines,
        unfinished_lines,
    )
    from refed_dspy.ledger.usage import usd_up_to

    # what DSPy's optimizers print (traces bootstrapped, proposed programs) goes to stderr: stdout holds the table
    with contextlib.redirect_stdout(sys.stderr):
        result = experiment(args.config, args.overrides, verbose=args.verbose or args.debug)
    rows = [HEADER, *leaderboard_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for line in kept_lines(result) + unfinished_lines(result):
        print(line[2:])
    print(
        f"test examples {result.examples['test']} (detect differences of {result.detectable:.3f} in the 0-1 score with 80% power"
        + (", underpowered" if result.underpowered else "")
        + f"); champion: {result.champion or 'none'}; {result.usage['calls']} LM calls, "
        f"{usd_up_to(result.usage['cost_usd'], result.usage.get('interrupted_cost_usd'))}"
    )
    for line in synthesis_lines(result):
        print(f"synthesis check {line[2:]}")
    if line := champion_line(result):
        print(line)
    print(f"wrote {result.json_file}, {result.markdown_file} and {result.page_file}")
    if result.status != "complete":
        own = any(r.get("stopped_by") for r in result.cells)
        by_experiment = any(r.get("status") == "budget" and not r.get("stopped_by") for r in result.cells)
        if result.status != "budget":
            hint = "run"  # a failed cell is tried again
        elif own and by_experiment:
            hint = "raise the cells' own limits named above and experiment.max_calls / max_cost_usd, and run"
        elif own:
            hint = "raise the limit named above and run"
        else:
            hint = "raise experiment.max_calls / max_cost_usd and run"
        print(f"experiment {result.status}: {hint} the same command again to go on (finished cells are kept)")
    return 0 if result.status == "complete" else 1


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "experiment",
        help="run a grid of optimizations and judge each on held-out references against the uncompiled program",
        description="Read an experiment file (a run config plus an [experiment] table: grid, repeats, split), split "
        "the references into train / validation / test, run `optimize` for every cell of the grid, and judge each "
        "compiled program and the uncompiled one on the same test examples: test score, paired difference with a "
        "bootstrap interval, calls and cost. Finished cells are not run again. Writes experiment.json, "
        "experiment.md and experiment.html to experiment.out.",
    )
    p.add_argument("--config", "-c", metavar="FILE", type=expand_home, required=True, help="the experiment file (TOML)")
    add_set_arg(p, "experiment.repeats=3")
    add_ledger_arg(p)
    add_verbose_arg(p, "experiment.out")
    add_quiet_arg(p)
    p.set_defaults(func=_cmd_experiment)


def _cmd_compare(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.experiments.compare import (
        columns_for,
        compare,
        markdown_table,
        parse_methods,
        unfinished_students,
    )

    config = load_config(args.config, args.overrides)
    methods = parse_methods(args.methods)
    mismatch = on_mismatch(args)
    result = compare(
        config,
        methods,
        on_mismatch=mismatch,
        show_progress=config.run.progress,
        judge=args.judge,
        score=args.score,
        train=args.train,
    )
    print(markdown_table(result["rows"], columns_for(result["rows"], all_columns=args.all_columns)), end="")
    unfinished = unfinished_students(result["rows"])
    for line in [*(f"{r['method']}: {r['note']}" for r in result["rows"] if r.get("note")), *unfinished]:
        print(line)
    print(f"wrote {result.json_file} and {result.markdown_file}")
    stopped = any(r["status"] != "complete" or r.get("note") for r in result["rows"])  # a cap stopped some part
    return 1 if unfinished or stopped else 0


def register_compare(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "compare",
        help="run several methods on the same references and size, and compare them",
        description="Run each method into <run.dir>/<method>/ (resumable like any run) and print one "
        "table, the paper's columns: samples, the judge's score and improved wins (with --judge), IFD (with "
        "--score), response length in words, feedback calls, cost and cost per sample. --all-columns prints every "
        "figure (LM calls, tokens, rejects, wall time, diversity, ...). The table is also written to "
        "<run.dir>/compare.json (every figure, unrounded) and compare.md (both tables).",
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
    p.add_argument(
        "--train",
        action="store_true",
        help="also train a student on each method's samples ([train]; the scorer and train extras) and evaluate each "
        "against the no_feedback student with the judge ([evaluate]): its win rate and 95%% interval in the table",
    )
    p.add_argument(
        "--all-columns",
        action="store_true",
        help="print every figure of each method (LM calls, tokens, rejects, wall time, diversity, all the scores), "
        "not only the paper's columns",
    )
    add_quiet_arg(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_optimize(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.optimizers.run import optimize

    config = load_config(args.config, args.overrides)
    result = optimize(config, on_mismatch=on_mismatch(args), verbose=args.verbose or args.debug)
    usage = result.usage
    print(
        f"optimizer {result.optimizer} (target {result.extra.get('target', 'respond')}): valset score {result.score_before:.4f} -> {result.score_after:.4f} "
        f"({result.n_train} train / {result.n_val} val examples, {len(result.steps)} steps)"
    )
    print(result.kept_line)
    part = result.extra.get("this_invocation") or usage
    print(
        f"LM calls {usage['calls']} ("
        + ", ".join(f"{r} {v['calls']}" for r, v in usage["by_role"].items())
        + f"), cost {usd(usage['cost_usd'])}"
        + ("" if part["calls"] == usage["calls"] else f"; this invocation {part['calls']}, {usd(part['cost_usd'])}")
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
    print(
        f"wrote {result.program_path} (use it: refed synthesize --program {result.program_path} --answers-from "
        f"{result.out_dir}: what its examples paid for is not paid again)"
    )
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
        "of it and the program to MLflow. optimize.max_calls and optimize.max_cost_usd hold for everything the "
        "command pays for (the synthesis of its examples too) over all its runs in one optimize.out: to start over, "
        "use a new optimize.out or --new-ledger.",
    )
    add_config_args(p)
    add_mismatch_args(p, "reuse an examples run dir made by a different config", "synthesize the examples again")
    add_ledger_arg(p)
    add_verbose_arg(p, "optimize.out")
    add_quiet_arg(p)
    p.set_defaults(func=_cmd_optimize)
