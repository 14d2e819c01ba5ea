"""The figures of a dataset quality report, as pure functions over records (no plotting); and what judgments say, read
back from a run dir's files: their figures (judge_summary.json, `JudgeSummary`), and why the samples without one have
none. Pure functions over records and judgment rows, and their readers.

The report's `reference_copies` block: how close each sample is to its own reference (instruction to instruction,
final response to response), the distribution, the samples at or over the copy threshold and the closest ones to read.

The references come from the run's seeds (its config.toml's [seeds]), so this reads files only, and works the same on a
run made locally, on Ray or from Python with the same seeds. Samples of a method that rewrites its reference
(reflection) are not measured.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime, timezone
from statistics import fmean
from typing import Any

from pydantic import Field

from refed_dspy.config import Config
from refed_dspy.errors import ConfigError, SeedError
from refed_dspy.filters.reference_copy import PARTS, References, measure_samples, seed_references
from refed_dspy.ledger.usage import prompt_cache_text, tier_text
from refed_dspy.store.jsonl import read_jsonl
from refed_dspy.store.records import final_response, self_preference
from refed_dspy.store.results import Optional, Result
from refed_dspy.store.rundir import RunDir, run_config
from refed_dspy.text.closeness import COPY_THRESHOLD, SPAN_WORDS
from refed_dspy.text.counts import counted
from refed_dspy.text.overlap import changed_share, tokens


def words(text: str | None) -> int:
    return len((text or "").split())


def describe(values: list[float]) -> dict[str, Any]:
    """n, mean, median, p10, p90, min, max of a list of numbers (None fields when empty)."""
    if not values:
        return {"n": 0, "mean": None, "median": None, "p10": None, "p90": None, "min": None, "max": None}
    s = sorted(values)

    def pct(q: float) -> float:
        return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]

    return {
        "n": len(s),
        "mean": round(statistics.fmean(s), 2),
        "median": statistics.median(s),
        "p10": pct(0.1),
        "p90": pct(0.9),
        "min": s[0],
        "max": s[-1],
    }


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams across `texts` (Li et al. 2016's distinct-n)."""
    grams: Counter = Counter()
    for text in texts:
        toks = tokens(text)
        grams.update(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    total = sum(grams.values())
    return round(len(grams) / total, 4) if total else None


def mean_pairwise_cosine_distance(vectors) -> float | None:
    """1 - mean cosine similarity over distinct pairs of embedding vectors (a 2-D array)."""
    import numpy as np

    v = np.asarray(vectors, dtype=float)
    if v.ndim != 2 or len(v) < 2:
        return None
    v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    sims = v @ v.T
    n = len(v)
    mean_sim = (sims.sum() - np.trace(sims)) / (n * (n - 1))
    return round(float(1 - mean_sim), 4)


def yields(samples: list[dict], units: list[dict], rejects: list[dict]) -> dict[str, list[dict[str, Any]]]:
    """Per reference and per feature: instructions kept by synthesis, samples made, rejects, and the yield
    (samples / instructions kept; for recycling methods, samples / seed pairs tried)."""
    kept_ref: Counter = Counter()
    kept_feat: Counter = Counter()
    for u in units:
        kept_ref[u["reference_id"]] += len(u.get("kept", []))
        kept_feat[u["feature"]] += len(u.get("kept", []))
    samp_ref = Counter(s["meta"]["reference_id"] for s in samples)
    samp_feat = Counter(s["meta"]["feature"] for s in samples)
    rej_ref = Counter(r.get("reference_id") for r in rejects if r.get("stage") in ("sample", "synthesize", "dedup"))

    def rows(keys, kept, made, rej) -> list[dict[str, Any]]:
        out = []
        for key in sorted(keys, key=lambda k: (-made[k], str(k))):
            tried = kept[key] or (made[key] + rej[key])
            out.append(
                {
                    "key": key,
                    "instructions": kept[key],
                    "samples": made[key],
                    "rejects": rej[key],
                    "yield": round(made[key] / tried, 4) if tried else None,
                }
            )
        return out

    refs = set(kept_ref) | set(samp_ref)
    feats = set(kept_feat) | set(samp_feat)
    return {
        "by_reference": rows(refs, kept_ref, samp_ref, rej_ref),
        "by_feature": rows(feats, kept_feat, samp_feat, Counter()),
    }


def lengths(samples: list[dict]) -> dict[str, list[int]]:
    """Word counts of instructions, drafts and improved responses."""
    return {
        "instruction": [words(s.get("instruction")) for s in samples],
        "draft": [words(s.get("response")) for s in samples],
        "improved": [words(s.get("improved_response")) for s in samples if s.get("improved_response")],
    }


def cost_by_stage(*usages: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Calls, tokens (prompt, of them read from and written to the provider's cache, completion) and cost per stage,
    summed over usage dicts (synthesis, judge, ...); of the completion tokens, those a reasoning model spent thinking
    are said apart (`reasoning_tokens`, billed as output)."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "calls": 0,
            "prompt_tokens": 0,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "completion_tokens": 0,
            "reasoning_tokens": 0,
            "cost_usd": 0.0,
        }
    )
    for usage in usages:
        for name, part in ((usage or {}).get("by_stage") or {}).items():
            row = out[name]
            for key in (
                "calls",
                "prompt_tokens",
                "cached_tokens",
                "cache_write_tokens",
                "completion_tokens",
                "reasoning_tokens",
            ):
                row[key] += int(part.get(key) or 0)
            cost = part.get("cost_usd")
            row["cost_usd"] = None if cost is None or row["cost_usd"] is None else row["cost_usd"] + cost
    return dict(out)


def cost_note(by_stage: dict[str, dict[str, Any]]) -> str | None:
    """What a cost-by-stage chart cannot show, in words: nothing was paid (every call priced at 0, as for a local
    model), or no price is known. None when there is a cost to draw (or no calls)."""
    rows = [row for row in by_stage.values() if row.get("calls")]
    if not rows:
        return None
    costs = [row.get("cost_usd") for row in rows]
    if all(cost is None for cost in costs):
        return "Cost unknown: the models have no price (set the *_usd_per_mtok prices in the config)."
    if any(cost is None for cost in costs) and all(not cost for cost in costs):
        return "Cost unknown for some stages (a model with no price), and nothing paid for the rest."
    if all(cost == 0 for cost in costs):
        calls = sum(row["calls"] for row in rows)
        return f"Nothing was paid: all {calls} calls were priced at $0 (a local model, or prices set to 0)."
    return None


def sample_cards(samples: list[dict], judgments: dict[str, dict], k: int = 2) -> dict[str, list[dict[str, Any]]]:
    """A few samples worth reading: the `k` best and worst by mean judge score, and the `k` the improvement step
    changed most (share of words deleted or inserted). Each card: id, instruction, final response, score, changed."""

    def card(s: dict, score: float | None = None, changed: float | None = None) -> dict[str, Any]:
        return {
            "id": s["meta"]["id"],
            "instruction": s.get("instruction") or "",
            "response": final_response(s),
            "score": score,
            "changed": changed,
        }

    scored = [
        (j["pointwise"]["overall"], s) for s in samples if (j := judgments.get(s["meta"]["id"])) and j.get("pointwise")
    ]
    scored.sort(key=lambda pair: (pair[0], pair[1]["meta"]["id"]))
    changed = sorted(
        (
            (changed_share(s.get("response") or "", s["improved_response"]), s)
            for s in samples
            if s.get("improved_response")
        ),
        key=lambda pair: (-pair[0], pair[1]["meta"]["id"]),
    )
    return {
        "best": [card(s, score) for score, s in reversed(scored[-k:])] if scored else [],
        "worst": [card(s, score) for score, s in scored[:k]],
        "most_changed": [card(s, changed=share) for share, s in changed[:k]],
    }


def execution(summary: dict[str, Any] | None) -> dict[str, Any]:
    """How a summary's calls went: online or batch, what the batch price saved, calls per endpoint and per service tier,
    and how far the run landed from `refed estimate`. {} for a summary that predates these figures."""
    s = summary or {}
    if not s.get("mode"):
        return {}
    out: dict[str, Any] = {"mode": s["mode"]}
    batch = s.get("batch") or {}
    for key in ("batches", "requests", "resubmitted", "online_cost_usd", "saved_usd"):
        if batch.get(key) is not None:
            out[key] = batch[key]
    if s.get("endpoints"):
        out["calls_by_endpoint"] = {url: e.get("calls", 0) for url, e in s["endpoints"].items()}
    tiers = tier_text(s.get("usage"))
    if tiers:
        out["service_tiers"] = tiers
    estimate = s.get("estimate") or {}
    if estimate.get("cost_usd") is not None:
        out["estimate_usd"] = estimate["cost_usd"]
        if estimate.get("cost_error") is not None:
            out["estimate_error"] = estimate["cost_error"]
    return out


def execution_text(ex: dict[str, Any]) -> str:
    """One phrase for `execution`'s figures, such as "batch, 4 batches of 2180 requests, saved $0.5674 of $1.1348 at
    online prices, estimate $0.6138 (run cost -7.5% off it)"."""
    if not ex:
        return "unknown"
    parts = [ex["mode"]]
    if "batches" in ex:
        parts.append(
            f"{ex['batches']} batches of {ex.get('requests', 0)} requests"
            + (f" ({ex['resubmitted']} sent again)" if ex.get("resubmitted") else "")
        )
    if ex.get("saved_usd") is not None:
        parts.append(f"saved ${ex['saved_usd']:.4f} of ${ex['online_cost_usd']:.4f} at online prices")
    if ex.get("calls_by_endpoint"):
        parts.append("calls by endpoint " + ", ".join(f"{u} {n}" for u, n in ex["calls_by_endpoint"].items()))
    if ex.get("service_tiers"):
        parts.append(ex["service_tiers"])
    if ex.get("estimate_usd") is not None:
        parts.append(
            f"estimate ${ex['estimate_usd']:.4f}"
            + (f" (run cost {ex['estimate_error']:+.1%} off it)" if "estimate_error" in ex else "")
        )
    return ", ".join(parts)


MANY_REASONS = 10  # a filter with more different reasons than this names a sample in each (near_duplicates does)


def reject_reasons(rejects: list[dict[str, Any]]) -> dict[str, int]:
    """Rejects counted by reason, most first. A filter that gave more than MANY_REASONS different reasons counts as one
    line under its name, so that a reason per sample (the sample it repeats, the prompt it matches) stays in
    rejects.jsonl instead of making the report's list and chart as long as the rejects."""
    per_filter: dict[str, set[str]] = defaultdict(set)
    for r in rejects:
        if r.get("stage") == "filter":
            per_filter[r.get("filter", "?")].add(r.get("reason", "unknown"))
    many = {name: len(reasons) for name, reasons in per_filter.items() if len(reasons) > MANY_REASONS}

    def key(r: dict[str, Any]) -> str:
        name = r.get("filter", "?")
        if r.get("stage") == "filter" and name in many:
            return f"{name} ({many[name]:,} different reasons: see rejects.jsonl)"
        return r.get("reason", "unknown")

    return dict(Counter(key(r) for r in rejects).most_common())


def cache_lines(shares: dict[str, Any]) -> list[str]:
    """The prompt cache's share of each part's prompt tokens (a report's `prompt_cache`), in words (none for a part
    without prompt tokens, or that read nothing from the cache and wrote nothing to it)."""
    parts = [(part, prompt_cache_text(shares[part])) for part in ("synthesis", "judge") if part in shares]
    return [f"{part}: {text}" for part, text in parts if text]


def unjudged_reasons(judged: set[str], reject_rows: list[dict[str, Any]]) -> Counter:
    """Why the samples without a judgment have none: the reason of each one's last judge reject (pure; the usage rows
    of attempts that were retried do not count)."""
    last = {
        r.get("sample_id"): r.get("reason", "unknown")
        for r in reject_rows
        if r.get("sample_id") not in judged and not r.get("attempt")
    }
    return Counter(last.values())


class JudgeSummary(Result):
    """The figures of all judgments of a run dir (judge_summary.json)."""

    status: str = Field(description="complete | partial | budget | interrupted | aborted | submitted")
    run_dir: str = Field(description="The judged run dir.")
    judge: str = Field(description="The judge's model string.")
    self_preference: str | None = Optional(
        "The judge's model when it is also the model of the samples' teacher: judges favour their own model's outputs."
    )
    criteria: list[str] = Field(description="judging.criteria: each scored 1-10.")
    adapter: dict[str, Any] | None = Field(description="The output format the judge was asked for, and why.")
    samples: int = Field(description="The samples in the run dir.")
    judged: int = Field(description="The samples with a judgment.")
    unjudged: int = Field(description="The samples without one.")
    new: int = Field(description="Judgments this invocation added.")
    mean_score: float | None = Field(description="The mean pointwise score (1-10) of the judged samples.")
    mean_by_criterion: dict[str, float] = Field(description="The mean score of each criterion.")
    pairs: int = Field(description="Samples judged pairwise: improved response against draft, in both orders.")
    improvement_win_rate: float | None = Field(description="Share of pairs the improved response won in both orders.")
    improvement_tie_rate: float | None = Field(
        description="Share of pairs judged a tie (or that the orders disagreed on)."
    )
    improvement_loss_rate: float | None = Field(description="Share of pairs the draft won in both orders.")
    position_bias_rate: float | None = Field(
        description="Share of pairs decisive in both orders but for the same position (the verdict followed the order)."
    )
    rejects: dict[str, int] = Field(
        description="Samples still without a judgment, by the reason of their last failure."
    )
    retries: dict[str, Any] | None = Optional("Retries by reason.")
    budget_stop: str | None = Optional("Stopped by the budget: which limit, and what had been spent.")
    budget_first_call: str | None = Optional(
        "Under a cost budget: what the first call was reserved at (its worst case), before any call showed what one "
        "costs."
    )
    concurrency: dict[str, Any] | None = Optional(
        "The configured window of calls in flight, how the rate-limit controller moved it, and the 429s it saw."
    )
    mode: str | None = Optional("online | batch")
    batch: dict[str, Any] | None = Optional("Batch mode: batches, requests, and what the batch price saved.")
    endpoints: dict[str, Any] | None = Optional("Several api_base endpoints: calls and failures per endpoint.")
    ray: dict[str, Any] | None = Optional(
        "Judged on Ray: the cluster's address and each worker's node, pid, tasks, calls and whether it is alive."
    )
    usage: dict[str, Any] = Field(description="Calls, tokens and cost of the judging, in total and by stage.")
    cost_usd: float | None = Field(description="The judging's cost in USD (None: the judge's price is unknown).")
    wall_s: float = Field(description="Wall time of this invocation, in seconds.")
    finished_at: str = Field(description="When this invocation finished (UTC, ISO 8601).")


def judge_summary(
    rundir: RunDir,
    samples: list[dict[str, Any]],
    config: Config,
    usage: dict[str, Any],
    status: str,
    wall: float,
    new: int,
    price_known: bool,
    adapter: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
) -> JudgeSummary:
    """Figures of all judgments in the run dir (read back from the files).

    `status` 'complete' becomes 'partial' unless every sample has a judgment; `rejects` counts the samples
    still without one by the reason of their last failure.
    """
    rows = list(read_jsonl(rundir.judgments))
    stats = judgment_stats(rows)
    judged = {r["sample_id"] for r in rows}
    rejects = unjudged_reasons(judged, list(read_jsonl(rundir.judge_rejects)))
    unjudged = sum(1 for s in samples if s["meta"]["id"] not in judged)
    if status == "complete" and unjudged:
        status = "partial"
    return JudgeSummary(
        **{
            "status": status,
            "run_dir": str(rundir.path),
            "judge": config.judge.model,
            "self_preference": self_preference(config.judge.model, {s["meta"].get("teacher") for s in samples}),
            "criteria": list(config.judging.criteria),
            "adapter": adapter,
            "samples": len(samples),
            "judged": len(rows),
            "unjudged": unjudged,
            "new": new,
            **stats,
            "rejects": dict(rejects),
            **(engine or {}),
            "usage": usage,
            "cost_usd": usage["cost_usd"] if price_known else None,
            "wall_s": round(wall, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )


def judgment_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean scores, improvement win/tie/loss rates and position-bias rate of judgment rows (pure)."""
    overall = [r["pointwise"]["overall"] for r in rows if r.get("pointwise")]
    by_criterion: dict[str, list[int]] = {}
    for r in rows:
        for name, value in ((r.get("pointwise") or {}).get("scores") or {}).items():
            by_criterion.setdefault(name, []).append(value)
    pairs = [r["pairwise"] for r in rows if r.get("pairwise")]
    winners = Counter(p["winner"] for p in pairs)
    n = len(pairs)
    return {
        "mean_score": round(fmean(overall), 4) if overall else None,
        "mean_by_criterion": {k: round(fmean(v), 4) for k, v in by_criterion.items()},
        "pairs": n,
        "improvement_win_rate": round(winners["improved"] / n, 4) if n else None,
        "improvement_tie_rate": round(winners["tie"] / n, 4) if n else None,
        "improvement_loss_rate": round(winners["draft"] / n, 4) if n else None,
        "position_bias_rate": round(sum(1 for p in pairs if p.get("flipped")) / n, 4) if n else None,
    }


def verdict_text(j: Any) -> str:
    """The judge's figures in words (`j`: judgment_stats' figures, or a JudgeSummary): the mean score on its 1-10
    scale, how the improved response did against its draft, and the position bias, each said with what it counts."""
    mean = j.get("mean_score")
    if mean is None and not j.get("pairs"):
        return "not judged"
    out = f"mean score {'n/a' if mean is None else f'{mean:.2f}'} of 10"
    if not j.get("pairs"):
        return out + "; no pair judged"

    def share(key: str) -> str:
        return f"{j.get(key) or 0:.0%}"

    # a pair the two orders disagreed on (the verdict followed the order shown: position bias) is counted a tie
    both = max(0.0, (j.get("improvement_tie_rate") or 0) - (j.get("position_bias_rate") or 0))
    return (
        f"{out}; improved against draft, of {counted(j['pairs'], 'pair')}: won {share('improvement_win_rate')}, lost "
        f"{share('improvement_loss_rate')}, no winner {share('improvement_tie_rate')} (the two orders disagreed on "
        f"{share('position_bias_rate')}: position bias, the verdict following the order shown; a tie in both on "
        f"{both:.0%})"
    )


def load_judgments(rundir: RunDir) -> dict[str, dict[str, Any]]:
    """sample id -> judgment row."""
    return {row["sample_id"]: row for row in read_jsonl(rundir.judgments)}


WORST = 5  # the closest samples the report shows
_CUT = {"instruction": 400, "response": 1200}  # characters of each text kept in report.json


def run_references(rundir: RunDir, config: Config | None = None) -> dict[str, tuple[str, str]]:
    """Reference id -> (instruction, response), from the run's seeds ([seeds] of `config`, else of the run's
    config.toml). SeedError or ConfigError when they cannot be read."""
    return seed_references((config or run_config(rundir)).seeds)


def _cut(text: str, part: str) -> str:
    n = _CUT[part]
    return text if len(text) <= n else text[:n] + " [...]"


def copies_block(
    samples: list[dict[str, Any]], references: References, threshold: float, span: int = SPAN_WORDS, worst: int = WORST
) -> dict[str, Any]:
    """The figures of the block (pure): samples measured, and not (no reference text; a method that rewrites it), per
    part the distribution of each measure and the count at or over `threshold`, the distribution of each sample's
    closeness (the larger of its parts'), and the `worst` closest samples beside their references."""
    measured = measure_samples(samples, references, span)
    rows, unknown, rewrites = measured.rows, measured.unknown, measured.rewrites
    over = Counter()
    for _, _, measured in rows:
        hit = [part for part in PARTS if measured[part].value >= threshold]
        over.update(hit)
        over["samples"] += bool(hit)
    values = [max(m[p].value for p in PARTS) for _, _, m in rows]
    bins = [0] * 10
    for v in values:
        bins[min(9, int(v * 10))] += 1
    closest = sorted(range(len(rows)), key=lambda i: (-values[i], rows[i][0]["meta"]["id"]))[:worst]
    return {
        "threshold": threshold,
        "span_words": span,
        "measured": len(rows),
        "no_reference": unknown,
        "rewrites": rewrites,
        "over_threshold": over["samples"],
        "share_over": round(over["samples"] / len(rows), 4) if rows else None,
        "closeness": describe(values),
        "histogram": {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": n for i, n in enumerate(bins)},
        "parts": {
            part: {
                "over_threshold": over[part],
                **{
                    key: describe([m[part].as_dict()[key] for _, _, m in rows])
                    for key in ("rouge_l", "verbatim", "reference_verbatim", "longest_run")
                },
            }
            for part in PARTS
        },
        "worst": [_example(*rows[i], threshold) for i in closest],
    }


def _example(sample: dict[str, Any], ref: tuple[str, str], measured: dict, threshold: float) -> dict[str, Any]:
    part = max(PARTS, key=lambda p: measured[p].value)
    return {
        "id": sample["meta"]["id"],
        "reference_id": sample["meta"].get("reference_id"),
        "closeness": measured[part].value,
        "part": part,
        "copy": measured[part].value >= threshold,
        "why": f"{part}: {measured[part].phrase()}",
        "figures": {p: measured[p].as_dict() for p in PARTS},
        "instruction": _cut(sample.get("instruction") or "", "instruction"),
        "response": _cut(final_response(sample), "response"),
        "reference_instruction": _cut(ref[0], "instruction"),
        "reference_response": _cut(ref[1], "response"),
    }


def reference_copies(rundir: RunDir, config: Config, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The block for a run dir; when its seeds cannot be read here, a block that says why (the report goes on)."""
    threshold = config.quality.copy_threshold or COPY_THRESHOLD
    try:
        references = run_references(rundir, config)
    except (SeedError, ConfigError, OSError) as err:
        return {"threshold": threshold, "measured": 0, "unavailable": f"the run's seeds cannot be read here: {err}"}
    return copies_block(samples, references, threshold)


def copies_line(block: dict[str, Any]) -> str:
    """One line for the report's text summary."""
    if block.get("unavailable"):
        return f"not measured: {block['unavailable']}"
    if not block.get("measured"):
        if block.get("rewrites"):
            return "not measured: the method rewrites each reference (closeness to it is its point)"
        return "not measured: no sample's reference text is among the seeds"
    c = block["closeness"]
    return (
        f"{block['over_threshold']} of {block['measured']} samples at or over {block['threshold']:g} closeness to "
        f"their own reference, a near copy of it (closeness median {c['median']:.2f}, max {c['max']:.2f})"
        + (f"; {block['no_reference']} without their reference's text" if block.get("no_reference") else "")
    )


def copies_section(block: dict[str, Any]) -> dict[str, Any]:
    """What report.html's section shows (quality/templates/report_copies.html): the block, its one-line summary and the
    histogram of the samples' closeness in words."""
    histogram = " · ".join(f"{k}: {n}" for k, n in (block.get("histogram") or {}).items() if n)
    return {"block": block, "line": copies_line(block), "histogram": histogram}
