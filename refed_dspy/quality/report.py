"""`refed report RUN_DIR`: a self-contained report.html and a text summary. The page's plots are matplotlib's, of the
report's figures (quality/figures.py), inlined as base64 PNGs; what the page shows is gathered here and
quality/templates/report.html lays it out.

The report's `near_duplicates` block: clusters of near-duplicate samples (MinHash LSH, as the `near_duplicates`
filter finds them) counted by size, the largest shown; what its section of report.html shows and its line of the text
summary.

The settings are those of the config's `near_duplicates` filter when its [[filters]] list one, else the filter's
defaults, so the report counts what that filter would remove.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.config import Config
from refed_dspy.config.load import ConfigLike, given_config
from refed_dspy.errors import RunDirError
from refed_dspy.filters.near_duplicates import NearDuplicates, near_duplicate_matches, parts_of
from refed_dspy.ledger.usage import prompt_cache_share, usd
from refed_dspy.pages import number, render
from refed_dspy.quality.contamination import contamination_lines, contamination_of, contamination_section
from refed_dspy.quality.figures import (
    cache_lines,
    copies_line,
    copies_section,
    cost_by_stage,
    cost_note,
    describe,
    distinct_n,
    execution,
    execution_text,
    judgment_stats,
    lengths,
    mean_pairwise_cosine_distance,
    reference_copies,
    reject_reasons,
    sample_cards,
    unjudged_reasons,
    verdict_text,
    yields,
)
from refed_dspy.quality.statistics import (
    embedded,
    embedder_for,
    statistics_block,
    statistics_lines,
    statistics_section,
)
from refed_dspy.scoring import open_scorer
from refed_dspy.store.jsonl import read_json, read_jsonl, write_json_atomic, write_text_atomic
from refed_dspy.store.ownership import owned
from refed_dspy.store.records import (
    count_teachers,
    mixed_line,
    self_preference_line,
    self_preference_record,
    teacher_rows,
)
from refed_dspy.store.results import Result
from refed_dspy.store.rundir import RunDir, incomplete_note, run_config
from refed_dspy.text.counts import counted
from refed_dspy.text.overlap import mean_pairwise_rouge
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
        embedder = embedder_for(config)
    if embedder is not None and len(instructions) >= 2:
        import random

        chosen = random.Random(config.report.seed).sample(
            instructions, min(config.report.rouge_sample, len(instructions))
        )
        model = config.report.embedding_model or getattr(embedder, "model", None)
        diversity["embedding_model"] = model if isinstance(model, str) else getattr(model, "__name__", "custom")
        diversity["embedding_diversity"] = mean_pairwise_cosine_distance(
            embedded(embedder, chosen, diversity["embedding_model"])
        )
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


def _spent(cost: float | None, ran: bool) -> str:
    """A part's cost in words: not run here, nothing (a local model's run), its dollars, or unknown (no price)."""
    if not ran:
        return "not run here"
    return "unknown (no price)" if cost is None else "nothing" if cost == 0 else usd(cost)


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
        f"  samples      {c['samples']} from {c['references_used']} reference{'s' * (c['references_used'] != 1)}, "
        f"{counted(c['rejects'], 'reject')}, {c['judged']} judged"
        + (f", {c['judge_failed']} failed to be judged" if c["judge_failed"] else ""),
        "  rejects      " + (", ".join(f"{n} {r}" for r, n in stats["rejects"].items()) or "none"),
        "  judge fails  " + (", ".join(f"{n} {r}" for r, n in j["failures"].items()) or "none"),
        "  lengths      " + ", ".join(f"{k} mean {v['mean']} median {v['median']}" for k, v in lens.items() if v["n"]),
        f"  judge        {verdict_text(j)}",
        f"  diversity    distinct-1 {number(d['distinct_1'])}, distinct-2 {number(d['distinct_2'])}, "
        f"mean pairwise ROUGE-L {number(d['mean_pairwise_rouge_l'])} (n={d['rouge_sample']})"
        + (f", embedding {number(d['embedding_diversity'])}" if d["embedding_diversity"] is not None else ""),
        near_duplicate_line(stats["near_duplicates"]),
        f"  copies       {copies_line(stats['reference_copies'])}",
        f"  cost         synthesis {_spent(cost['synthesis'], bool(stats['execution']['synthesis']))}, "
        f"judge {_spent(cost['judge'], bool(stats['execution']['judge']))}",
    ]
    if note := cost_note(stats["cost_by_stage"]):  # under the cost line it explains
        lines.append(f"               {note}")
    if cache := cache_lines(stats.get("prompt_cache") or {}):
        lines.append(f"  prompt cache {'; '.join(cache)}")
    modes = [f"{part} {execution_text(ex)}" for part, ex in stats["execution"].items() if ex]
    if modes:
        lines.append("  calls        " + "; ".join(modes))
    lines += contamination_lines(stats.get("contamination") or {})
    lines += statistics_lines(stats.get("statistics") or {})
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
        "quality.copy_threshold, the closest samples beside their references (refed_dspy.quality.figures).",
    )
    statistics: dict[str, Any] = Field(
        default_factory=dict,
        description="Reflection-Tuning's data statistics (`refed report --score`): for the run's references, drafts "
        "and final responses, the mean instruction perplexity, response perplexity alone and given the instruction, "
        "IFD and coherence; the scoring model, and which samples were scored (refed_dspy.quality.statistics).",
    )
    html: str = Field("", exclude=True, description="Where report.html was written.")
    images: list[str] = Field(default_factory=list, exclude=True, description="The figures drawn in it.")
    text: str = Field("", exclude=True, description="The summary `refed report` prints.")


def build_report(
    run_dir: str | Path,
    config: ConfigLike | None = None,
    embedder: Callable[[list[str]], Any] | None = None,
    score: bool = False,
    score_all: bool = False,
    show_progress: bool = False,
) -> Report:
    """Compute the report for `run_dir`, write report.html and report.json there; returns the figures.

    With `score`, the report holds Reflection-Tuning's data statistics, measured by the [scoring] model (the scorer
    extra) on the run's references and on every sample (`score_all`) or [scoring] report_pairs of them, drafts and
    final responses. The run dir's lock is held while the report is made, so it never writes into a run another
    process is writing (RunDirError naming that process), and a directory refed did not make is refused.

    Args:
        run_dir: a run dir or a filtered dir with a samples.jsonl.
        config: the config whose [report], [scoring] and [tracking] are used; None: the run dir's own config.toml.
        embedder: a callable mapping a list of texts to their embeddings, for the instructions' embedding diversity;
            None: the [report] embedding_model's, or no embedding diversity when that is unset.
        score: add the data statistics measured by the [scoring] model.
        score_all: add them measured on every sample rather than [scoring] report_pairs of them.
        show_progress: print the scoring's progress on stderr.

    Returns:
        The report's figures as report.json holds them, with the path of report.html, its images and a text summary.

    Raises:
        RunDirError: `run_dir` has no samples.jsonl, another process holds its lock, or refed did not make it.
    """
    rundir = RunDir(run_dir)
    if not rundir.samples.exists():
        raise RunDirError(f"{rundir.path} has no samples.jsonl; nothing to report")
    config = given_config(config) or run_config(rundir)
    path = rundir.path / "report.html"
    with owned(run_dir, "run", "refed report", also=("filter",), existing=True, flag="RUN_DIR"):
        stats = compute(rundir, config, embedder)
        if score or score_all:
            scorer = open_scorer(config.scoring, config.report.embedding_model)
            stats["statistics"] = statistics_block(rundir, config, scorer, score_all, show_progress)
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


IMPROVEMENT = ("pairs", "improvement_win_rate", "improvement_tie_rate", "improvement_loss_rate", "position_bias_rate")


def render_html(stats: dict[str, Any], images: dict[str, str]) -> str:
    """The whole report as one HTML document with inline images and styles (it renders offline)."""
    return render("refed_dspy.quality", "report.html", **page_context(stats, images))


def page_context(stats: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """What the template is given: the figures (`stats`), the images, and the few lines and tables computed from
    them."""
    j = stats["judge"]
    cost = stats["cost_usd"]
    return {
        "stats": stats,
        "images": images,
        "total_cost": None if cost["synthesis"] is None else cost["synthesis"] + (cost["judge"] or 0.0),
        "mixed": mixed_line(stats.get("teachers")),
        "self_preference": self_preference_line(j["self_preference_model"]) if j.get("self_preference") else None,
        "mean_scores": {"mean score": j["mean_score"], **j["mean_by_criterion"]}
        if j.get("mean_score") is not None
        else {},
        "improvement": {k: j[k] for k in IMPROVEMENT} if j.get("pairs") else {},
        "lengths": [{"text": k, **v} for k, v in stats["lengths"].items()],
        "near": near_duplicate_section(stats["near_duplicates"]),
        "copies": copies_section(stats["reference_copies"]),
        "cost_rows": [{"stage": k, **v} for k, v in sorted(stats["cost_by_stage"].items())],
        # of the completion tokens, the hidden reasoning: a column where some stage has any
        # of the prompt tokens, those read from and written to the provider's prompt cache
        "cost_columns": ["stage", "calls", "prompt_tokens", "cached_tokens", "cache_write_tokens", "completion_tokens"]
        + (["reasoning_tokens"] if any(v.get("reasoning_tokens") for v in stats["cost_by_stage"].values()) else [])
        + ["cost_usd"],
        "cost_note": cost_note(stats["cost_by_stage"]),
        "prompt_cache": cache_lines(stats.get("prompt_cache") or {}),
        "modes": {f"{part} calls": execution_text(ex) for part, ex in stats["execution"].items() if ex},
        "contamination": contamination_section(stats.get("contamination") or {}),
        "statistics": statistics_section(stats.get("statistics") or {}),
        "sample_cards": stats.get("cards") or {},
    }


LARGEST = 5  # clusters shown in the report
SHOWN_MEMBERS = 5  # removed members listed per cluster shown
SNIPPET = 240  # characters of a cluster's kept text


def settings_of(config: Config) -> NearDuplicates:
    """The config's first `near_duplicates` filter, or one with the defaults."""
    return next((f for f in config.filters if isinstance(f, NearDuplicates)), NearDuplicates())


def near_duplicate_block(samples: list[dict[str, Any]], spec: NearDuplicates) -> dict[str, Any]:
    """Clusters of near-duplicates among `samples` (a cluster: a kept sample and the later ones that repeat it):
    how many, their sizes (size -> clusters), the samples beyond the first of each, and the largest few."""
    matches = near_duplicate_matches(
        [parts_of(s, spec.field) for s in samples], spec.threshold, spec.shingle_words, spec.num_perm, spec.seed
    )
    members: dict[int, list[tuple[int, float]]] = {}
    for m in matches:
        members.setdefault(m.of, []).append((m.index, m.similarity))
    sizes = Counter(len(v) + 1 for v in members.values())
    largest = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:LARGEST]
    return {
        "field": spec.field,
        "threshold": spec.threshold,
        "shingle_words": spec.shingle_words,
        "num_perm": spec.num_perm,
        "seed": spec.seed,
        "samples": len(samples),
        "clusters": len(members),
        "in_clusters": sum(size * n for size, n in sizes.items()),
        "near_duplicates": len(matches),
        "share": round(len(matches) / len(samples), 4) if samples else 0.0,
        "sizes": {str(size): sizes[size] for size in sorted(sizes)},
        "largest": [
            {
                "kept": samples[kept]["meta"]["id"],
                "size": len(dups) + 1,
                "text": " / ".join(parts_of(samples[kept], spec.field))[:SNIPPET],
                "members": [
                    {"id": samples[i]["meta"]["id"], "similarity": round(sim, 3)} for i, sim in dups[:SHOWN_MEMBERS]
                ],
            }
            for kept, dups in largest
        ],
    }


def _settings_phrase(block: dict[str, Any]) -> str:
    return (
        f"{block['field']}, {block['shingle_words']}-word shingles, estimated Jaccard >= {block['threshold']}, "
        f"{block['num_perm']} MinHash permutations"
    )


def near_duplicate_section(block: dict[str, Any]) -> dict[str, Any]:
    """What report.html's "Near-duplicates" section shows (quality/templates/report_near_duplicates.html): the block and
    its settings in words."""
    return {"block": block, "phrase": _settings_phrase(block)}


def near_duplicate_line(block: dict[str, Any]) -> str:
    """The text summary's line."""
    if not block.get("clusters"):
        return f"  near-dups    none ({_settings_phrase(block)})"
    return (
        f"  near-dups    {block['near_duplicates']} samples repeat another ({block['share']:.1%}), in "
        f"{block['clusters']} clusters, the largest of {max(int(k) for k in block['sizes'])} "
        f"({_settings_phrase(block)})"
    )
