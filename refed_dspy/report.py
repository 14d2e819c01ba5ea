"""`refed report RUN_DIR`: a self-contained report.html (inline PNG plots) and a text summary."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.errors import RunDirError
from refed_dspy.judging import judgment_stats, run_config, unjudged_reasons
from refed_dspy.report_stats import (
    cost_by_stage,
    describe,
    distinct_n,
    lengths,
    mean_pairwise_cosine_distance,
    mean_pairwise_rouge,
    yields,
)
from refed_dspy.rundir import RunDir, incomplete_note
from refed_dspy.store import read_json, read_jsonl, write_text_atomic

SECTIONS = ("Counts", "Rejects", "Yield", "Lengths", "Judge scores", "Improvement", "Diversity", "Cost by stage")


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

        chosen = random.Random(config.report.seed).sample(instructions, min(config.report.rouge_sample, len(instructions)))
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
        "counts": {"samples": len(samples), "rejects": len(rejects), "references_used": len({s["meta"]["reference_id"] for s in samples}),
                   "synthesis_units": len(units), "judged": len(judgments), "judge_failed": sum(judge_failures.values()),
                   "status": summary.get("status")},
        "rejects": dict(Counter(r.get("reason", "unknown") for r in rejects).most_common()),
        "rejects_by_stage": dict(Counter(r.get("stage", "unknown") for r in rejects).most_common()),
        "yield": yields(samples, units, rejects),
        "lengths": {k: describe(v) for k, v in lens.items()},
        "_lengths_raw": lens,
        "judge": {**judgment_stats(judgments), "judge": judge_summary.get("judge"),
                  "score_summary": describe(scores), "status": judge_summary.get("status"),
                  "failures": dict(judge_failures.most_common())},
        "_scores_raw": {"overall": scores, **by_criterion},
        "diversity": diversity,
        "cost_by_stage": cost_by_stage(summary.get("usage"), judge_summary.get("usage")),
        "cost_usd": {"synthesis": summary.get("cost_usd"), "judge": judge_summary.get("cost_usd")},
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
        fig, axes = plt.subplots(1, len(keys), figsize=(2.4 * len(keys), 2.6), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            ax.hist(raw[key], bins=[x + 0.5 for x in range(0, 11)], color="#4c72b0")
            ax.set_title(key.replace("_", " "), fontsize=9)
            ax.set_xlim(0.5, 10.5)
        fig.suptitle("Judge scores (1-10)")
        out["scores"] = _png(fig)
    if stats["rejects"]:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(stats["rejects"]) + 1))
        ax.barh(list(stats["rejects"]), list(stats["rejects"].values()), color="#c44e52")
        ax.set_xlabel("items")
        ax.set_title("Reject reasons")
        out["rejects"] = _png(fig)
    costs = {k: v["cost_usd"] for k, v in stats["cost_by_stage"].items() if v.get("cost_usd") is not None}
    if costs:
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


def render_html(stats: dict[str, Any], images: dict[str, str]) -> str:
    """The whole report as one HTML document with inline images and styles."""
    j = stats["judge"]
    y = stats["yield"]
    parts = [f"<h1>Dataset report: {html.escape(stats['run_dir'])}</h1>",
             f"<p>method <b>{html.escape(str(stats['method']))}</b>, teacher <b>{html.escape(str(stats['teacher']))}</b></p>"]
    if stats.get("incomplete"):
        parts.append(f"<p class='failed'><b>Incomplete data:</b> {html.escape(stats['incomplete'])}.</p>")
    parts += ['<h2 id="counts">Counts</h2>', _kv(stats["counts"])]
    parts += ['<h2 id="rejects">Rejects</h2>', _kv(stats["rejects"]) if stats["rejects"] else "<p>none</p>",
              _kv(stats["rejects_by_stage"]) if stats["rejects_by_stage"] else "", _img(images, "rejects")]
    parts += ['<h2 id="yield">Yield</h2>', "<h3>per feature</h3>",
              _table(y["by_feature"], ["key", "instructions", "samples", "yield"]),
              f"<h3>per reference ({len(y['by_reference'])})</h3>",
              _table(y["by_reference"], ["key", "instructions", "samples", "rejects", "yield"])]
    parts += ['<h2 id="lengths">Lengths (words)</h2>',
              _table([{"text": k, **v} for k, v in stats["lengths"].items()], ["text", "n", "mean", "median", "p10", "p90", "min", "max"]),
              _img(images, "lengths")]
    parts += ['<h2 id="judge-scores">Judge scores</h2>']
    if j.get("failures"):
        parts += [f"<p class='failed'>the judge failed on {sum(j['failures'].values())} samples (see judge_rejects.jsonl):</p>",
                  _kv(j["failures"])]
    if j.get("mean_score") is None:
        parts.append("<p>no pointwise judgments" + ("" if j.get("failures") else " yet: run <code>refed judge RUN_DIR</code>")
                     + "</p>")
    else:
        parts += [_kv({"judge": j.get("judge"), "mean score": j["mean_score"], **j["mean_by_criterion"]}), _img(images, "scores")]
    parts += ['<h2 id="improvement">Improvement</h2>']
    if not j.get("pairs"):
        parts.append("<p>no pairwise judgments (improved vs draft) yet</p>")
    else:
        parts.append(_kv({k: j[k] for k in ("pairs", "improvement_win_rate", "improvement_tie_rate", "improvement_loss_rate",
                                             "position_bias_rate")}))
    parts += ['<h2 id="diversity">Diversity of instructions</h2>', _kv(stats["diversity"])]
    rows = [{"stage": k, **v} for k, v in sorted(stats["cost_by_stage"].items())]
    parts += ['<h2 id="cost">Cost by stage</h2>', _table(rows, ["stage", "calls", "prompt_tokens", "completion_tokens", "cost_usd"]),
              _img(images, "cost")]
    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;"
             "font-size:13px}th{background:#f3f3f3}img{max-width:100%;display:block;margin:.5em 0}.failed{color:#b00}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>refed report</title><style>{style}</style></head>"
            f"<body>{''.join(parts)}</body></html>")


def format_text(stats: dict[str, Any]) -> str:
    """The one-screen text summary."""
    c, j, d = stats["counts"], stats["judge"], stats["diversity"]
    lens = stats["lengths"]
    cost = stats["cost_usd"]
    lines = [
        f"report {stats['run_dir']} ({stats['method']}, teacher {stats['teacher']})"
        + (f"\n  WARNING      {stats['incomplete']}" if stats.get("incomplete") else ""),
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
        f"  cost         synthesis {_fmt(cost['synthesis'])}, judge {_fmt(cost['judge'])} USD",
    ]
    return "\n".join(lines)


def build_report(run_dir: str | Path, config: Config | None = None, embedder=None) -> dict[str, Any]:
    """Compute the report for `run_dir`, write report.html and report.json there; returns the figures."""
    rundir = RunDir(run_dir)
    if not rundir.samples.exists():
        raise RunDirError(f"{rundir.path} has no samples.jsonl; nothing to report")
    if config is None:
        config = run_config(rundir)
    stats = compute(rundir, config, embedder)
    images = plots(stats)
    path = rundir.path / "report.html"
    write_text_atomic(path, render_html(stats, images))
    public = {k: v for k, v in stats.items() if not k.startswith("_")}
    write_text_atomic(rundir.path / "report.json", json.dumps(public, indent=2) + "\n")
    if config.tracking.enabled:
        from refed_dspy.tracking import log_artifacts

        log_artifacts(config, rundir.path, [path, rundir.path / "report.json"], kind="report")
    return {**public, "html": str(path), "images": sorted(images), "text": format_text(stats)}
