"""The `refed` command. User mistakes print one line on stderr and exit 2 (`--debug` shows the traceback)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from refed_dspy.errors import RefedError

_NOT_BUILT = {
    "optimize": "tune the synthesis prompts with a DSPy optimizer against the judge",
    "judge": "score a run's samples with the LLM judge",
    "filter": "apply the paper's filters to a run",
    "report": "write an HTML quality report for a run",
    "export": "export a run to Hugging Face datasets and fine-tuning formats",
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="TOML config file (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config field, e.g. --set synthesis.size=200 (repeatable)")


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.summary_text import format_summary
    from refed_dspy.synthesis import synthesize

    config = load_config(args.config, args.overrides)
    on_mismatch = "fresh" if args.fresh else ("resume" if args.resume_anyway else "error")
    summary = synthesize(config, on_mismatch=on_mismatch, show_progress=config.run.progress and not args.quiet)
    print(format_summary(summary))
    return 0 if summary["status"] == "complete" else 1


def _cmd_compare(args: argparse.Namespace) -> int:
    from refed_dspy.compare import compare, markdown_table, parse_methods
    from refed_dspy.config import load_config

    config = load_config(args.config, args.overrides)
    methods = parse_methods(args.methods)
    on_mismatch = "fresh" if args.fresh else ("resume" if args.resume_anyway else "error")
    result = compare(config, methods, on_mismatch=on_mismatch, show_progress=config.run.progress and not args.quiet)
    print(markdown_table(result["rows"]), end="")
    print(f"wrote {result['json']} and {result['markdown']}")
    return 0 if all(r["status"] == "complete" for r in result["rows"]) else 1


def _cmd_config_show(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config, mask_secrets, to_toml

    config = load_config(args.config, args.overrides)
    if args.json:
        print(json.dumps(mask_secrets(config.model_dump(mode="json")), indent=2))
    else:
        print(to_toml(config), end="")
    return 0


def _cmd_seeds(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.seeds import read_references

    config = load_config(args.config, args.overrides)
    refs, report = read_references(config.seeds.source, config.seeds.format, config.seeds.split, config.seeds.limit)
    print(report.line())
    for ref in refs[: args.show]:
        print(f"- {ref.id}  {ref.instruction[:90]!r}")
    return 0


def _not_built(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"refed {name}: not built yet (it will {_NOT_BUILT[name]})", file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refed",
        description="Synthesize instruction-tuning data with Reference-Level Feedback (Mehri et al., EACL 2026), "
        "as a declarative DSPy program.",
        epilog="Run `refed COMMAND --help` for a command's options.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("synthesize", help="run (or resume) a synthesis run",
                       description="Run a synthesis run into run.dir. Running the same command again resumes it: "
                       "no sample lost or duplicated, no paid LM call repeated.")
    _add_config_args(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume-anyway", action="store_true", help="continue a run dir made by a different config")
    group.add_argument("--fresh", action="store_true", help="delete the run dir's records and cache and start over")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synthesize)

    p = sub.add_parser("compare", help="run several methods on the same references and size, and compare them",
                       description="Run each method into <run.dir>/<method>/ (resumable like any run) and print one "
                       "table: samples, LM calls with feedback calls apart, tokens, cost, rejects and wall time. "
                       "The table is also written to <run.dir>/compare.json and compare.md.")
    _add_config_args(p)
    p.add_argument("--methods", "-m", default="refed,sample_feedback,instruction_feedback,no_feedback",
                   help="comma-separated methods (default: the paper's four: refed,sample_feedback,instruction_feedback,no_feedback)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume-anyway", action="store_true", help="continue run dirs made by a different config")
    group.add_argument("--fresh", action="store_true", help="start every method's run over")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("config", help="inspect configuration", description="Inspect configuration.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser("show", help="print the resolved config (secrets masked)",
                           description="Print the resolved config: defaults, file and --set overrides, secrets masked.")
    _add_config_args(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(func=_cmd_config_show)

    p = sub.add_parser("seeds", help="load the seed references and report what was kept",
                       description="Load the references named by seeds.source and print what was kept and skipped.")
    _add_config_args(p)
    p.add_argument("--show", type=int, default=5, metavar="N", help="list the first N references (default 5)")
    p.set_defaults(func=_cmd_seeds)

    for name, what in _NOT_BUILT.items():
        p = sub.add_parser(name, help=f"(not built yet) {what}", description=f"Not built yet: will {what}.")
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_not_built(name))
    return parser


def _version() -> str:
    from refed_dspy import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `refed` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("httpx", "LiteLLM", "dspy", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
    # truncated replies are recorded as rejects; DSPy's per-call warning would only repeat that
    logging.getLogger("dspy.clients.lm").setLevel(logging.DEBUG if args.debug else logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except RefedError as err:
        if args.debug:
            raise
        print(f"refed: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("refed: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
