"""`refed filter`, `refed report` and `refed export`: what to keep of a run, what it looks like, and the files to train on."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from refed_dspy.cli.common import add_config_args, config_for_run
from refed_dspy.config.section import expand_home

FILTER_EXIT_CODES = """exit codes:
  0    done: the chain kept at least a tenth of its input
  1    the chain kept nothing, or less than a tenth of its input (one line on stderr says which filter removed
       the most; what it wrote is kept in --out)
  2    your input: a run dir, filter or --out it cannot use (one line on stderr; nothing is written)"""


def _cmd_filter(args: argparse.Namespace) -> int:
    from refed_dspy.quality.filter_run import filter_run, parse_filter, shortfall

    config = config_for_run(args, args.run_dir)
    specs = [parse_filter(t) for t in args.apply] if args.apply else list(config.filters)
    s = filter_run(args.run_dir, args.out, specs, overwrite=args.overwrite, unjudged=args.unjudged, config=config)
    for step in s["steps"]:
        print(
            f"  {step['step']}. {step['filter']:<24} {step['in']:>7} in  {step['kept']:>7} kept  {step['removed']:>7} removed"
        )
    if s["unjudged"]["samples"]:
        u = s["unjudged"]
        print(
            f"  {u['samples']} samples had no judgment ({u['why']}): {'kept' if u['policy'] == 'keep' else 'dropped'} "
            "by the judge-based filters"
        )
    print(f"kept {s['kept']} of {s['input']} samples -> {s['out']} (removed ones in its rejects.jsonl)")
    short = shortfall(s)
    if short:
        print(f"refed: {short}", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from refed_dspy.quality.report import build_report

    config = config_for_run(args, args.run_dir)
    result = build_report(
        args.run_dir, config, score=args.score, score_all=args.score_all, show_progress=config.run.progress
    )
    print(result["text"])
    print(f"wrote {result['html']}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from refed_dspy.export.run import export_run

    config = config_for_run(args, args.run_dir) if (args.config or args.overrides) else None
    r = export_run(
        args.run_dir,
        args.format,
        args.out,
        which=args.response,
        system=args.system_prompt,
        val_fraction=args.val_fraction,
        seed=args.seed,
        repo_id=args.repo_id,
        private=not args.public,
        overwrite=args.overwrite,
        config=config,
    )
    where = r["out"] or f"https://huggingface.co/datasets/{r['repo_id']}"
    print(
        f"exported {', '.join(f'{n} {k}' for k, n in r['splits'].items())} samples ({r['response']} responses) "
        f"as {r['format']} to {where}"
    )
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "filter",
        help="apply the filter chain to a run, writing the result to another dir",
        description="Apply [[filters]] from the config (or --apply ones, in order) to RUN_DIR's samples.\n"
        "Kept samples go to OUT/samples.jsonl, removed ones to OUT/rejects.jsonl with the filter and\n"
        "reason; the input run is never modified.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FILTER_EXIT_CODES,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=expand_home)
    p.add_argument("--out", required=True, metavar="DIR", type=expand_home)
    add_config_args(p)
    p.add_argument(
        "--apply",
        action="append",
        default=[],
        metavar="NAME[:KEY=VALUE,...]",
        help="a filter step instead of the config's, e.g. rouge_diversity:threshold=0.7 (repeatable)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier result in --out")
    p.add_argument(
        "--unjudged",
        choices=["keep", "drop"],
        help="what judge-based filters do with samples that have "
        "no judgment (required when there are any: a filter never drops them silently)",
    )
    p.set_defaults(func=_cmd_filter)

    _register_report(sub)

    p = sub.add_parser(
        "export",
        help="export a run to fine-tuning formats, Hugging Face datasets or the hub",
        description="Export RUN_DIR's samples (or a filtered dir's) with a dataset card (README.md). "
        "Formats: messages (OpenAI chat JSONL), sharegpt, alpaca, parquet, hf (save_to_disk), hub "
        "(push_to_hub; token in $HF_TOKEN). The train/validation split keeps each reference's samples "
        "on one side.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=expand_home)
    p.add_argument("--format", "-f", required=True, choices=["messages", "sharegpt", "alpaca", "parquet", "hf", "hub"])
    p.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        type=expand_home,
        help="output directory: it gets train.*, validation.* and README.md (optional for --format hub)",
    )
    p.add_argument(
        "--response",
        choices=["improved", "draft"],
        default="improved",
        help="which response to export (improved falls back to the draft when a method has none)",
    )
    p.add_argument("--system-prompt", metavar="TEXT", help="a system message to put before each pair")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of samples for validation, taken in whole references (default 0.1; 0 = none); a share far from "
        "this, as few references make, is said on stderr",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--repo-id", metavar="OWNER/NAME", help="hub dataset repo for --format hub")
    p.add_argument("--public", action="store_true", help="make the hub repo public (default private)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_config_args(p)
    p.set_defaults(func=_cmd_export)


def _register_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report.html and print a text summary",
        description="Write a self-contained RUN_DIR/report.html (and report.json) and print a summary.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=expand_home)
    add_config_args(p)
    p.add_argument(
        "--score",
        action="store_true",
        help="add Reflection-Tuning's data statistics (perplexities, IFD, coherence) of the references, drafts and "
        "final responses, measured by the [scoring] model (the scorer extra); on a run of more than [scoring] "
        "report_pairs samples, those many of them",
    )
    p.add_argument("--score-all", action="store_true", help="as --score, on every sample")
    p.set_defaults(func=_cmd_report)
