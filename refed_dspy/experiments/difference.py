"""A cell against its baseline: the paired difference on the test examples both were scored on (and the synthesis
checks' unpaired one), the cell's outcome in a few words, and the champion among the cells."""

from __future__ import annotations

from typing import Any

from refed_dspy.experiments.plan import ExperimentPlan
from refed_dspy.experiments.stats import paired_difference, significantly_better, unpaired_difference


def outcome(row: dict[str, Any]) -> str:
    """A finished cell in a few words: its test score against its baseline, or that it kept it, and its calls."""
    calls = (row.get("usage") or {}).get("calls", 0)
    if row.get("kept") == "baseline":
        return f"kept baseline ({row.get('kept_reason') or 'the optimizer changed nothing'}); {calls} LM calls"
    d = row.get("difference") or {}
    versus = f", {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] against its baseline" if d else ""
    return f"test score {row.get('test_mean', 0.0):.4f} (0-1){versus}; {calls} LM calls"


def against_baseline(row: dict[str, Any], baseline: dict[str, Any], plan: ExperimentPlan) -> dict:
    """The cell's paired difference to its baseline on the test examples both were scored on, at each cell's level."""
    level, settings = plan.cell_level, plan.settings
    if row.get("status") != "done":
        return {"difference": None}
    keys = [k for k in row["scores"] if k in baseline["scores"]]
    if not keys:
        return {"difference": None}
    groups = row.get("groups") or {}
    diff = paired_difference(
        [row["scores"][k] for k in keys],
        [baseline["scores"][k] for k in keys],
        level=level,
        resamples=settings.resamples,
        seed=settings.seed,
        groups=[groups.get(k, k) for k in keys],  # examples of one reference are resampled together
    )
    out = {"baseline_mean": baseline["test_mean"], "difference": diff.as_dict()}
    mine, theirs = (row.get("synthesis") or {}).get("scores"), (baseline.get("synthesis") or {}).get("scores")
    if mine and theirs:  # different samples on each side: the two runs' means, each resampled on its own
        syn = unpaired_difference(mine, theirs, level=level, resamples=settings.resamples, seed=settings.seed)
        out["synthesis_difference"] = syn.as_dict()
    return out


def champion_of(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The champion: the best on validation among the cells that beat their baseline on the test set, so that its test
    score is not the maximum of several noisy ones (None: no cell did)."""
    winners = [r for r in rows if significantly_better(r.get("difference"))]
    return max(winners, key=lambda r: (r.get("val_after") or 0.0, r["test_mean"]), default=None)
