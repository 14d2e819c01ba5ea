"""report.html: what the page shows, gathered from a report's figures; quality/templates/report.html lays it out."""

from __future__ import annotations

from typing import Any

from refed_dspy.pages import render
from refed_dspy.quality.contamination import contamination_section
from refed_dspy.quality.near_duplicate_report import near_duplicate_section
from refed_dspy.quality.reference_copies import copies_section
from refed_dspy.quality.report_stats import cache_lines, cost_note, execution_text
from refed_dspy.quality.statistics import statistics_section
from refed_dspy.store.teachers import mixed_line, self_preference_line

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
