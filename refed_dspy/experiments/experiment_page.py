"""experiment.html: one self-contained page (inline SVG and styles, no script) of an experiment's results: test score
against cost with each cell's interval, the leaderboard, and each cell's program (instructions and demos) diffed
against its baseline's. Pure functions of the result and the programs' states."""

from __future__ import annotations

import html
import math
from typing import Any

from refed_dspy.diff import word_diff
from refed_dspy.experiments.stats import significantly_better, significantly_worse
from refed_dspy.money import usd

W, H, PAD = 720, 360, 56
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
.muted{color:#777;font-size:13px}details{margin:.6em 0}summary{cursor:pointer}
ins{background:#d4f7d4;text-decoration:none}del{background:#f7d4d4}
pre{white-space:pre-wrap;background:#f6f6f6;padding:6px;font-size:12px}
"""


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


def chart(cells: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> str:
    """An SVG of test score (y, 0-1) against what each cell cost (x: USD, or LM calls when a cost is unknown or every
    cell cost nothing, as on a local model), each cell's interval drawn around its score (the baseline's score plus the
    interval of the difference)."""
    done = [c for c in cells if c.get("status") == "done"]
    if not done:
        return "<p class='muted'>No cell finished.</p>"
    costs = [_x_of(c) for c in done]
    by_cost = all(x is not None for x in costs) and any(costs)
    xs = [(_x_of(c) if by_cost else float((c.get("usage") or {}).get("calls") or 0)) for c in done]
    ticks = axis_ticks(max(xs))
    top = ticks[-1]

    def px(x: float) -> float:
        return PAD + (W - 2 * PAD) * x / top

    def py(y: float) -> float:
        return H - PAD - (H - 2 * PAD) * max(0.0, min(1.0, y))

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' role='img'>"]
    parts.append(f"<line x1='{PAD}' y1='{H - PAD}' x2='{W - PAD}' y2='{H - PAD}' stroke='#999'/>")
    parts.append(f"<line x1='{PAD}' y1='{PAD}' x2='{PAD}' y2='{H - PAD}' stroke='#999'/>")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f"<text x='{PAD - 8}' y='{py(tick) + 4:.1f}' font-size='11' text-anchor='end'>{tick:.2f}</text>")
    what = "optimizing, judging the test set and any synthesis check"
    unit = f"USD ({what})" if by_cost else f"LM calls ({what})"
    parts.append(f"<text x='{W / 2}' y='{H - 14}' font-size='12' text-anchor='middle'>{unit}</text>")
    for tick in ticks:
        parts.append(
            f"<text x='{px(tick):.1f}' y='{H - PAD + 16}' font-size='11' text-anchor='middle'>{tick:.4g}</text>"
        )
    parts.append(f"<text x='14' y='{PAD - 12}' font-size='12'>test score</text>")
    for b in baselines:
        if b.get("test_mean") is not None:
            y = py(b["test_mean"])
            parts.append(
                f"<line x1='{PAD}' y1='{y:.1f}' x2='{W - PAD}' y2='{y:.1f}' stroke='#888' stroke-dasharray='5,4'/>"
                f"<text x='{W - PAD}' y='{y - 4:.1f}' font-size='11' text-anchor='end'>baseline "
                f"{html.escape(str(b.get('teacher')))} {b['test_mean']:.3f}</text>"
            )
    number = {c["id"]: i for i, c in enumerate(cells, 1)}  # the leaderboard's numbers
    # cells drawn at one point (equal score and cost: a kept baseline, a repeat answered from the cache) share one
    # label, "1, 3", instead of printing over each other
    at: dict[tuple[int, int], list[int]] = {}
    for cell, x in zip(done, xs, strict=True):
        at.setdefault((round(px(x)), round(py(cell["test_mean"]))), []).append(number[cell["id"]])
    for (lx, ly), numbers in at.items():
        label = ", ".join(str(n) for n in sorted(numbers))
        parts.append(f"<text x='{lx + 6}' y='{ly - 6}' font-size='11'>{label}</text>")
    for cell, x in zip(done, xs, strict=True):
        d = cell.get("difference") or {}
        # green: significantly better than the baseline; red: significantly worse; grey: not told apart from it
        color = "#1a7f37" if significantly_better(d) else "#cf222e" if significantly_worse(d) else "#555"
        cx, cy = px(x), py(cell["test_mean"])
        kept = cell.get("kept") == "baseline"
        if d and cell.get("baseline_mean") is not None and not kept:
            lo, hi = py(cell["baseline_mean"] + d["ci_low"]), py(cell["baseline_mean"] + d["ci_high"])
            parts.append(f"<line x1='{cx:.1f}' y1='{lo:.1f}' x2='{cx:.1f}' y2='{hi:.1f}' stroke='{color}'/>")
            for y in (lo, hi):  # capped, so that an interval of width 0 still shows
                parts.append(f"<line x1='{cx - 4:.1f}' y1='{y:.1f}' x2='{cx + 4:.1f}' y2='{y:.1f}' stroke='{color}'/>")
        # a cell that kept its baseline is the baseline: a hollow point, no interval
        fill = f"fill='white' stroke='{color}'" if kept else f"fill='{color}'"
        parts.append(
            f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='4' {fill}><title>{html.escape(cell['label'])}: "
            f"{cell['test_mean']:.4f}{' (kept baseline)' if kept else ''}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _diff_html(before: str, after: str) -> str:
    pieces = []
    for op, text in word_diff(before, after):
        t = html.escape(text)
        pieces.append(t if op == "same" else f"<{op}>{t}</{op}>")
    return "<pre>" + "".join(pieces) + "</pre>"


def _demo_text(demo: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {str(v)[:300]}" for k, v in demo.items() if not str(k).startswith("augmented"))


def program_diff(baseline: dict[str, dict[str, Any]], cell: dict[str, dict[str, Any]]) -> str:
    """Each predictor's instructions, diffed from the baseline's (insertions green, deletions red), and its demos."""
    out = []
    for name in sorted(set(baseline) | set(cell)):
        b, c = (
            baseline.get(name) or {"instructions": "", "demos": []},
            cell.get(name) or {"instructions": "", "demos": []},
        )
        out.append(f"<h4>{html.escape(name)}</h4>")
        if b["instructions"] == c["instructions"]:
            out.append("<div class='muted'>instructions unchanged</div>")
        else:
            out.append(_diff_html(b["instructions"], c["instructions"]))
        out.append(f"<div class='muted'>{len(c['demos'])} demos (baseline {len(b['demos'])})</div>")
        out += [f"<pre>{html.escape(_demo_text(d))}</pre>" for d in c["demos"][:3]]
    return "".join(out)


def _numbered(i: int, label: str) -> str:
    return label if label.startswith("baseline") else f"{i}. {label}"


def render_page(result: Any, header: list[str], rows: list[list[str]], programs: dict[str, tuple[dict, dict]]) -> str:
    """The page: `result` (an ExperimentResult), the leaderboard (`header`, `rows`), and per cell id its baseline's
    and its own program views."""
    r = result
    summary = (
        f"References {r.split['train']} train / {r.split['val']} validation / {r.split['test']} test; examples "
        f"{r.examples['train']} / {r.examples['val']} / {r.examples['test']}. Intervals {r.level:.0%} simultaneous over "
        f"{len(r.cells)} cells; the test set detects {r.detectable:.3f} with 80% power"
        + (" (underpowered)." if r.underpowered else ".")
        + f" Champion: {r.champion or 'none'}. {r.usage['calls']} LM calls, {usd(r.usage['cost_usd'])}."
    )
    table = (
        "<table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + "</tr>"
        + "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(_numbered(i, c) if j == 0 else c)}</td>" for j, c in enumerate(row))
            + "</tr>"
            for i, row in enumerate(rows, 1)
        )
        + "</table>"
    )
    details = []
    for cell in r.cells:
        if cell["id"] in programs:
            base, own = programs[cell["id"]]
            details.append(
                f"<details id='{html.escape(cell['id'])}'><summary>{html.escape(cell['label'])}: its program against "
                f"the baseline's</summary>{program_diff(base, own)}</details>"
            )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Experiment {html.escape(r.name)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>Experiment {html.escape(r.name)}</h1>"
        f"<p>{html.escape(summary)}</p><h2>Test score against cost</h2>{chart(r.cells, r.baselines)}"
        f"<h2>Leaderboard</h2>{table}<h2>Programs</h2>{''.join(details) or '<p class=muted>none</p>'}</body></html>"
    )
