"""`refed score FILE_OR_RUN --out FILE.jsonl`: Reflection-Tuning's statistics of each pair of a seed file or a run,
measured by a local model (the scorer extra)."""

from __future__ import annotations

import argparse
from typing import Any

from refed_dspy.cli.common import add_set_arg
from refed_dspy.config.section import expand_home


def _cmd_score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from refed_dspy.config import load_config
    from refed_dspy.quality.statistics import score_source
    from refed_dspy.store.rundir import RunDir

    run_config = RunDir(args.source).config
    if args.config:
        config = load_config(args.config, args.overrides)
    elif Path(args.source).is_dir() and run_config.exists():
        config = load_config(run_config, args.overrides, record=True)
    else:
        config = load_config(None, args.overrides)
    r = score_source(args.source, args.out, config, limit=args.limit, show_progress=config.run.progress)
    m = r["means"]
    print(f"scored {r['pairs']} pairs of {r['source']} with {r['model']} in {r['seconds']} s -> {r['out']}")
    print(
        f"  means: instruction ppl {m['instruction_ppl']}, response ppl {m['response_ppl']}, given the instruction "
        f"{m['response_ppl_given_instruction']}, IFD {m['ifd']} ({m['ifd_at_least_1']:.0%} at 1 or above), "
        f"coherence {m['coherence']}"
    )
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "score",
        help="measure each pair of a seed file or a run with a local model: perplexities, IFD, coherence",
        description="Score each instruction-response pair of FILE_OR_RUN (a seed file or dataset as [seeds] source "
        "takes it, or a run dir: its samples' final responses and drafts) with the scoring model of [scoring] "
        "(SmolLM2-135M by default, offline): the instruction's perplexity, the response's alone and given the "
        "instruction, IFD (their ratio: at 1 or above the instruction does not help predict the response) and "
        "coherence. Writes one JSON line per pair to --out. Needs the scorer extra: pip install --require-hashes "
        "--no-deps --only-binary :all: -r requirements/scorer.txt. Passes are cached ([scoring] cache).",
    )
    p.add_argument("source", metavar="FILE_OR_RUN", type=expand_home, help="a seed file, dataset or run dir")
    p.add_argument("--out", required=True, metavar="FILE", type=expand_home, help="the JSONL file to write")
    p.add_argument("--limit", type=int, metavar="N", help="score the first N pairs only")
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        type=expand_home,
        help="TOML config file (default: the run's own, else defaults)",
    )
    add_set_arg(p, "scoring.model=HuggingFaceTB/SmolLM2-360M-Instruct")
    p.set_defaults(func=_cmd_score)
