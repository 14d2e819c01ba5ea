"""The report's figures: matplotlib plots of a report's statistics, as base64 PNGs inlined into report.html."""

from __future__ import annotations

import base64
import io
from typing import Any


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
