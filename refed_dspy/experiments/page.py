"""experiment.html: one self-contained page (inline SVG and styles, no script) of an experiment's results: test score
against cost with each cell's interval, the leaderboard, and each cell's program (instructions and demos) diffed
against its baseline's. This module computes what the page shows (pure functions of the result and the programs'
states: the chart as coordinates, the diffs as pieces); experiments/templates/ lays it out."""

from __future__ import annotations

import math
from typing import Any

from refed_dspy.experiments.stats import significantly_better, significantly_worse
from refed_dspy.ledger.usage import usd_up_to
from refed_dspy.pages import render
from refed_dspy.text.diff import word_diff

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
