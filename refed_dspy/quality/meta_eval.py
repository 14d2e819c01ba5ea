"""Judge meta-evaluation against human labels (in the spirit of HEAP, Mehri and Shwartz 2023).

Labels are JSONL, one item per line, of two kinds (`kind` may be left out; it is inferred):

  pairwise: {"id": "p1", "kind": "pairwise", "instruction": "...", "response_a": "...", "response_b": "...",
             "preference": "a" | "b" | "tie"}
  likert:   {"id": "l1", "kind": "likert", "instruction": "...", "response": "...", "score": 4, "scale": [1, 5]}

The judge sees each pairwise item in both orders and each likert item once (its mean rubric score).
Reported: pairwise accuracy (judge verdict == human preference, ties included as a class), the judge's
tie rate, its position-bias rate (decisive in both orders but for different positions: the verdict flips
with the order), and Pearson and Spearman correlation between judge and human scores.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import dspy
from pydantic import Field

from refed_dspy.config.load import ConfigLike, as_config
from refed_dspy.engine.execution import Engine
from refed_dspy.engine.failures import Failure
from refed_dspy.engine.stage import StageBase, Started
from refed_dspy.errors import FinishedShort, SeedError
from refed_dspy.launch.plan import launch
from refed_dspy.programs import PairwiseJudge, PointwiseJudge
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.results import Result
from refed_dspy.synthesis.program import with_lm_of

PREFERENCES = ("a", "b", "tie")


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """Validated label items; SeedError naming the first bad line."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SeedError(f"labels file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SeedError(f"cannot read labels file {p}: {err}") from None
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SeedError(f"{p}:{n}: not JSON ({err.msg})") from None
        kind = row.get("kind") or ("pairwise" if "preference" in row else "likert" if "score" in row else None)
        need = {
            "pairwise": ("instruction", "response_a", "response_b", "preference"),
            "likert": ("instruction", "response", "score"),
        }.get(kind)
        if need is None:
            raise SeedError(f"{p}:{n}: cannot tell the kind: a pairwise item has 'preference', a likert item 'score'")
        missing = [k for k in need if row.get(k) in (None, "")]
        if missing:
            raise SeedError(f"{p}:{n}: {kind} item lacks {', '.join(missing)}")
        if kind == "pairwise" and str(row["preference"]).lower() not in PREFERENCES:
            raise SeedError(f"{p}:{n}: preference must be a, b or tie, got {row['preference']!r}")
        if kind == "likert" and not isinstance(row["score"], (int, float)):
            raise SeedError(f"{p}:{n}: score must be a number, got {row['score']!r}")
        items.append({**row, "kind": kind, "id": row.get("id", f"line{n}")})
    if not items:
        raise SeedError(f"{p} has no label items")
    return items


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r; None with fewer than 2 points or no variance."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rho: Pearson's r of the (tie-averaged) ranks."""
    return pearson(ranks(xs), ranks(ys)) if len(xs) >= 2 else None


def meta_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures from per-item results: pairwise {preference, judge, flipped}; likert {score, judge_score}."""
    pairs = [r for r in results if r["kind"] == "pairwise"]
    likert = [r for r in results if r["kind"] == "likert"]
    n = len(pairs)
    human = [float(r["score"]) for r in likert]
    judge = [float(r["judge_score"]) for r in likert]

    def rnd(v):
        return None if v is None else round(v, 4)

    return {
        "pairwise_items": n,
        "pairwise_accuracy": rnd(sum(r["judge"] == r["preference"] for r in pairs) / n) if n else None,
        "tie_rate": rnd(sum(r["judge"] == "tie" for r in pairs) / n) if n else None,
        "position_bias_rate": rnd(sum(bool(r["flipped"]) for r in pairs) / n) if n else None,
        "likert_items": len(likert),
        "pearson": rnd(pearson(human, judge)),
        "spearman": rnd(spearman(human, judge)),
    }


class LabelJudge(dspy.Module):
    """The judge's verdict on one label item: the pairwise judge on a pair (both orders), the pointwise judge's mean
    rubric score on a likert item. The part a meta-evaluation runs for each item."""

    def __init__(self, criteria: Any):
        super().__init__()
        self.pointwise, self.pairwise = PointwiseJudge(criteria), PairwiseJudge()

    async def aforward(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["kind"] == "pairwise":
            pred = await self.pairwise.acall(
                instruction=item["instruction"], first=item["response_a"], second=item["response_b"]
            )
            out = {
                "judge": {"first": "a", "second": "b"}.get(pred.winner, "tie"),
                "verdicts": pred.verdicts,
                "flipped": pred.flipped,
                "preference": str(item["preference"]).lower(),
            }
        else:
            pred = await self.pointwise.acall(instruction=item["instruction"], response=item["response"])
            out = {"judge_score": pred.overall, "scores": pred.scores, "score": item["score"]}
        return {"id": item["id"], "kind": item["kind"], **out}


class MetaEval(StageBase):
    """The judge over labelled items, as a stage of the execution engine (retries, window, budget, streak)."""

    what = "meta-evaluation"

    def __init__(self, config: Any, items: list[dict[str, Any]], started: Started):
        super().__init__(config.judge, "judge", started, prices=config.price_book)
        self.queue = deque(items)  # what is still to judge; a refused start puts it back
        self.results: dict[str, dict[str, Any]] = {}
        g = config.judging
        self.make_engine(
            concurrency=g.concurrency,
            worst_calls={"item": 2},
            max_calls=g.max_calls,
            max_cost_usd=g.max_cost_usd,
            max_consecutive_failures=g.max_consecutive_failures,
            stop_grace_s=config.run.stop_grace_s,
        )

    def fill(self, engine: Engine) -> None:
        while engine.slots_free() >= 2 or not engine.busy:
            if not self.queue:
                return
            item = self.queue.popleft()
            if not engine.start("item", item, 2):
                self.queue.appendleft(item)
                return

    def key(self, kind: str, item: dict[str, Any]) -> str:
        return str(item["id"])

    def work(self, kind: str, item: dict[str, Any], calls: list):
        return self.run_part("item", None, {"item": item}, calls)

    def handle(
        self, kind: str, item: dict[str, Any], result: Any, failure: Failure | None, usage: dict[str, Any]
    ) -> None:
        # an item the judge could not answer is reported with the results, not fatal
        self.results[str(item["id"])] = (
            result
            if failure is None
            else {"id": item["id"], "kind": item["kind"], "error": failure.reason, "detail": failure.detail}
        )


class MetaEvalResult(Result):
    """How the judge agrees with human labels: the figures, each item's verdict, the judge's usage."""

    labels: str
    judge: str
    adapter: dict[str, Any] | None
    metrics: dict[str, Any] = Field(description="Pairwise accuracy, tie and position-bias rates, Pearson, Spearman.")
    failed: int = Field(description="Items the judge could not answer.")
    unjudged: int = Field(0, description="Items not judged: [judging]'s max_calls or max_cost_usd stopped it first.")
    item_results: list[dict[str, Any]] = Field(alias="items", description="Each label item with the judge's verdict.")
    usage: dict[str, Any]


async def ameta_eval(config: Any, labels_path: str | Path, judge_lm: dspy.LM | None = None) -> MetaEvalResult:
    """Run the judge of `config` over a labels file."""

    items = read_labels(labels_path)
    if judge_lm is not None:  # the user's LM: the result names and prices it
        config = with_lm_of(config, "judge", judge_lm)
    # no run dir: online, here, whatever [ray] and judging.mode say (the launch path's `here`)
    with launch(config, "judge", judge_lm, here=True) as plan:
        stage = MetaEval(config, items, plan.start_here({"item": LabelJudge(config.judging.criteria)}))
        await stage.run_plain()
    results = [stage.results[str(i["id"])] for i in items if str(i["id"]) in stage.results]
    ok = [r for r in results if "error" not in r]
    failed = [r for r in results if "error" in r]
    if not ok:
        first = failed[0] if failed else {"error": "budget", "detail": "no item was judged within the budget"}
        raise FinishedShort(
            f"the judge answered none of the {len(items)} label items (first error: "
            f"{first['error']}: {first['detail']})"
        )
    return MetaEvalResult(
        **{
            "labels": str(labels_path),
            "judge": config.judge.model,
            "adapter": stage.adapter.choice.as_dict(),
            "metrics": meta_metrics(ok),
            "failed": len(failed),
            "unjudged": len(items) - len(results),
            "items": results,
            "usage": stage.engine.totals.as_dict(),
        }
    )


def meta_eval(config: ConfigLike, labels_path: str | Path, *, judge: dspy.BaseLM | None = None) -> MetaEvalResult:
    """Check the judge against labels people wrote; `refed judge meta-eval` from Python.

    Args:
        config: the Config whose [judge] and [judging] are checked.
        labels_path: a JSONL file of labelled items: pairwise preferences (`response_a`, `response_b`,
            `preference` a | b | tie) and likert scores (`response`, `score`, `scale`).
        judge: a dspy.LM (or any dspy.BaseLM) to judge with instead of building one from [judge].

    Returns:
        Pairwise accuracy, tie and position-bias rates, and the Pearson and Spearman correlation of the judge's
            mean rubric score with the likert scores.

    Raises:
        SeedError: the labels file is missing, unreadable, empty, or holds an item of no known kind.
        ConfigError, MissingKeyError, KeyProviderError: the judge cannot be called as configured (before any call).
        FinishedShort: the judge answered none of the items.

    A budget ([judging] max_calls, max_cost_usd) that stops it before every item is judged leaves the figures of
    those judged, and `unjudged` says how many were not (`refed judge meta-eval` then exits 1).
    """
    return run_sync(ameta_eval(as_config(config), labels_path, judge_lm=judge))


def format_meta_eval(result: MetaEvalResult) -> str:
    """A short text report."""
    m = result["metrics"]

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    cost = result["usage"].get("cost_usd")
    return "\n".join(
        [
            f"judge {result['judge']} on {result['labels']}: {m['pairwise_items']} pairwise, {m['likert_items']} likert items"
            + (f", {result['failed']} failed" if result["failed"] else "")
            + (f", {result['unjudged']} not judged (the budget)" if result["unjudged"] else ""),
            f"  pairwise accuracy   {f(m['pairwise_accuracy'])}",
            f"  tie rate            {f(m['tie_rate'])}",
            f"  position-bias rate  {f(m['position_bias_rate'])}",
            f"  Pearson r           {f(m['pearson'])}",
            f"  Spearman rho        {f(m['spearman'])}",
            f"  cost                {'unknown' if cost is None else f'${cost:.4f}'} ({result['usage']['calls']} calls)",
        ]
    )
