"""`refed report RUN_DIR`: a self-contained report.html (inline PNG plots) and a text summary."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.clients.usage import prompt_cache_share, prompt_cache_text
from refed_dspy.config import Config
from refed_dspy.errors import RunDirError
from refed_dspy.quality.contamination import contamination_html, contamination_lines, contamination_of
from refed_dspy.quality.judgments import judgment_stats, unjudged_reasons
from refed_dspy.quality.near_duplicate_report import (
    near_duplicate_block,
    near_duplicate_html,
    near_duplicate_line,
    settings_of,
)
from refed_dspy.quality.reference_copies import copies_html, copies_line, reference_copies
from refed_dspy.quality.report_stats import (
    cost_by_stage,
    cost_note,
    describe,
    distinct_n,
    execution,
    execution_text,
    lengths,
    mean_pairwise_cosine_distance,
    reject_reasons,
    sample_cards,
    yields,
)
from refed_dspy.results import Result
from refed_dspy.store.jsonl import read_json, read_jsonl, write_json_atomic, write_text_atomic
from refed_dspy.store.ownership import owned
from refed_dspy.store.run_config import run_config
from refed_dspy.store.rundir import RunDir, incomplete_note
from refed_dspy.store.teachers import (
    count_teachers,
    mixed_line,
    self_preference_line,
    self_preference_record,
    teacher_rows,
)
from refed_dspy.text import mean_pairwise_rouge
from refed_dspy.tracking.mlflow_runs import log_artifacts

SECTIONS = (
    "Counts",
    "Rejects",
    "Yield",
    "Lengths",
    "Judge scores",
    "Improvement",
    "Diversity",
    "Near-duplicates",
    "Cost by stage",
)


def compute(rundir: RunDir, config: Config, embedder=None) -> dict[str, Any]:
    """Every figure of the report, from the run dir's files."""
    samples = list(read_jsonl(rundir.samples))
    rejects = list(read_jsonl(rundir.rejects))
    units = [u for u in read_jsonl(rundir.journal) if u.get("kind") == "unit"]
    judgments = list(read_jsonl(rundir.judgments))
    judge_failures = unjudged_reasons({j["sample_id"] for j in judgments}, list(read_jsonl(rundir.judge_rejects)))
    summary = read_json(rundir.summary)
    judge_summary = read_json(rundir.judge_summary)
    instructions = [s["instruction"] for s in samples]
    diversity = {
        "distinct_1": distinct_n(instructions, 1),
        "distinct_2": distinct_n(instructions, 2),
        "mean_pairwise_rouge_l": mean_pairwise_rouge(instructions, config.report.rouge_sample, config.report.seed),
        "rouge_sample": min(config.report.rouge_sample, len(instructions)),
        "embedding_model": None,
        "embedding_diversity": None,
    }
    if embedder is None and config.report.embedding_model:
        import dspy

        embedder = dspy.Embedder(config.report.embedding_model)
    if embedder is not None and len(instructions) >= 2:
        import random

        chosen = random.Random(config.report.seed).sample(
            instructions, min(config.report.rouge_sample, len(instructions))
        )
        model = config.report.embedding_model or getattr(embedder, "model", None)
        diversity["embedding_model"] = model if isinstance(model, str) else getattr(model, "__name__", "custom")
        diversity["embedding_diversity"] = mean_pairwise_cosine_distance(embedder(chosen))
    lens = lengths(samples)
    scores = [j["pointwise"]["overall"] for j in judgments if j.get("pointwise")]
    by_criterion: dict[str, list[int]] = {}
    for j in judgments:
        for k, v in ((j.get("pointwise") or {}).get("scores") or {}).items():
            by_criterion.setdefault(k, []).append(v)
    return {
        "run_dir": str(rundir.path),
        "incomplete": incomplete_note(rundir.path),
        "method": summary.get("method", config.synthesis.method),
        "teacher": summary.get("teacher", config.teacher.model),
        "teachers": teacher_rows(count_teachers(s["meta"] for s in samples)),
        "counts": {
            "samples": len(samples),
            "rejects": len(rejects),
            "references_used": len({s["meta"]["reference_id"] for s in samples}),
            "synthesis_units": len(units),
            "judged": len(judgments),
            "judge_failed": sum(judge_failures.values()),
            "status": summary.get("status"),
        },
        "rejects": reject_reasons(rejects),
        "rejects_by_stage": dict(Counter(r.get("stage", "unknown") for r in rejects).most_common()),
        "yield": yields(samples, units, rejects),
        "lengths": {k: describe(v) for k, v in lens.items()},
        "_lengths_raw": lens,
        "judge": {
            **judgment_stats(judgments),
            "judge": judge_summary.get("judge"),
            **self_preference_record(judge_summary.get("judge"), (s["meta"] for s in samples)),
            "score_summary": describe(scores),
            "status": judge_summary.get("status"),
            "failures": dict(judge_failures.most_common()),
        },
        "_scores_raw": {"overall": scores, **by_criterion},
        "diversity": diversity,
        "near_duplicates": near_duplicate_block(samples, settings_of(config)),
        "cost_by_stage": cost_by_stage(summary.get("usage"), judge_summary.get("usage")),
        "cost_usd": {"synthesis": summary.get("cost_usd"), "judge": judge_summary.get("cost_usd")},
        "prompt_cache": {
            "synthesis": prompt_cache_share(summary.get("usage")),
            "judge": prompt_cache_share(judge_summary.get("usage")),
            "total": prompt_cache_share(summary.get("usage"), judge_summary.get("usage")),
        },
        "execution": {"synthesis": execution(summary), "judge": execution(judge_summary)},
        "cards": sample_cards(samples, {j["sample_id"]: j for j in judgments if "sample_id" in j}),
        "contamination": contamination_of(rundir, samples, rejects, config),
        "reference_copies": reference_copies(rundir, config, samples),
    }


# ---- plots ---------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(stats: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: length histograms, score histograms, reject reasons, cost by stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    lens = stats["_lengths_raw"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, values in lens.items():
        if values:
            ax.hist(values, bins=30, alpha=0.55, label=f"{name} (n={len(values)})")
    ax.set_xlabel("words")
    ax.set_ylabel("samples")
    ax.set_title("Length distributions")
    if any(lens.values()):
        ax.legend()
    out["lengths"] = _png(fig)
    raw = stats["_scores_raw"]
    if raw.get("overall"):
        keys = list(raw)
        cols = min(3, len(keys))
        rows = -(-len(keys) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
        for ax in axes.flat[len(keys) :]:
            ax.set_visible(False)
        for ax, key in zip(axes.flat, keys, strict=False):
            ax.hist(raw[key], bins=[x + 0.5 for x in range(0, 11)], color="#4c72b0")
            ax.set_title(f"{key.replace('_', ' ')} (n={len(raw[key])})", fontsize=9)
            ax.set_xlim(0.5, 10.5)
        fig.suptitle("Judge scores (1-10), per criterion")
        fig.tight_layout()
        out["scores"] = _png(fig)
    if stats["rejects"]:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(stats["rejects"]) + 1))
        ax.barh(list(stats["rejects"]), list(stats["rejects"].values()), color="#c44e52")
        ax.set_xlabel("items")
        ax.set_title("Reject reasons")
        out["rejects"] = _png(fig)
    j = stats["judge"]
    if j.get("pairs"):
        shares = [j["improvement_win_rate"], j["improvement_tie_rate"], j["improvement_loss_rate"]]
        fig, ax = plt.subplots(figsize=(6, 1.9))
        left = 0.0
        for share, label, color in zip(
            shares, ("improved wins", "tie", "draft wins"), ("#55a868", "#ccb974", "#c44e52"), strict=True
        ):
            ax.barh([0], [share], left=left, color=color, label=f"{label} {share:.0%}")
            left += share
        ax.set_xlim(0, 1)
        ax.set_yticks([])
        ax.set_title(
            f"Improved vs draft ({j['pairs']} pairs, both orders); position bias {j['position_bias_rate']:.0%}"
        )
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
        out["verdicts"] = _png(fig)
    y = stats["yield"]
    if y["by_feature"]:
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(y["by_feature"]) + 1))
        ax.barh([str(r["key"]) for r in y["by_feature"]], [r["samples"] for r in y["by_feature"]], color="#4c72b0")
        ax.set_xlabel("samples")
        ax.set_title("Samples by feature")
        out["yield_feature"] = _png(fig)
    refs = [r for r in y["by_reference"] if r["yield"] is not None]
    if refs:
        top = sorted(refs, key=lambda r: -r["samples"])[:40]
        fig, ax = plt.subplots(figsize=(7, 0.22 * len(top) + 1.2))
        ax.barh([str(r["key"])[:10] for r in top][::-1], [r["samples"] for r in top][::-1], color="#8172b2")
        ax.set_xlabel("samples")
        ax.set_title(f"Samples by reference (top {len(top)} of {len(y['by_reference'])})")
        out["yield_reference"] = _png(fig)
    costs = {k: v["cost_usd"] for k, v in stats["cost_by_stage"].items() if v.get("cost_usd") is not None}
    if any(costs.values()):  # all zero: the report says so in words (cost_note) instead of drawing no bars
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(costs) + 1))
        ax.barh(list(costs), list(costs.values()), color="#55a868")
        ax.set_xlabel("USD")
        ax.set_title("Cost by stage")
        out["cost"] = _png(fig)
    return out


# ---- rendering -----------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.1f}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _kv(d: dict[str, Any]) -> str:
    return _table([{"name": k, "value": v} for k, v in d.items()], ["name", "value"])


def _img(images: dict[str, str], key: str) -> str:
    return f'<img alt="{key}" src="data:image/png;base64,{images[key]}">' if key in images else ""


def _tile(label: str, value: Any, note: str = "") -> str:
    return (
        f"<div class='tile'><div class='v'>{_fmt(value)}</div><div class='l'>{html.escape(label)}</div>"
        + (f"<div class='n'>{html.escape(note)}</div>" if note else "")
        + "</div>"
    )


def _cards(title: str, cards: list[dict[str, Any]]) -> str:
    if not cards:
        return ""
    out = [f"<h3>{html.escape(title)}</h3>"]
    for c in cards:
        figure = f"score {c['score']}" if c["score"] is not None else f"{c['changed']:.0%} of words changed"
        out.append(
            f"<div class='sample'><div class='muted'>{html.escape(c['id'])} · {figure}</div>"
            f"<b>{html.escape(c['instruction'][:400])}</b><div class='text'>{html.escape(c['response'][:1200])}"
            f"{' [...]' if len(c['response']) > 1200 else ''}</div></div>"
        )
    return "".join(out)


def _section(anchor: str, title: str, *body: str) -> str:
    return f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{''.join(body)}</section>"


def _cache_lines(shares: dict[str, Any]) -> list[str]:
    """The prompt cache's share of each part's prompt tokens, in words (none for a part without prompt tokens)."""
    parts = [(part, prompt_cache_text(shares[part])) for part in ("synthesis", "judge") if part in shares]
    return [f"{part}: {text}" for part, text in parts if text]


def _cache_html(shares: dict[str, Any]) -> str:
    lines = _cache_lines(shares)
    if not lines:
        return ""
    return "<p id='prompt-cache'><b>Prompt cache:</b> " + html.escape("; ".join(lines)) + ".</p>"


def render_html(stats: dict[str, Any], images: dict[str, str]) -> str:
    """The whole report as one HTML document with inline images and styles (it renders offline)."""
    j, y, c = stats["judge"], stats["yield"], stats["counts"]
    cost = stats["cost_usd"]
    total_cost = None if cost["synthesis"] is None else cost["synthesis"] + (cost["judge"] or 0.0)
    head = [
        f"<h1>Dataset report</h1><p class='muted'>{html.escape(stats['run_dir'])} · method "
        f"<b>{html.escape(str(stats['method']))}</b> · teacher <b>{html.escape(str(stats['teacher']))}</b>"
        f"{' · judge <b>' + html.escape(str(j.get('judge'))) + '</b>' if j.get('judge') else ''}</p>"
    ]
    if stats.get("incomplete"):
        head.append(f"<p class='failed'><b>Incomplete data:</b> {html.escape(stats['incomplete'])}.</p>")
    mixed = mixed_line(stats.get("teachers"))
    if mixed:
        head.append(f"<p class='failed'><b>Mixed teachers:</b> {html.escape(mixed)}.</p>")
    if j.get("self_preference"):
        line = self_preference_line(j["self_preference_model"])
        head.append(f"<p class='failed' id='self-preference'><b>Self-preference:</b> {html.escape(line)}.</p>")
    head.append(
        "<div class='tiles'>"
        + "".join(
            [
                _tile("samples", c["samples"], f"from {c['references_used']} references"),
                _tile("rejects", c["rejects"]),
                _tile("judged", c["judged"], f"{c['judge_failed']} failed" if c["judge_failed"] else ""),
                _tile("mean judge score", j.get("mean_score"), "1-10"),
                _tile("improved beats draft", j.get("improvement_win_rate"), "share of pairs"),
                _tile("cost (USD)", total_cost, "synthesis + judge"),
            ]
        )
        + "</div>"
    )
    judge_body = []
    if j.get("failures"):
        judge_body += [
            f"<p class='failed'>The judge failed on {sum(j['failures'].values())} samples "
            "(see judge_rejects.jsonl):</p>",
            _kv(j["failures"]),
        ]
    if j.get("mean_score") is None:
        judge_body.append(
            "<p>No pointwise judgments"
            + ("." if j.get("failures") else " yet: run <code>refed judge run RUN_DIR</code>.")
            + "</p>"
        )
    else:
        judge_body += [_img(images, "scores"), _kv({"mean score": j["mean_score"], **j["mean_by_criterion"]})]
    improvement = (
        ["<p>No pairwise judgments (improved vs draft)" + ("." if j.get("failures") else " yet.") + "</p>"]
        if not j.get("pairs")
        else [
            _img(images, "verdicts"),
            _kv(
                {
                    k: j[k]
                    for k in (
                        "pairs",
                        "improvement_win_rate",
                        "improvement_tie_rate",
                        "improvement_loss_rate",
                        "position_bias_rate",
                    )
                }
            ),
        ]
    )
    cost_rows = [{"stage": k, **v} for k, v in sorted(stats["cost_by_stage"].items())]
    modes = {f"{part} calls": execution_text(ex) for part, ex in stats["execution"].items() if ex}
    grid = [
        _section("judge-scores", "Judge scores", *judge_body),
        _section("improvement", "Improvement", *improvement),
        _section(
            "yield",
            "Yield",
            _img(images, "yield_feature"),
            _table(y["by_feature"], ["key", "instructions", "samples", "yield"]),
            _img(images, "yield_reference"),
            f"<details><summary>per reference ({len(y['by_reference'])})</summary>"
            + _table(y["by_reference"], ["key", "instructions", "samples", "rejects", "yield"])
            + "</details>",
        ),
        _section(
            "lengths",
            "Lengths (words)",
            _img(images, "lengths"),
            _table(
                [{"text": k, **v} for k, v in stats["lengths"].items()],
                ["text", "n", "mean", "median", "p10", "p90", "min", "max"],
            ),
        ),
        _section(
            "rejects",
            "Rejects",
            _img(images, "rejects"),
            _kv(stats["rejects"]) if stats["rejects"] else "<p>none</p>",
            _kv(stats["rejects_by_stage"]) if stats["rejects_by_stage"] else "",
        ),
        _section("diversity", "Diversity of instructions", _kv(stats["diversity"])),
        _section("near-duplicates", "Near-duplicates", near_duplicate_html(stats["near_duplicates"])),
        _section("reference-copies", "Copies of the reference", copies_html(stats["reference_copies"])),
        _section(
            "cost",
            "Cost by stage",
            _img(images, "cost"),
            f"<p>{html.escape(note)}</p>" if (note := cost_note(stats["cost_by_stage"])) else "",
            _cache_html(stats.get("prompt_cache") or {}),
            _table(
                cost_rows,
                [
                    "stage",
                    "calls",
                    "prompt_tokens",
                    "cached_tokens",
                    "cache_write_tokens",
                    "completion_tokens",
                    "cost_usd",
                ],
            ),
            _kv(modes) if modes else "",
        ),
        _section("counts", "Counts", _kv(stats["counts"])),
    ]
    cards = stats.get("cards") or {}
    samples = _section(
        "samples",
        "Samples to read",
        _cards("Best by judge score", cards.get("best", [])),
        _cards("Worst by judge score", cards.get("worst", [])),
        _cards("Most changed by the improvement step", cards.get("most_changed", [])),
    )
    style = (
        "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;padding:1.5em 2em;color:#1d2330;"
        "background:#f6f7f9}h1{margin:.2em 0}.muted{color:#6b7280}.failed{color:#b00}"
        ".tiles{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}.tile{background:#fff;border:1px solid #e3e6ea;"
        "border-radius:8px;padding:.6em 1em;min-width:10em}.tile .v{font-size:22px;font-weight:600}.tile .l{color:#555}"
        ".tile .n{color:#888;font-size:12px}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));"
        "gap:1em}section{background:#fff;border:1px solid #e3e6ea;border-radius:8px;padding:.6em 1.1em;"
        "overflow-x:auto}section h2{font-size:18px}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;font-size:13px}th{background:#f3f3f3}"
        "img{max-width:100%;display:block;margin:.5em 0}.sample{border-top:1px solid #eee;padding:.5em 0}"
        ".text{white-space:pre-wrap;font-size:13px}"
    )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>refed report</title>"
        f"<link rel='icon' href='data:,'><style>{style}</style></head><body>{''.join(head)}"
        f"<div class='grid'>{''.join(grid)}</div>{contamination_html(stats.get('contamination') or {})}{samples}"
        "</body></html>"
    )


def format_text(stats: dict[str, Any]) -> str:
    """The one-screen text summary."""
    c, j, d = stats["counts"], stats["judge"], stats["diversity"]
    lens = stats["lengths"]
    cost = stats["cost_usd"]
    lines = [
        f"report {stats['run_dir']} ({stats['method']}, teacher {stats['teacher']})"
        + (f"\n  WARNING      {stats['incomplete']}" if stats.get("incomplete") else "")
        + (f"\n  teachers     {mixed_line(stats.get('teachers'))}" if mixed_line(stats.get("teachers")) else "")
        + (f"\n  note         {self_preference_line(j['self_preference_model'])}" if j.get("self_preference") else ""),
        f"  samples      {c['samples']} from {c['references_used']} references, {c['rejects']} rejects, {c['judged']} judged"
        + (f", {c['judge_failed']} failed to be judged" if c["judge_failed"] else ""),
        "  rejects      " + (", ".join(f"{n} {r}" for r, n in stats["rejects"].items()) or "none"),
        "  judge fails  " + (", ".join(f"{n} {r}" for r, n in j["failures"].items()) or "none"),
        "  lengths      " + ", ".join(f"{k} mean {v['mean']} median {v['median']}" for k, v in lens.items() if v["n"]),
        f"  judge        mean score {_fmt(j.get('mean_score'))}, improvement win rate {_fmt(j.get('improvement_win_rate'))}, "
        f"position bias {_fmt(j.get('position_bias_rate'))}",
        f"  diversity    distinct-1 {_fmt(d['distinct_1'])}, distinct-2 {_fmt(d['distinct_2'])}, "
        f"mean pairwise ROUGE-L {_fmt(d['mean_pairwise_rouge_l'])} (n={d['rouge_sample']})"
        + (f", embedding {_fmt(d['embedding_diversity'])}" if d["embedding_diversity"] is not None else ""),
        near_duplicate_line(stats["near_duplicates"]),
        f"  cost         synthesis {_fmt(cost['synthesis'])}, judge {_fmt(cost['judge'])} USD",
        f"  copies       {copies_line(stats['reference_copies'])}",
    ]
    if note := cost_note(stats["cost_by_stage"]):
        lines.append(f"               {note}")
    if cache := _cache_lines(stats.get("prompt_cache") or {}):
        lines.append(f"  prompt cache {'; '.join(cache)}")
    modes = [f"{part} {execution_text(ex)}" for part, ex in stats["execution"].items() if ex]
    if modes:
        lines.append("  calls        " + "; ".join(modes))
    lines += contamination_lines(stats.get("contamination") or {})
    return "\n".join(lines)


class Report(Result):
    """A run's report: what report.json holds, and where report.html went, its figures and its text summary."""

    run_dir: str
    incomplete: str | None = Field(description="Why the run's data may not be final (None: it finished).")
    method: str
    teacher: str
    teachers: list[dict[str, Any]] = Field(
        default_factory=list, description="The samples' teachers (model, endpoint) with their sample counts."
    )
    counts: dict[str, Any]
    rejects: dict[str, int]
    rejects_by_stage: dict[str, int]
    yield_: dict[str, Any] = Field(alias="yield", description="Samples per reference, per unit, per feature.")
    lengths: dict[str, Any]
    judge: dict[str, Any]
    diversity: dict[str, Any]
    near_duplicates: dict[str, Any] = Field(
        default_factory=dict, description="Clusters of near-duplicate samples (MinHash LSH) and their sizes."
    )
    cost_by_stage: dict[str, Any]
    cost_usd: dict[str, Any]
    prompt_cache: dict[str, Any] = Field(
        default_factory=dict,
        description="Of the prompt tokens of synthesis, of judging and of both (`total`): those read from the "
        "provider's prompt cache and those written to it, and their shares.",
    )
    execution: dict[str, Any]
    cards: dict[str, Any] = Field(description="A few samples to read: the best and worst judged, the most changed.")
    contamination: dict[str, Any] = Field(
        default_factory=dict,
        description="Benchmark contamination: per benchmark checked, its prompts, the samples matching one and their "
        "share, the samples decontaminate removed; the settings; the matched pairs.",
    )
    reference_copies: dict[str, Any] = Field(
        default_factory=dict,
        description="How close each sample is to its own reference: distributions, the copies at or over "
        "quality.copy_threshold, the closest samples beside their references (refed_dspy.quality.reference_copies).",
    )
    html: str = Field("", exclude=True, description="Where report.html was written.")
    images: list[str] = Field(default_factory=list, exclude=True, description="The figures drawn in it.")
    text: str = Field("", exclude=True, description="The summary `refed report` prints.")


def build_report(run_dir: str | Path, config: Config | None = None, embedder=None) -> Report:
    """Compute the report for `run_dir`, write report.html and report.json there; returns the figures.

    The run dir's lock is held while the report is made, so it never writes into a run another process is
    writing (RunDirError naming that process), and a directory refed did not make is refused."""
    rundir = RunDir(run_dir)
    if not rundir.samples.exists():
        raise RunDirError(f"{rundir.path} has no samples.jsonl; nothing to report")
    if config is None:
        config = run_config(rundir)
    path = rundir.path / "report.html"
    with owned(run_dir, "run", "refed report", also=("filter",), existing=True, flag="RUN_DIR"):
        stats = compute(rundir, config, embedder)
        images = plots(stats)
        write_text_atomic(path, render_html(stats, images))
        report = Report(
            **{k: v for k, v in stats.items() if not k.startswith("_")},
            html=str(path),
            images=sorted(images),
            text=format_text(stats),
        )
        write_json_atomic(rundir.path / "report.json", report.to_json())
    if config.tracking.enabled:
        log_artifacts(config, rundir.path, [path, rundir.path / "report.json"], kind="report")
    return report
