"""The data measured: `refed judge run RUN_DIR` and `refed judge meta-eval --labels FILE` (score a run's samples by the
judge; check the judge against human labels), and `refed score FILE_OR_RUN --out FILE.jsonl` (Reflection-Tuning's
statistics of each pair of a seed file or a run, measured by a local model: the scorer extra)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from refed_dspy.cli.common import (
    add_config_args,
    add_ledger_arg,
    add_mismatch_args,
    add_quiet_arg,
    add_ray_arg,
    add_set_arg,
    config_for_run,
    config_for_source,
    on_mismatch,
    prints_help,
    ray_overrides,
)
from refed_dspy.config.section import expand_home
from refed_dspy.errors import ConfigError, RunInterrupted
from refed_dspy.text.counts import counted


def _cmd_judge_run(args: argparse.Namespace) -> int:
    from refed_dspy.quality.judge import judge_run

    args.overrides = list(args.overrides) + ray_overrides(args)
    config = config_for_run(args, args.run_dir)
    if args.detach and config.judging.mode != "batch":
        raise ConfigError('--detach needs judging.mode = "batch"')
    try:
        s = judge_run(
            args.run_dir, config, on_mismatch=on_mismatch(args), show_progress=config.run.progress, detach=args.detach
        )
    except RunInterrupted as stop:  # a signal: what was judged and spent, as a finished judging says it
        _say_judged(stop.summary)
        raise
    if s.status == "submitted":
        print(f"judge batches submitted; `refed status {args.run_dir}` shows them; run the same command to collect")
        return 0
    _say_judged(s)
    return 0 if s.status == "complete" else 1


def _say_judged(s: Any) -> None:
    """The lines a judging ends with (`s`: its JudgeSummary): what was judged, the scores, the calls and the cost, and
    what the provider's rate limits did to it."""
    from refed_dspy.engine.window import rate_limit_line
    from refed_dspy.ledger.usage import tier_text
    from refed_dspy.quality.figures import verdict_text
    from refed_dspy.store.records import self_preference_line

    cost = "unknown" if s.cost_usd is None else f"${s.cost_usd:.4f}"
    print(f"judged {s.judged}/{s.samples} samples of {s.run_dir} with {s.judge}: {s.status}")
    if s.self_preference:
        print(f"  note: {self_preference_line(s.self_preference)}")
    print(f"  {verdict_text(s)}")
    rejected = ", ".join(f"{n} {reason}" for reason, n in sorted((s.rejects or {}).items())) or "none"
    print(f"  {s.usage['calls']} judge calls, {cost}; rejects: {rejected}")
    if s.status == "partial" and s.rejects:
        print(
            f"  {counted(s.samples - s.judged, 'sample')} not judged: the judge's replies to them could not be used "
            f"({s.run_dir}/judge_rejects.jsonl says why); running this again does not ask again for them; "
            "--fresh with another [judge] model (or a larger judge.max_tokens, where they were cut off) judges them "
            "again: the same judge's replies come back from the run's cache"
        )
    limited = rate_limit_line(s.concurrency or {})
    if limited:
        print(f"  rate limits: {limited}")
    tiers = tier_text(s.usage)
    if tiers:
        print(f"  tiers: {tiers}")


def _cmd_meta_eval(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.quality.meta_eval import format_meta_eval, meta_eval
    from refed_dspy.store.jsonl import write_json_atomic

    if not args.labels:
        raise ConfigError("refed judge meta-eval needs --labels FILE (JSONL of pairwise or likert items)")
    result = meta_eval(load_config(args.config, args.overrides), args.labels)
    print(format_meta_eval(result))
    if args.out:
        write_json_atomic(args.out, result.to_json())
        print(f"wrote {args.out}")
    if result.unjudged:
        print(
            f"refed: stopped at [judging] max_calls or max_cost_usd with {result.unjudged} label items not judged: the "
            "figures above are of the others; raise the cap to judge them all",
            file=sys.stderr,
        )
        return 1
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "judge",
        help="score a run's samples with the LLM judge, or meta-evaluate the judge",
        description="`refed judge run RUN_DIR` scores every sample (pointwise rubric on the final "
        "response; improved vs draft in both orders) into RUN_DIR/judgments.jsonl; resumable, "
        "concurrent, costed. `refed judge meta-eval --labels FILE` checks the judge against human "
        "labels.",
    )
    actions = p.add_subparsers(dest="judge_command", metavar="ACTION")
    p.set_defaults(func=prints_help(p))
    run = actions.add_parser(
        "run",
        help="judge the samples of RUN_DIR (resumable)",
        description="Judge every sample of RUN_DIR not judged yet, with [judge] and "
        "[judging] of --config, else of RUN_DIR/config.toml.",
    )
    run.add_argument("run_dir", metavar="RUN_DIR", type=expand_home)
    add_config_args(run, "judging.concurrency=16")
    add_mismatch_args(
        run,
        "keep judgments made with a different judge config",
        "delete earlier judgments and judge again (an answer the run's cache holds for the same request comes back "
        "from it, free and unchanged)",
    )
    add_ledger_arg(run)
    run.add_argument(
        "--detach",
        action="store_true",
        help="batch mode: submit the judge batches and exit; run the same command again to collect",
    )
    add_ray_arg(run, "judging.concurrency")
    add_quiet_arg(run)
    run.set_defaults(func=_cmd_judge_run)
    meta = actions.add_parser(
        "meta-eval",
        help="check the judge against human labels",
        description="Judge labelled items (pairwise preferences, likert scores) and report "
        "agreement: pairwise accuracy, tie and position-bias rates, Pearson and Spearman.",
    )
    add_config_args(meta, "judge.temperature=0")
    meta.add_argument(
        "--labels",
        metavar="FILE",
        type=expand_home,
        help="JSONL of labelled items: pairwise preferences and likert scores (see docs/guides/judge-and-filter.md)",
    )
    meta.add_argument("--out", metavar="FILE", type=expand_home, help="also write the results as JSON")
    meta.set_defaults(func=_cmd_meta_eval)


def _cmd_score(args: argparse.Namespace) -> int:
    from refed_dspy.quality.statistics import score_source

    config = config_for_source(args, args.source)
    try:
        r = score_source(args.source, args.out, config, limit=args.limit, show_progress=config.run.progress)
    except RunInterrupted as stop:  # a signal: what --out holds now; then the stop's line says how to resume
        s = stop.summary
        print(
            f"scored {s['pairs']} of {s['asked']} pairs of {s['source']} with {s['model']}: interrupted -> {s['out']}"
        )
        raise
    _say_scored(r)
    return 0


def _say_scored(r: Any) -> None:
    """The lines a finished `refed score` prints (`r`: its ScoreFile): what was scored, into where, the means."""
    m = r["means"]
    skipped = f" ({r['skipped']} of its {r['rows']} rows skipped)" if r["skipped"] else ""
    if r["skipped"]:  # a row of the source that no line of --out stands for is said, never dropped unseen
        print(f"refed score: skipped {r['skipped']} rows of {r['source']}: {r['skipped_why']}", file=sys.stderr)
    if r["dropped"]:
        print(
            f"refed score: dropped {r['dropped']} lines of {r['out']} that were no row of this scoring (cut off by a "
            "kill, of another model or token limit, or of a pair the source does not give)",
            file=sys.stderr,
        )
    resumed = f", {r['resumed']} of them there already" if r["resumed"] else ""
    print(
        f"scored {r['pairs']} pairs of {r['source']}{skipped} with {r['model']} in {r['seconds']} s -> "
        f"{r['out']}{resumed}"
    )
    print(
        f"  means: instruction ppl {m['instruction_ppl']}, response ppl {m['response_ppl']}, given the instruction "
        f"{m['response_ppl_given_instruction']}, IFD {m['ifd']} ({m['ifd_at_least_1']:.0%} at 1 or above), "
        f"coherence {m['coherence']}"
    )


def register_score(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "score",
        help="measure each pair of a seed file or a run with a local model: perplexities, IFD, coherence",
        description="Score each instruction-response pair of FILE_OR_RUN (a seed file or dataset as [seeds] source "
        "takes it, or a run dir: its samples' final responses and drafts) with the scoring model of [scoring] "
        "(SmolLM2-135M by default, offline): the instruction's perplexity, the response's alone and given the "
        "instruction, IFD (their ratio: at 1 or above the instruction does not help predict the response) and "
        "coherence. Writes one JSON line per pair to --out, each as soon as its pair is scored: a scoring stopped "
        "keeps its rows there, and the same command again scores only the pairs --out does not hold. Needs the "
        "scorer extra: pip install --require-hashes --no-deps --only-binary :all: -r requirements/scorer.txt. "
        "Passes are cached ([scoring] cache).",
    )
    p.add_argument("source", metavar="FILE_OR_RUN", type=expand_home, help="a seed file, dataset or run dir")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        type=expand_home,
        help="the JSONL file to write (its rows of this scoring are kept: only the pairs it lacks are scored)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="score the first N pairs only")
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        type=expand_home,
        help="TOML config file (default: the run's own, else defaults)",
    )
    add_set_arg(p, "scoring.model=HuggingFaceTB/SmolLM2-360M-Instruct")
    add_quiet_arg(p)
    p.set_defaults(func=_cmd_score)
