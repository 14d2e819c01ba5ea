"""`refed compare`: run several methods on the same references and size, and tabulate them.

Each method runs into its own sibling run directory `<run.dir>/<method>/`, so every one of them
resumes like any run. The table is built from the runs' files (summary, samples, judge summary).

With `train`, the paper's own proof: each method's samples train a student (`refed train`, into
`<run.dir>/students/<method>/`), and each student is evaluated against the no-feedback one (`refed evaluate`, into its
`evaluation/`): the win rate of its answers by the judge, with its interval. Each training and each evaluation resumes
where it stopped, so a stopped comparison goes on cell by cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from refed_dspy.config import Config
from refed_dspy.config.load import ConfigLike, as_config
from refed_dspy.errors import ConfigError
from refed_dspy.ledger.call_log import Ledger
from refed_dspy.ledger.usage import usd
from refed_dspy.methods import METHODS
from refed_dspy.quality.figures import distinct_n, words
from refed_dspy.quality.judge import ajudge_run
from refed_dspy.quality.statistics import statistics_block
from refed_dspy.runtime.sync import run_sync
from refed_dspy.scoring import Scorer, open_scorer
from refed_dspy.store.jsonl import read_json, read_jsonl, write_json_atomic, write_text_atomic
from refed_dspy.store.ownership import owned
from refed_dspy.store.records import final_response
from refed_dspy.store.results import Optional, Result
from refed_dspy.store.rundir import RunDir
from refed_dspy.store.seeds import given_references, read_seeds
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.text.overlap import mean_pairwise_rouge
from refed_dspy.tracking.mlflow_runs import track_run_dir
from refed_dspy.training.evaluate import EVALUATION, EVALUATION_DIR, evaluate_students
from refed_dspy.training.fine_tune import train_student

# Stages whose calls collect feedback (the quantity the paper's methods differ in).
FEEDBACK_STAGES = ("feedback", "sample_feedback")
BASELINE = "no_feedback"  # the method whose student every other student is evaluated against (`train`)
STUDENTS = "students"  # under run.dir: one training folder per method


def parse_methods(text: str) -> list[str]:
    """'refed, no_feedback' -> ['refed', 'no_feedback']; ConfigError naming an unknown method."""
    return check_methods([m.strip() for m in text.split(",") if m.strip()])


def check_methods(names: list[str]) -> list[str]:
    """`names` when each is a registered method, once; else ConfigError, before anything is run or written."""
    if not names:
        raise ConfigError(
            'methods needs at least one method, e.g. ["refed", "sample_feedback"]',
            cli="--methods needs at least one method, e.g. --methods refed,sample_feedback",
        )
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(map(str, unknown))}; available: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ConfigError("methods names a method twice", cli="--methods names a method twice")
    return names


def method_config(config: Config, method: str) -> Config:
    """The config of one method's sibling run: same everything, its own method and run dir."""
    data = config.model_dump()
    data["synthesis"]["method"] = method
    data["run"]["dir"] = str(Path(config.run.dir) / method)
    return Config.model_validate(data)


def comparison_row(summary: dict[str, Any]) -> dict[str, Any]:
    """One table row from a run's summary dict."""
    usage = summary["usage"]
    stages = usage.get("by_stage") or {}
    feedback_calls = sum(int(stages.get(s, {}).get("calls", 0)) for s in FEEDBACK_STAGES)
    samples = summary["samples"]
    return {
        "method": summary["method"],
        "status": summary["status"],
        "samples": samples,
        "calls": usage["calls"],
        "feedback_calls": feedback_calls,
        "other_calls": usage["calls"] - feedback_calls,
        "calls_per_sample": round(usage["calls"] / samples, 3) if samples else None,
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "cached_tokens": usage["cached_tokens"],
        "cost_usd": summary["cost_usd"],
        "cost_per_sample_usd": round(summary["cost_usd"] / samples, 6)
        if samples and summary["cost_usd"] is not None
        else None,
        "rejects": dict(summary.get("rejects") or {}),
        "wall_s": summary.get("wall_s_total", summary.get("wall_s")),
        "transport": "ray" if summary.get("ray") else summary.get("mode", "online"),
        "run_dir": summary["run_dir"],
    }


def quality_columns(run_dir: str | Path, config: Config) -> dict[str, Any]:
    """Judge, length and diversity figures of one run dir: mean judge score and improvement win rate (when judged),
    the mean length of its final responses in words, distinct-2 and mean pairwise ROUGE-L of its instructions."""

    rd = RunDir(run_dir)
    samples = list(read_jsonl(rd.samples))
    instructions = [s["instruction"] for s in samples]
    judged = read_json(rd.judge_summary)
    lengths = [words(final_response(s)) for s in samples]
    return {
        "mean_score": judged.get("mean_score"),
        "improvement_win_rate": judged.get("improvement_win_rate"),
        "judge_cost_usd": judged.get("cost_usd"),
        "mean_response_words": round(sum(lengths) / len(lengths), 1) if lengths else None,
        "distinct_2": distinct_n(instructions, 2),
        "mean_pairwise_rouge_l": mean_pairwise_rouge(instructions, config.report.rouge_sample, config.report.seed),
    }


QUALITY_COLUMNS = [
    ("mean_score", "judge score"),
    ("improvement_win_rate", "improved wins"),
    ("judge_cost_usd", "judge cost"),
    ("mean_response_words", "response words"),
    ("distinct_2", "distinct-2"),
    ("mean_pairwise_rouge_l", "pairwise ROUGE-L"),
]
SCORE_COLUMNS = [  # `--score`: the data statistics of each method's samples (refed_dspy.quality.statistics)
    ("ifd", "IFD"),
    ("draft_ifd", "draft IFD"),
    ("ifd_at_least_1", "IFD >= 1"),
    ("response_ppl_given_instruction", "ppl given instruction"),
    ("coherence", "coherence"),
]


def score_columns(run_dir: str | Path, config: Config, scorer: Scorer) -> dict[str, Any]:
    """The data statistics of one method's run, measured by `scorer`: its final responses' mean IFD, share at IFD >= 1,
    perplexity given the instruction and coherence, and its drafts' IFD (the report's table, [scoring] report_pairs
    samples at most)."""
    block = statistics_block(RunDir(run_dir), config, scorer)
    rows = {r["group"]: r for r in block["rows"]}
    final, drafts = rows["final responses"], rows["drafts"]
    return {
        **{k: final.get(k) for k in ("ifd", "ifd_at_least_1", "response_ppl_given_instruction", "coherence")},
        "draft_ifd": drafts.get("ifd") if drafts["pairs"] else None,
        "scored_samples": block["samples_scored"],
    }


_COLUMNS = [
    ("method", "method"),
    ("samples", "samples"),
    ("calls", "LM calls"),
    ("feedback_calls", "feedback calls"),
    ("other_calls", "other calls"),
    ("calls_per_sample", "calls/sample"),
    ("prompt_tokens", "prompt tokens"),
    ("completion_tokens", "completion tokens"),
    ("cost_usd", "cost"),
    ("cost_per_sample_usd", "cost/sample"),
    ("rejects", "rejects"),
    ("wall_s", "wall s"),
]
# The table printed by default: the paper's comparison (Mehri et al.: per method, what the judge says of its
# data, how long its responses are, how many feedback calls and how much money it took). The judge's columns come
# with --judge, IFD with --score; --all-columns (and compare.json, and compare.md's second table) have every figure.
PAPER_COLUMNS = [
    ("method", "method"),
    ("samples", "samples"),
    ("mean_score", "judge score"),
    ("improvement_win_rate", "improved wins"),
    ("ifd", "IFD"),
    ("mean_response_words", "response words"),
    ("feedback_calls", "feedback calls"),
    ("cost_usd", "cost"),
    ("cost_per_sample_usd", "cost/sample"),
    ("student_win_rate", f"student's win rate vs {BASELINE}"),
    ("student_interval", "95% interval"),
]
TRAIN_COLUMNS = [  # `--train`: each method's student (refed_dspy.training)
    ("held_out_loss", "held-out loss"),
    ("student_win_rate", f"student's win rate vs {BASELINE}"),
    ("student_interval", "95% interval"),
    ("student_lc_win_rate", "length-controlled"),
    ("student_decisive", "decisive judgments"),
]
# columns of --judge, --score and --train: shown where some row has its figure
_SHOWN_WHEN_MEASURED = ("mean_score", "improvement_win_rate", "ifd", "student_win_rate", "student_interval")


def columns_for(rows: list[dict[str, Any]], all_columns: bool = False) -> list[tuple[str, str]]:
    """The (key, title) columns of a comparison's table: by default the paper's (`PAPER_COLUMNS`), a judge's or
    scorer's column only where some row has its figure; with `all_columns`, every figure (the score columns when its
    runs were scored)."""
    if all_columns:
        scored = SCORE_COLUMNS if any("ifd" in r for r in rows) else []
        return _COLUMNS + QUALITY_COLUMNS + scored + (TRAIN_COLUMNS if any("student" in r for r in rows) else [])
    return [
        (key, title)
        for key, title in PAPER_COLUMNS
        if key not in _SHOWN_WHEN_MEASURED
        or any(r.get(key) is not None for r in rows)
        or (key.startswith("student_") and any("student" in r for r in rows))  # trained: n/a says no verdict
    ]


def _decimals(value: float, places: int = 2) -> str:
    """`value` to `places` decimals, or to its first `places` significant digits when it is smaller (0.00042)."""
    if value and abs(value) < 10 ** (-places):
        places = -math.floor(math.log10(abs(value))) + places - 1
    return f"{value:,.{places}f}"


def _money(value: float) -> str:
    """A cost as the CLI says one (`usd`: $0.0123), one under a cent to two significant digits ($0.00042), none as
    $0."""
    return "$0" if value == 0 else usd(value) if abs(value) >= 0.01 else f"${_decimals(value, 2)}"


def _share(value: float) -> str:
    return f"{100 * value:.1f}%"


_FORMATS: dict[str, Callable[[float], str]] = {
    "cost_usd": _money,
    "cost_per_sample_usd": _money,
    "judge_cost_usd": _money,
    "mean_score": lambda v: _decimals(v, 2),
    "improvement_win_rate": _share,
    "ifd_at_least_1": _share,
    "student_win_rate": _share,
    "student_lc_win_rate": _share,
    "calls_per_sample": lambda v: _decimals(v, 1),
    "mean_response_words": lambda v: f"{v:,.0f}",
    "wall_s": lambda v: f"{v:,.0f}" if abs(v) >= 100 else _decimals(v, 1),
}


def _cell(value: Any, key: str = "") -> str:
    """One figure as the table shows it: rounded to what it can tell (a share as a percentage, a cost as `usd`, a
    score to 2 decimals, any other figure to 3), n/a when unknown."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if key in _FORMATS:
            return _FORMATS[key](value)
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.1f}" if abs(value) >= 100 else _decimals(value, 3 if abs(value) < 1 else 2)
    if isinstance(value, int):
        return _money(float(value)) if key in ("cost_usd", "cost_per_sample_usd") else f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "none"
    if isinstance(value, list) and key.endswith("interval") and len(value) == 2:
        return f"{_share(value[0])} to {_share(value[1])}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]] | None = None) -> str:
    """A GitHub-flavoured Markdown table of comparison rows, of `columns` ((key, title) pairs; None: the paper's
    columns, `columns_for`), each figure rounded to what it can tell."""
    cols = columns if columns is not None else columns_for(rows)
    lines = ["| " + " | ".join(title for _, title in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key), key) for key, _ in cols) + " |")
    return "\n".join(lines) + "\n"


class Comparison(Result):
    """`refed compare`'s result: one row per method (compare.json holds all but the paths of the two files)."""

    seeds: str
    references: int
    size: int
    teacher: str
    methods: list[str]
    scored_by: str | None = Optional("The model that measured the data statistics (`score`); None: not measured.")
    rows: list[dict[str, Any]] = Field(
        description="Per method: samples, calls (feedback apart), tokens, cost, "
        "rejects, wall time, response length in words, and the quality columns."
    )
    json_file: str | None = Optional("Where compare.json was written.", alias="json")
    markdown_file: str | None = Optional("Where compare.md was written.", alias="markdown")


def write_comparison(out_dir: str | Path, rows: list[dict[str, Any]], header: dict[str, Any]) -> tuple[Path, Path]:
    """Write compare.json and compare.md into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "compare.json", out / "compare.md"
    write_json_atomic(json_path, {**header, "rows": rows})
    intro = (
        f"# Method comparison\n\nSeeds: {header['seeds']} ({header['references']} references), "
        f"size {header['size']}, teacher {header['teacher']}.\n\n"
    )
    if header.get("scored_by"):
        intro += f"Data statistics measured by {header['scored_by']}.\n\n"
    every = "\n## Every figure\n\n" + markdown_table(rows, columns_for(rows, all_columns=True))
    write_text_atomic(md_path, intro + markdown_table(rows) + every)
    return json_path, md_path


def student_columns(config: Config, row: dict[str, Any], show_progress: bool) -> dict[str, Any]:
    """A student trained on one method's samples ([train]; resumed, or returned as it is when finished): its folder
    and held-out loss; none for a method that made no samples (its caps stopped it first)."""
    if not row.get("samples"):
        return {"student_verdict": "not trained: the method made no samples", "student_status": "budget"}
    folder = Path(config.run.dir) / STUDENTS / row["method"]
    summary = train_student(row["run_dir"], folder, config, show_progress=show_progress)
    return {"student": str(folder), "held_out_loss": summary.held_out_loss}


def evaluation_columns(
    config: Config,
    rows: list[dict[str, Any]],
    row: dict[str, Any],
    judge_lm: Any,
    on_mismatch: str,
    show_progress: bool,
) -> dict[str, Any]:
    """One method's student against the baseline method's, by the judge ([evaluate]; resumed where it stopped, under
    what the command's caps leave it: `judging_left`; the baseline's answers taken from the other methods'
    evaluations where they made them already): the win rate, its interval, the length-controlled rate and the
    decisive judgments (none for the baseline itself)."""
    if row["method"] == BASELINE or "student" not in row:  # the baseline itself, or a method with no student
        return {}
    if not any(r["method"] == BASELINE and "student" in r for r in rows):
        return {"student_verdict": f"not evaluated: {BASELINE} made no samples", "student_status": "budget"}
    fresh = on_mismatch == "fresh" or config.run.new_ledger  # the evaluations not made again yet are gone then
    left = judging_left(config, rows, row["method"], fresh)
    if left is None:
        done = {} if fresh else read_json(Path(row["student"]) / EVALUATION_DIR / EVALUATION)
        if done.get("status") == "complete":  # finished before the caps were lowered: its figures stand
            return _evaluation_figures(done)
        what = "[evaluate] max_calls or max_cost_usd spent on the other methods' students"
        return {"student_verdict": f"not evaluated: {what}", "student_status": "budget"}
    baseline = Path(config.run.dir) / STUDENTS / BASELINE
    others = [
        Path(r["student"]) / EVALUATION_DIR
        for r in rows
        if r["method"] not in (row["method"], BASELINE) and "student" in r
    ]
    result = evaluate_students(
        row["student"], None, None, left, baseline=baseline, judge=judge_lm, on_mismatch=on_mismatch,
        show_progress=show_progress, reuse=[p for p in others if p.is_dir()],
    )  # fmt: skip
    return _evaluation_figures(result.to_json())


def _evaluation_figures(found: dict[str, Any]) -> dict[str, Any]:
    """A student's columns from what its evaluation.json holds."""
    keys = ("win_rate", "interval", "lc_win_rate", "decisive", "verdict", "judge_calls", "cost_usd", "status")
    return {f"student_{'judge_cost_usd' if k == 'cost_usd' else k}": found.get(k) for k in keys}


def unfinished_students(rows: list[dict[str, Any]]) -> list[str]:
    """A line for each method whose student's evaluation did not finish (stopped at a cap, or not started for one),
    saying why: the table shows such a row's figures as n/a or as far as they got."""
    return [
        f"{row['method']}: its student's evaluation is {row['student_status']}: {row.get('student_verdict', '')}"
        for row in rows
        if row.get("student_status", "complete") != "complete"
    ]


Capped = TypeVar("Capped", bound=BaseModel)  # a section that caps calls and cost: [synthesis], [judging], [evaluate]


def caps_left(settings: Capped, ledgers: list[Path]) -> Capped | None:
    """`settings` (a section's `max_calls` and `max_cost_usd`) made the whole command's: what `ledgers` (the other
    methods', every run of each) paid taken off; None when nothing is left; `settings` itself when it sets no cap."""
    if not _capped(settings):
        return settings
    paid = [Ledger.read(path).paid() or {} for path in ledgers if path.exists()]
    calls = sum(int(u.get("calls") or 0) for u in paid)
    cost = sum(float(u.get("cost_usd") or 0) + float(u.get("interrupted_cost_usd") or 0) for u in paid)
    left = {
        "max_calls": None if settings.max_calls is None else settings.max_calls - calls,
        "max_cost_usd": None if settings.max_cost_usd is None else settings.max_cost_usd - cost,
    }
    if any(v is not None and v <= 0 for v in left.values()):
        return None
    return settings.model_copy(update=left)


def judging_left(config: Config, rows: list[dict[str, Any]], method: str, fresh: bool = False) -> Config | None:
    """`config` with [evaluate]'s caps made the whole command's (`caps_left`: the other methods' evaluations' judge
    ledgers, those of students an earlier invocation evaluated that this one does not name included; `fresh`: of the
    rows, only those before this method's, evaluated again in this invocation); None when nothing is left for this
    method's."""
    counted = rows[: [r["method"] for r in rows].index(method)] if fresh else rows
    students = [Path(r["student"]) for r in counted if r["method"] not in (method, BASELINE) and "student" in r]
    named = {r["method"] for r in rows} | {method, BASELINE}  # the baseline's evaluation is not one
    earlier = Path(config.run.dir) / STUDENTS
    students += [p for p in sorted(earlier.glob("*")) if p.is_dir() and p.name not in named]
    ev = caps_left(config.evaluate, [RunDir(path / EVALUATION_DIR).judge_ledger for path in students])
    if ev is None or ev is config.evaluate:
        return None if ev is None else config
    return config.model_copy(update={"evaluate": ev})


def earlier_methods(config: Config, methods: list[str]) -> list[str]:
    """The methods an earlier invocation of this comparison ran that this one does not name: their runs (in
    `<run.dir>/<method>/`, with a ledger) paid under the same caps."""
    root = Path(config.run.dir)
    if not root.is_dir():
        return []
    found = (path for path in sorted(root.iterdir()) if path.is_dir() and path.name not in methods)
    return [path.name for path in found if RunDir(path).ledger.exists() or RunDir(path).judge_ledger.exists()]


def method_left(config: Config, counted: list[str], method: str) -> tuple[Config, bool, bool]:
    """This method's config with the caps of [synthesis] and [judging] made the whole command's (`caps_left`: the
    ledgers of the methods `counted`, every run of each), and whether each has something left."""
    others = [RunDir(Path(config.run.dir) / m) for m in counted]
    mconfig = method_config(config, method)
    synthesis = caps_left(mconfig.synthesis, [r.ledger for r in others])
    judging = caps_left(mconfig.judging, [r.judge_ledger for r in others])
    update = {name: part for name, part in (("synthesis", synthesis), ("judging", judging)) if part is not None}
    return mconfig.model_copy(update=update), synthesis is not None, judging is not None


async def acompare(config: Config, methods: list[str], **kwargs: Any) -> Comparison:
    """Run (or resume) each method in turn into `<run.dir>/<method>/`; with `judge`, judge each run too (the
    judge LM of config.judge). `<run.dir>` is locked for the whole comparison."""

    with owned(config.run.dir, "compare", "refed compare", flag="run.dir"):
        return await _compare(config, methods, **kwargs)


async def _compare(
    config: Config,
    methods: list[str],
    *,
    teacher=None,
    references=None,
    on_mismatch: str = "error",
    show_progress: bool = False,
    judge: bool = False,
    judge_lm=None,
    score: bool = False,
) -> Comparison:
    # each method's run, and its judging, is launched as `refed synthesize` and `refed judge` launch theirs (online,
    # in provider batches or on Ray); an LM is handed to them only when the caller handed one in
    if references is None:
        references, _ = read_seeds(config.seeds)
    rows = []
    header = {
        "seeds": config.seeds.source or "embedded",
        "references": len(references),
        "size": config.synthesis.size,
        "teacher": config.teacher.model,
        "methods": methods,
    }
    scorer = open_scorer(config.scoring, config.report.embedding_model) if score else None
    if scorer is not None:
        header["scored_by"] = scorer.label
    try:
        for method in methods:
            row = await _method_row(config, methods, method, judge, teacher, references, judge_lm, on_mismatch,
                                    show_progress)  # fmt: skip
            if scorer is not None and row.get("samples"):
                row |= score_columns(row["run_dir"], method_config(config, method), scorer)
            rows.append(row)
    finally:  # a stopped comparison still leaves the table of the methods that finished
        result = write_table(config, rows, header)
    return result


async def _method_row(config: Config, methods: list[str], method: str, judge: bool, *given: Any) -> dict[str, Any]:
    """One method's row: its run (and with `judge` its judging) made under what the command's caps leave it, launched
    as `refed synthesize` and `refed judge` launch theirs; `given`: the teacher, references, judge LM, on_mismatch
    and show_progress handed in."""
    teacher, references, judge_lm, on_mismatch, show_progress = given
    fresh = on_mismatch == "fresh" or config.run.new_ledger  # the ledgers of methods not run again yet are gone then
    # the other methods of this invocation (with --fresh or --new-ledger, those run again already), and those an
    # earlier invocation ran that this one does not name (their ledgers stand, whatever this one starts over)
    named = methods[: methods.index(method)] if fresh else [m for m in methods if m != method]
    counted = named + earlier_methods(config, methods)
    mconfig, can_synthesize, can_judge = method_left(config, counted, method)
    if can_synthesize:
        summary: Any = await arun_synthesis(
            mconfig, teacher=teacher, references=references, on_mismatch=on_mismatch, show_progress=show_progress
        )
    else:  # an earlier run of the comparison stands (finished before the caps were lowered, or stopped at them)
        summary = {} if fresh else read_json(RunDir(mconfig.run.dir).summary)
        if not summary:
            return not_run_row(config, method)
    judged = None
    if judge and can_judge and summary["samples"]:  # a run its caps stopped before any sample: none to judge
        judged = await ajudge_run(
            mconfig.run.dir, mconfig, judge_lm=judge_lm, on_mismatch=on_mismatch, show_progress=show_progress
        )
    row = {**comparison_row(summary), **quality_columns(mconfig.run.dir, mconfig)}
    notes = []
    if summary["status"] == "budget" and _capped(config.synthesis):
        notes.append("stopped at [synthesis] max_calls or max_cost_usd, which the methods share")
    judging = judged if judged is not None else read_json(RunDir(mconfig.run.dir).judge_summary)  # one done before
    if judge and summary["samples"] and _capped(config.judging) and judging.get("status") in ("budget", None):
        notes.append("judging stopped at [judging] max_calls or max_cost_usd, which the methods share")
    return row | ({"note": "; ".join(notes)} if notes else {})


def _capped(settings: Any) -> bool:
    """Whether a section sets a cap of its own (its max_calls or max_cost_usd)."""
    return settings.max_calls is not None or settings.max_cost_usd is not None


def not_run_row(config: Config, method: str) -> dict[str, Any]:
    """The row of a method whose synthesis the command's caps left nothing for, and no earlier run of which stands:
    no figures."""
    run_dir = Path(config.run.dir) / method
    note = "not run: [synthesis] max_calls or max_cost_usd spent on the other methods"
    return {"method": method, "status": "budget", "samples": 0, "calls": 0, "run_dir": str(run_dir), "note": note}


def write_table(config: Config, rows: list[dict[str, Any]], header: dict[str, Any]) -> Comparison:
    """compare.json and compare.md written, and with tracking on logged as the compare dir's MLflow run."""
    json_path, md_path = write_comparison(config.run.dir, rows, header)
    if config.tracking.enabled:
        metrics = {row["method"]: {k: v for k, v in row.items() if k != "method"} for row in rows}
        track_run_dir(config, config.run.dir, "compare", metrics, [json_path, md_path])
    return Comparison(**header, rows=rows, json_file=str(json_path), markdown_file=str(md_path))


def with_students(
    config: Config, result: Comparison, judge_lm: Any, on_mismatch: str, show_progress: bool
) -> Comparison:
    """The comparison's table with each method's student trained and evaluated against the baseline method's (outside
    any event loop: a stop reaches the training and the answering at once), `<run.dir>` held meanwhile."""
    header = {k: result[k] for k in ("seeds", "references", "size", "teacher", "methods")}
    if result.scored_by:
        header["scored_by"] = result.scored_by
    rows = [dict(row) for row in result.rows]
    with owned(config.run.dir, "compare", "refed compare", flag="run.dir"):
        try:
            for row in rows:
                row |= student_columns(config, row, show_progress)
            for row in rows:
                row |= evaluation_columns(config, rows, row, judge_lm, on_mismatch, show_progress)
        finally:  # a stopped comparison keeps the students' figures it has
            result = write_table(config, rows, header)
    return result


def compare(
    config: ConfigLike | None,
    methods: list[str] | str,
    *,
    teacher: Any = None,
    references: list[Any] | None = None,
    on_mismatch: str = "error",
    show_progress: bool = False,
    judge: bool = False,
    judge_lm: Any = None,
    score: bool = False,
    train: bool = False,
) -> Comparison:
    """Run (or resume) each method on the same references and size, and compare them; `refed compare` from Python.

    Args:
        config: the run config (a Config, a TOML path, a mapping of its tables, or None for the defaults); each
            method runs into `<run.dir>/<method>/`, a run dir of its own.
        methods: names of registered methods (`refed_dspy.methods.METHODS`), e.g. ["refed", "no_feedback"], or
            them in one string as `--methods` takes them ("refed,no_feedback").
        teacher: a dspy.LM to use for every method instead of building one from [teacher].
        references: the references to use instead of reading [seeds].
        on_mismatch: for a method's run dir made by another config: "error", "resume" or "fresh".
        show_progress: print progress lines on stderr.
        judge: also judge each run (with [judge]) and add judge and diversity columns.
        judge_lm: a dspy.LM to judge with instead of building one from [judge].
        score: also measure each run's data statistics with the [scoring] model (the scorer extra): IFD of the final
            responses and of the drafts, the share at IFD >= 1, perplexity given the instruction, coherence.
        train: also train a student on each method's samples ([train], the train extra) and evaluate each against the
            no_feedback method's student ([evaluate], with the judge): the paper's table; `methods` must hold
            no_feedback.

    Returns:
        The table, one row per method with every figure (samples, calls, feedback calls, tokens, cost, rejects, wall
            time, response length, diversity, and the judge's figures with `judge`), also written to
            `<run.dir>/compare.json` and `compare.md` (the paper's columns, `PAPER_COLUMNS`, then every figure).

    Raises:
        ConfigError: an unknown method, or `train` without no_feedback among `methods` (before any call).
        RefedError: what `synthesize` (and with `judge`, `judge_run`) raises for a method's run; the methods already
            run keep their run dirs, and the same call resumes them.
    """
    config = as_config(config)
    methods = parse_methods(methods) if isinstance(methods, str) else check_methods(list(methods or []))
    if train and BASELINE not in methods:
        raise ConfigError(f"--train evaluates each method's student against {BASELINE}'s: add {BASELINE} to --methods")
    if train and config.evaluate.server:
        raise ConfigError(
            "--train has each method's student answer in this process: evaluate.server names one student and one "
            "baseline, for `refed evaluate` (leave it unset here, or evaluate each method's student with refed evaluate)"
        )
    result = run_sync(
        acompare(
            config,
            methods,
            teacher=teacher,
            references=given_references(references),
            on_mismatch=on_mismatch,
            show_progress=show_progress,
            judge=judge,
            judge_lm=judge_lm,
            score=score,
        )
    )
    return with_students(config, result, judge_lm, on_mismatch, show_progress) if train else result
