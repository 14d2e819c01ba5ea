"""What a finished experiment leaves: experiment.json (an ExperimentResult, what `refed experiment` returns),
experiment.md and experiment.html (each cell's program against its baseline's), and with tracking on, the cells'
figures, the champion in the Model Registry and those files in MLflow.

The leaderboard as text: the table's rows, why cells did not finish, the synthesis check's lines and experiment.md;
pure functions of an ExperimentResult.

experiment.html: one self-contained page (inline SVG and styles, no script) of an experiment's results: test score
against cost with each cell's interval, the leaderboard, and each cell's program (instructions and demos) diffed
against its baseline's. What the page shows is computed here (pure functions of the result and the programs'
states: the chart as coordinates, the diffs as pieces); experiments/templates/ lays it out.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.experiments.config import Cell, ExperimentSettings, cell_config
from refed_dspy.experiments.stats import significantly_better, significantly_worse
from refed_dspy.ledger.usage import usd_up_to
from refed_dspy.optimizers.plan import target_program
from refed_dspy.pages import render
from refed_dspy.secrets import first_line
from refed_dspy.store.jsonl import read_json, write_json_atomic, write_text_atomic
from refed_dspy.store.results import Optional, Result
from refed_dspy.text.overlap import word_diff
from refed_dspy.tracking.mlflow_runs import (
    champion_tags,
    log_cell,
    log_experiment,
    register_champion,
    registered_name,
    usage_figures,
)

log = logging.getLogger(__name__)


def write_outputs(result: ExperimentResult, base: dict[str, Any]) -> list[Path]:
    """experiment.json, .md and .html in the experiment's directory (their paths set on `result`); their paths."""
    out = Path(result.out)
    json_path, md_path, page_path = out / "experiment.json", out / "experiment.md", out / "experiment.html"
    result.json_file, result.markdown_file, result.page_file = str(json_path), str(md_path), str(page_path)
    write_json_atomic(json_path, result.model_dump(mode="json", by_alias=True))
    write_text_atomic(md_path, experiment_markdown(result))
    write_text_atomic(page_path, render_page(result, HEADER, leaderboard_rows(result), _programs(result, base)))
    return [json_path, md_path, page_path]


def _programs(result: ExperimentResult, base: dict[str, Any]) -> dict[str, tuple[dict, dict]]:
    """For each finished cell: its baseline's program and its own, as predictor views (instructions, demos)."""
    out = {}
    for row in result.cells:
        state = read_json(row.get("program") or "")
        if row.get("status") != "done" or not state:
            continue
        baseline = target_program(cell_config(base, Cell(row["values"], row["repeat"]).overrides(0))).dump_state()
        out[row["id"]] = (program_view(baseline), program_view(state))
    return out


def track(result: ExperimentResult, champion: dict | None, settings: ExperimentSettings, parent: Any) -> None:
    """Cells' figures into their child runs, the champion into the Model Registry; a tracking failure is a warning
    (every figure is in experiment.json)."""
    result.mlflow_run_id = parent.info.run_id
    try:
        for row in result.cells:
            if row.get("status") == "done":
                log_cell(row.get("mlflow_run_id"), row)
        if champion is not None and champion.get("model_uri"):
            name = settings.registered_model or registered_name(settings.name, result.out)
            tags, description = champion_tags(result, champion)
            result.champion_uri = register_champion(
                champion["model_uri"], champion.get("mlflow_run_id"), name, settings.alias, tags, description
            )
    except Exception as err:  # noqa: BLE001 - tracking must not lose a finished experiment
        log.warning("warning: MLflow tracking of the experiment failed (%s: %s)", type(err).__name__, first_line(err))
    diff = (champion or {}).get("difference") or {}
    figures = {
        "calls": result.usage["calls"],
        "cost_usd": result.usage["cost_usd"],
        "cells": len(result.cells),
        "cells_done": sum(r.get("status") == "done" for r in result.cells),
        "cells_significantly_better": sum(significantly_better(r.get("difference")) for r in result.cells),
        "test_examples": result.examples["test"],
        "detectable_difference": result.detectable,
        "champion_test_score": (champion or {}).get("test_mean"),
        "champion_test_difference": diff.get("mean"),
        "wall_s": result.wall_s,
        **usage_figures(result.usage),
    }
    try:  # apart: a failure here must not keep the champion from the registry
        log_experiment(result.mlflow_run_id, figures)
    except Exception as err:  # noqa: BLE001 - every figure is in experiment.json
        log.warning(
            "warning: MLflow: the experiment's figures were not logged (%s: %s)", type(err).__name__, first_line(err)
        )


def log_leaderboard(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """The experiment's files into its parent run, in the store at `tracking_uri` (after its run's block: the process's
    MLflow is the caller's again); a failure is a warning."""
    try:
        from mlflow import MlflowClient

        for path in paths:
            MlflowClient(tracking_uri).log_artifact(run_id, str(path))
    except Exception as err:  # noqa: BLE001 - the files are written
        log.warning("warning: MLflow: the leaderboard was not logged (%s: %s)", type(err).__name__, first_line(err))


def _verdict(d: dict[str, Any]) -> str:
    """Whether a difference is significant, and on which side: a cell that is significantly worse is not a winner."""
    if not d:
        return ""
    return "yes, better" if significantly_better(d) else "yes, worse" if significantly_worse(d) else "no"


def _num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def leaderboard_rows(result: ExperimentResult) -> list[list[str]]:
    """The leaderboard as text cells: one row per cell, then one per baseline."""
    rows = []
    for r in result.cells:
        d = r.get("difference") or {}
        interval = f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" if d else "n/a"
        if d and r.get("kept") == "baseline":  # the baseline's own answers (one cache): a difference of 0 by design
            interval = "kept baseline"
        opt, ev = r.get("optimize_usage") or {}, r.get("eval_usage") or {}
        rows.append(
            [
                r["label"] if r.get("status") == "done" else f"{r['label']} ({r.get('status')}, see below)",
                _score_text(r),
                interval,
                _verdict(d),
                f"{_num(r.get('val_before'))} -> {_num(r.get('val_after'))}",
                _by_role(opt),
                _cost(opt) if opt else "n/a",
                _by_role(ev),
                _cost(ev) if ev else "n/a",
                f"{r.get('wall_s', 0):.0f}",
            ]
        )
    for b in result.baselines:
        ev = b.get("eval_usage") or b.get("usage") or {}
        rows.append(
            [
                f"baseline ({b['target']}, {b['teacher']})",
                _score_text(b),
                "",
                "",
                "",
                "",
                "",
                _by_role(ev),
                _cost(ev),
                f"{b.get('wall_s', 0):.0f}",
            ]
        )
    return rows


def unfinished_lines(result: ExperimentResult) -> list[str]:
    """Why each cell that did not finish stopped, one line each: said below the table, so that an error's length does
    not widen the table's first column. A cell its own optimize limit stopped says that the limit is its own."""
    out = []
    for r in result.cells:
        if r.get("status") == "done":
            continue
        line = f"- {r['label']}: {r.get('status')}: {r.get('error') or 'no detail'}"
        if r.get("stopped_by"):
            line += (
                f" [the cell's own {r['stopped_by']} stopped it, not the experiment's budget: raise it and run the "
                "same command (what the cell paid is in its cache)]"
            )
        out.append(line)
    return out


def champion_line(result: ExperimentResult) -> str | None:
    """Where the champion's program is, and how to run it: its registered model (tracking on), else the program file
    its cell saved; None without a champion."""
    if result.champion_uri:
        return f"champion registered: {result.champion_uri} (refed synthesize --program {result.champion_uri})"
    path = next((r.get("program") for r in result.cells if r.get("id") == result.champion), None)
    return f"champion's program: {path} (refed synthesize --program {path})" if result.champion and path else None


def kept_lines(result: ExperimentResult) -> list[str]:
    """Why each finished cell kept its baseline, one line each (said below the table, as unfinished_lines are)."""
    return [
        f"- {r['label']}: kept baseline: {r.get('kept_reason') or 'the optimizer changed nothing'}"
        for r in result.cells
        if r.get("status") == "done" and r.get("kept") == "baseline"
    ]


def _score_text(row: dict[str, Any]) -> str:
    """A test score, with how many of its examples the program or the judge failed on (each scored 0)."""
    text, n = _num(row.get("test_mean")), row.get("test_n") or row.get("n")
    failed = [(row.get("program_failures"), "program"), (row.get("judge_failures"), "judge")]
    notes = [f"{who} failed on {k} of {n}" if n else f"{who} failed on {k}" for k, who in failed if k]
    return f"{text} ({'; '.join(notes)})" if notes else text


HEADER = [
    "cell",
    "test score (0-1)",
    "vs baseline [CI]",
    "significant",
    "val before -> after",
    "optimize calls",
    "optimize cost",
    "test calls",
    "test cost",
    "wall s",
]


def _cost(usage: dict[str, Any]) -> str:
    """What `usage` cost, and up to what when some of its calls are of unknown tokens (cut off, or in flight when an
    invocation was killed)."""
    return usd_up_to(usage.get("cost_usd"), usage.get("interrupted_cost_usd"))


def _by_role(usage: dict[str, Any]) -> str:
    """Calls by role ("judge 12, teacher 8"), with any calls of no known role as "other"; the total when none is."""
    roles = {r: int(v.get("calls") or 0) for r, v in (usage.get("by_role") or {}).items()}
    other = int(usage.get("calls") or 0) - sum(roles.values())
    if not roles:
        return str(usage.get("calls", 0))
    return ", ".join([f"{r} {n}" for r, n in roles.items()] + ([f"other {other}"] if other > 0 else []))


def experiment_markdown(result: ExperimentResult) -> str:
    """experiment.md: what was compared, how, and the leaderboard."""
    lines = [
        f"# Experiment {result.name}",
        "",
        f"References: {result.split['train']} train, {result.split['val']} validation, {result.split['test']} test "
        f"(held out from every optimizer); examples: {result.examples['train']} / {result.examples['val']} / "
        f"{result.examples['test']}.",
        f"Intervals: paired bootstrap, {result.level:.0%} simultaneous over {len(result.cells)} cells "
        f"({result.cell_level:.4f} each). The test set detects differences of {result.detectable:.3f} or more "
        f"with 80% power" + (" (underpowered for experiment.min_effect)." if result.underpowered else "."),
        f"Champion: {result.champion or 'none (no cell beat its baseline significantly)'}. "
        f"Total: {result.usage['calls']} LM calls, {_cost(result.usage)}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in leaderboard_rows(result)]
    kept = kept_lines(result)
    if kept:
        lines += ["", "## Cells that kept their baseline", "", *kept]
    unfinished = unfinished_lines(result)
    if unfinished:
        lines += ["", "## Cells that did not finish", "", *unfinished]
    checks = synthesis_lines(result)
    if checks:
        lines += ["", "## Synthesis check", "", *checks]
    return "\n".join(lines) + "\n"


def synthesis_lines(result: ExperimentResult) -> list[str]:
    """With `synthesize = N`: each program's synthesis run on the test references, judged (1-10), against its
    baseline's (two groups of samples, each resampled on its own)."""
    out = []
    for b in result.baselines:
        syn = b.get("synthesis")
        if syn:
            out.append(
                f"- baseline ({b['target']}, {b['teacher']}): judged mean {_num(syn['mean'], 3)} (1-10, {syn['samples']} samples)"
            )
    for r in result.cells:
        syn, d = r.get("synthesis"), r.get("synthesis_difference")
        if syn and d:
            out.append(
                f"- {r['label']}: judged mean {_num(syn['mean'], 3)} (1-10, {syn['samples']} samples), {d['mean']:+.3f} "
                f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] against the baseline's samples, "
                + (
                    "significantly better"
                    if significantly_better(d)
                    else "significantly worse"
                    if significantly_worse(d)
                    else "not significant"
                )
            )
    return out


W, H, PAD = 720, 360, 56  # the chart's size and its margin around the plot, in pixels
TEMPLATES = "refed_dspy.experiments"  # its templates/ folder: experiment.html, experiment_chart.html


def program_view(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each predictor of a DSPy program state: its instructions and demos."""
    out = {}
    for name, value in state.items():
        if isinstance(value, dict) and isinstance(value.get("signature"), dict):
            out[name] = {
                "instructions": value["signature"].get("instructions") or "",
                "demos": value.get("demos") or [],
            }
    return out


def _x_of(row: dict[str, Any]) -> float | None:
    usage = row.get("usage") or {}
    return usage.get("cost_usd")


def axis_ticks(most: float) -> list[float]:
    """0 and evenly spaced round values (1, 2 or 5 times a power of ten) up to the first at or past `most`."""
    if most <= 0:
        return [0.0, 1.0]
    raw = most / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(k * power for k in (1, 2, 5, 10) if k * power >= raw)
    return [round(i * step, 10) for i in range(math.ceil(most / step - 1e-9) + 1)]


def chart(cells: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The chart of test score (y, 0-1) against what each cell cost (x: USD, or LM calls when a cost is unknown or every
    cell cost nothing, as on a local model), as coordinates in a W x H picture: the ticks of both axes, each baseline's
    score, each cell's point with its interval around it (the baseline's score plus the interval of the difference),
    and the leaderboard's numbers beside the points. None when no cell finished."""
    done = [c for c in cells if c.get("status") == "done"]
    if not done:
        return None
    costs = [_x_of(c) for c in done]
    by_cost = all(x is not None for x in costs) and any(costs)
    xs = [(_x_of(c) if by_cost else float((c.get("usage") or {}).get("calls") or 0)) for c in done]
    ticks = axis_ticks(max(xs))
    top = ticks[-1]

    def px(x: float) -> float:
        return PAD + (W - 2 * PAD) * x / top

    def py(y: float) -> float:
        return H - PAD - (H - 2 * PAD) * max(0.0, min(1.0, y))

    what = "optimizing, judging the test set and any synthesis check"
    number = {c["id"]: i for i, c in enumerate(cells, 1)}  # the leaderboard's numbers
    # cells drawn at one point (equal score and cost: a kept baseline, a repeat answered from the cache) share one
    # label, "1, 3", instead of printing over each other
    at: dict[tuple[int, int], list[int]] = {}
    for cell, x in zip(done, xs, strict=True):
        at.setdefault((round(px(x)), round(py(cell["test_mean"]))), []).append(number[cell["id"]])
    return {
        "width": W,
        "height": H,
        "pad": PAD,
        "unit": f"USD ({what})" if by_cost else f"LM calls ({what})",
        "score_ticks": [{"y": py(tick), "value": tick} for tick in (0.0, 0.25, 0.5, 0.75, 1.0)],
        "cost_ticks": [{"x": px(tick), "value": tick} for tick in ticks],
        "baselines": [
            {"y": py(b["test_mean"]), "teacher": str(b.get("teacher")), "score": b["test_mean"]}
            for b in baselines
            if b.get("test_mean") is not None
        ],
        "labels": [{"x": x, "y": y, "text": ", ".join(str(n) for n in sorted(ns))} for (x, y), ns in at.items()],
        "points": [_point(cell, px(x), py) for cell, x in zip(done, xs, strict=True)],
    }


def _point(cell: dict[str, Any], x: float, py) -> dict[str, Any]:
    """One cell's point: where, its colour, whether it kept its baseline, and its interval's ends (None: not drawn)."""
    d = cell.get("difference") or {}
    # green: significantly better than the baseline; red: significantly worse; grey: not told apart from it
    color = "#1a7f37" if significantly_better(d) else "#cf222e" if significantly_worse(d) else "#555"
    # a cell that kept its baseline is the baseline: a hollow point, no interval
    kept = cell.get("kept") == "baseline"
    interval = None
    if d and cell.get("baseline_mean") is not None and not kept:
        # capped on the page, so that an interval of width 0 still shows
        interval = (py(cell["baseline_mean"] + d["ci_low"]), py(cell["baseline_mean"] + d["ci_high"]))
    return {
        "x": x,
        "y": py(cell["test_mean"]),
        "color": color,
        "kept": kept,
        "interval": interval,
        "label": cell["label"],
        "score": cell["test_mean"],
    }


def chart_svg(cells: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> str:
    """The chart alone, as experiment.html draws it (an SVG element, or a line saying no cell finished)."""
    return render(TEMPLATES, "experiment_chart.html", chart=chart(cells, baselines))


def _demo_text(demo: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {str(v)[:300]}" for k, v in demo.items() if not str(k).startswith("augmented"))


def program_diff(baseline: dict[str, dict[str, Any]], cell: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each predictor of either program: its instructions diffed from the baseline's (word_diff pieces; None when
    unchanged), its demos and the baseline's counted, and the text of its first three demos."""
    out = []
    empty = {"instructions": "", "demos": []}
    for name in sorted(set(baseline) | set(cell)):
        b, c = baseline.get(name) or empty, cell.get(name) or empty
        same = b["instructions"] == c["instructions"]
        out.append(
            {
                "name": name,
                "diff": None if same else word_diff(b["instructions"], c["instructions"]),
                "demos": len(c["demos"]),
                "baseline_demos": len(b["demos"]),
                "demo_texts": [_demo_text(d) for d in c["demos"][:3]],
            }
        )
    return out


def _numbered(i: int, label: str) -> str:
    return label if label.startswith("baseline") else f"{i}. {label}"


def _summary(r: Any) -> str:
    return (
        f"References {r.split['train']} train / {r.split['val']} validation / {r.split['test']} test; examples "
        f"{r.examples['train']} / {r.examples['val']} / {r.examples['test']}. Intervals {r.level:.0%} simultaneous over "
        f"{len(r.cells)} cells; the test set detects {r.detectable:.3f} with 80% power"
        + (" (underpowered)." if r.underpowered else ".")
        + f" Champion: {r.champion or 'none'}. {r.usage['calls']} LM calls, "
        + f"{usd_up_to(r.usage['cost_usd'], r.usage.get('interrupted_cost_usd'))}."
    )


def render_page(result: Any, header: list[str], rows: list[list[str]], programs: dict[str, tuple[dict, dict]]) -> str:
    """The page: `result` (an ExperimentResult), the leaderboard (`header`, `rows`), and per cell id its baseline's
    and its own program views."""
    return render(
        TEMPLATES,
        "experiment.html",
        name=result.name,
        summary=_summary(result),
        chart=chart(result.cells, result.baselines),
        header=header,
        rows=[[_numbered(i, c) if j == 0 else c for j, c in enumerate(row)] for i, row in enumerate(rows, 1)],
        programs=[
            {"id": cell["id"], "label": cell["label"], "predictors": program_diff(*programs[cell["id"]])}
            for cell in result.cells
            if cell["id"] in programs
        ],
    )


class ExperimentResult(Result):
    """`refed experiment`'s result (experiment.json holds the same)."""

    name: str
    status: str = Field(description="complete | budget (a cell did not fit) | failed (a cell failed)")
    out: str
    split: dict[str, int] = Field(description="References on each side: train, val, test.")
    examples: dict[str, int] = Field(description="Examples on each side.")
    level: float = Field(description="The experiment's confidence level (each cell's interval is Bonferroni's).")
    cell_level: float
    detectable: float = Field(description="The smallest difference the test examples detect with 80% power.")
    underpowered: bool = Field(description="detectable > min_effect: smaller effects cannot be told from noise.")
    cells: list[dict[str, Any]] = Field(description="One row per cell, best test score first.")
    baselines: list[dict[str, Any]]
    champion: str | None = Field(
        description="Of the cells whose test score beats their baseline's significantly, the best on validation."
    )
    champion_uri: str | None = Optional("With tracking on: the champion's program in the Model Registry.")
    mlflow_run_id: str | None = Optional("With tracking on: the experiment's parent run.")
    estimate: dict[str, Any] = Field(description="LM calls estimated before any call: examples, baselines, each cell.")
    usage: dict[str, Any] = Field(description="Calls and cost of the whole experiment: examples, cells, baselines.")
    wall_s: float
    finished_at: str
    json_file: str | None = Optional("Where experiment.json was written.", alias="json")
    markdown_file: str | None = Optional("Where experiment.md was written.", alias="markdown")
    page_file: str | None = Optional("Where experiment.html was written.", alias="page")
