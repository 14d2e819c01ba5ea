"""The data proven: `refed train RUN_OR_FILE --out DIR` fine-tunes a student on a run's samples, and `refed evaluate
--student DIR` has it answer an evaluation set against a baseline, judged pairwise (the train extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from refed_dspy.cli.common import (
    add_ledger_arg,
    add_mismatch_args,
    add_quiet_arg,
    add_set_arg,
    config_for_source,
    on_mismatch,
)
from refed_dspy.config.section import expand_home
from refed_dspy.errors import RunInterrupted


def _cmd_train(args: argparse.Namespace) -> int:
    from refed_dspy.training import train_student
    from refed_dspy.training.fine_tune import finished_training

    config = config_for_source(args, args.source)
    before = finished_training(Path(args.out))
    try:
        summary = train_student(args.source, args.out, config, show_progress=config.run.progress)
    except RunInterrupted as stop:
        from refed_dspy.training.fine_tune import CHECKPOINTS, last_checkpoint

        s, kept = stop.summary, last_checkpoint(Path(args.out) / CHECKPOINTS)
        where = f"its checkpoint at step {kept.name.split('-')[-1]}" if kept else "the start (no checkpoint yet)"
        print(f"trained {s.student} for {s.steps} steps: interrupted; the same command resumes from {where}")
        raise
    _say_trained(summary, "already trained" if before is not None and before == summary else "trained")
    return 0


def _say_trained(s: Any, verb: str) -> None:
    """The line a finished `refed train` prints: the student, the pairs, the steps, the losses, the adapter."""
    curve = f"loss {s.losses[0]:.3f} -> {s.losses[-1]:.3f}" if s.losses else "no loss logged"
    held = f", held-out loss {s.held_out_loss:.3f} on {s.held_out} pairs" if s.held_out_loss is not None else ""
    resumed = f", resumed at step {s.resumed_from}" if s.resumed_from else ""
    print(
        f"{verb} {s.student} on {s.samples} pairs in {s.steps} steps{resumed} ({s.wall_s:.0f} s, {s.device}, "
        f"{s.dtype}): {curve}{held} -> {s.adapter}"
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.training import evaluate_students

    config = load_config(args.config, args.overrides)
    try:
        result = evaluate_students(
            args.student,
            args.eval,
            args.out,
            config,
            baseline=args.baseline,
            on_mismatch=on_mismatch(args),
            show_progress=config.run.progress,
        )
    except RunInterrupted:
        print("evaluation interrupted: the answers and judgments made are kept; the same command resumes")
        raise
    lc = f", length-controlled {result.lc_win_rate:.0%}" if result.lc_win_rate is not None else ""
    cost = f", ${result.cost_usd:.4f}" if result.cost_usd is not None else ""
    print(f"{result.student} against {result.baseline} on {result.pairs} instructions of {result.eval_set}{lc}")
    served = ""
    if result.answer_calls:
        paid = f", ${result.answer_cost_usd:.4f}" if result.answer_cost_usd is not None else ""
        served = f"; the students' server: {result.answer_calls} calls{paid}"
    print(f"{result.verdict} ({result.judge_calls} judge calls{cost}{served})")
    if result.status == "partial":  # the judge failed for good on some: running it again does not ask again
        print(
            f"judging partial: {result.pairs} of {result.instructions} instructions judged; the judge's replies to "
            f"the others could not be used ({Path(result.answers).parent / 'judge_rejects.jsonl'} says why): --fresh with "
            "another [judge] model (or a larger judge.max_tokens, where they were cut off) judges them"
        )
        return 1
    if result.status != "complete":
        print(
            f"judging {result.status}: {result.pairs} of {result.instructions} instructions judged; the same command "
            "judges the rest (with a higher cap where a cap stopped it)"
        )
        return 1
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "train",
        help="fine-tune a student on a run's samples with LoRA (the train extra)",
        description="Fine-tune the [train] student (SmolLM2-135M by default, offline, on a CPU; any Hugging Face "
        "model on a GPU) on the pairs of RUN_OR_FILE (a run dir: each sample's instruction and final response; or a "
        "dataset as [seeds] source takes it) with LoRA adapters, the loss on the responses only, in the student's "
        "chat template. A share of the pairs ([train] held_out) is kept out for a held-out loss. Writes "
        "DIR/adapter/, DIR/train_summary.json (the steps, the loss curve, the held-out loss) and checkpoints in "
        "DIR/checkpoints/: the same command again resumes a stopped training from its last checkpoint, and returns "
        "a finished one as it is. Needs the scorer and train extras: pip install --require-hashes --no-deps "
        "--only-binary :all: -r requirements/scorer.txt -r requirements/train.txt.",
    )
    p.add_argument("source", metavar="RUN_OR_FILE", type=expand_home, help="a run dir, or a dataset of pairs")
    p.add_argument(
        "--out", required=True, metavar="DIR", type=expand_home, help="the training's folder (created; resumed)"
    )
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        type=expand_home,
        help="TOML config file (default: the run's own, else defaults)",
    )
    add_set_arg(p, "train.max_steps=30")
    add_quiet_arg(p)
    p.set_defaults(func=_cmd_train)
    _register_evaluate(sub)


def _register_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare a trained student with a baseline: both answer an evaluation set, the judge picks (pairwise)",
        description="The student of --student (a `refed train` folder) and the baseline (--baseline, another one; "
        "without it, the student's own model untuned) each answer every instruction of --eval (a JSONL of "
        "instructions; default: [evaluate] eval_set, else the package's own 40), greedily, in this process, or "
        "through the OpenAI-compatible server of [evaluate] server (vLLM, llama.cpp: the names it serves them under "
        "in student_model and baseline_model). The "
        "[judge] then compares the two answers of each instruction in both orders, as `refed judge` does, under "
        "[evaluate] max_calls and max_cost_usd, its calls in a write-ahead ledger. Writes answers.jsonl, the "
        "judgment files and evaluation.json (the win rate of decisive judgments, its 95% bootstrap interval, the "
        "length-controlled win rate, ties, the judge's calls and cost) to --out (default: STUDENT/evaluation). "
        "Stopped, the same command answers and judges only what is missing. Needs the scorer and train extras "
        "(answering in this process). `refed view OUT` shows the answers and verdicts.",
    )
    p.add_argument("--student", required=True, metavar="DIR", type=expand_home, help="a `refed train` folder")
    p.add_argument(
        "--baseline", metavar="DIR", type=expand_home, help="another `refed train` folder (default: untuned)"
    )
    p.add_argument("--eval", metavar="FILE", type=expand_home, help="a JSONL file of instructions")
    p.add_argument(
        "--out", metavar="DIR", type=expand_home, help="the evaluation's folder (default: STUDENT/evaluation)"
    )
    p.add_argument(
        "--config", "-c", metavar="FILE", type=expand_home, help="TOML config file (default: built-in defaults)"
    )
    add_set_arg(p, "evaluate.max_new_tokens=128")
    add_mismatch_args(
        p,
        "keep judgments made with another judge config and judge the rest",
        "delete the judgments made with another judge config and judge again",
    )
    add_ledger_arg(p)
    add_quiet_arg(p)
    p.set_defaults(func=_cmd_evaluate)
