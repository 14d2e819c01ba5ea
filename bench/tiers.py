"""The same run on the default tier, on the flex tier and in batch mode: cost per sample and wall time.

    python bench/tiers.py [--size 1000] [--flex-unavailable 0.1] [--flex-slower 2.0]

Loopback servers (each its own process) answer the three `refed` runs of one config (gpt-5-mini, a model LiteLLM
prices on the flex tier at half its default price): online on the default tier, online with `service_tier = "flex"`,
and in batch mode (the OpenAI Files + Batches endpoints of a second server). The online server follows the latency
model of the other benchmarks (harness.LATENCY) and, as OpenAI's flex tier does, answers a share of flex requests 429
"resource unavailable" (--flex-unavailable; not billed) and flex requests more slowly (--flex-slower times that
latency). The batch server answers its lines at once, one after the other: its wall time is that of refed's batch
machinery (linger, polls), not a provider's turnaround, which `refed estimate`'s wall times assume instead. Both count
tokens with o200k_base and cache prompt prefixes as OpenAI does. `refed estimate` is run on the flex config first:
its online, flex and batch columns and wall times are printed beside what the runs cost and took.

Figures: samples made, calls, requests the flex tier found no capacity for, cost per sample (and over the default
tier's), the cost at the server's own token counts at each tier's list price, and wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness import LATENCY, ROOT, Server, machine, save, synthesize_cli

sys.path.insert(0, str(ROOT))

MODEL = "openai/gpt-5-mini"


def overrides(api_base: str, run_dir: Path, size: int, way: str) -> list[str]:
    return [
        f"teacher.model='{MODEL}'",
        "teacher.temperature=1.0",  # a reasoning model: what OpenAI accepts for it
        "teacher.max_tokens=16000",
        f"teacher.api_base='{api_base}'",
        "teacher.api_key_env=''",
        f"teacher.service_tier='{'flex' if way == 'flex' else 'default'}'",
        f"run.dir='{run_dir}'",
        f"synthesis.size={size}",
        "synthesis.concurrency=64",
        f"synthesis.mode='{'batch' if way == 'batch' else 'online'}'",
        "run.progress=false",
        "batch.poll_s=0.5",
        "batch.linger_s=1.0",
    ]


def served_cost(log: list[dict], since: int, tier: str, factor: float = 1.0) -> float:
    """What the server's answered chat requests from line `since` on cost at MODEL's list price on `tier`."""
    from refed_dspy.providers.prices import resolve_price

    price = resolve_price(MODEL, None, None, None, tier=tier).scaled(factor)
    answered = [e for e in log[since:] if e.get("status") == 200 and "prompt_tokens" in e]
    return sum(price.cost(e["prompt_tokens"], e["completion_tokens"], e.get("cached_tokens", 0)) for e in answered)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--flex-unavailable", type=float, default=0.1)
    ap.add_argument("--flex-slower", type=float, default=2.0)
    ap.add_argument("--response-words", type=int, default=400)
    ap.add_argument("--item-words", type=int, default=25)
    a = ap.parse_args()
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.estimate import estimate

    work = Path(tempfile.mkdtemp(prefix="refed-tiers-"))
    rows = []
    texts = {"words_per_text": a.response_words, "words_per_item": a.item_words, "tokenizer": "o200k_base"}
    online = {"flex_unavailable": a.flex_unavailable, "flex_slower": a.flex_slower, **LATENCY}
    batch = {"extra": {"batch_validating_s": 0.2, "batch_finalizing_s": 0.2}}
    with (
        Server(log_path=work / "online.jsonl", **texts, **online) as on,
        Server(log_path=work / "batch.jsonl", **texts, **batch) as off,
    ):
        e = estimate(load_config(None, overrides(on.api_base, work / "estimate", a.size, "flex")))
        t = e["total"]
        said = {"online": t["cost_usd"], "flex": t["flex_cost_usd"], "batch": t["batch_cost_usd"], "wall": e["wall"]}
        print(json.dumps({"estimate": said}), flush=True)
        for way in ("default", "flex", "batch"):
            srv = off if way == "batch" else on
            since = len(srv.log())
            s = synthesize_cli(overrides(srv.api_base, work / way, a.size, way))
            log = srv.log()
            chat = [x for x in log[since:] if "prompt_tokens" in x or x.get("status") == 429]
            u = s["usage"]
            tier, factor = ("default", 0.5) if way == "batch" else (way, 1.0)
            rows.append(
                {
                    "way": way,
                    "samples": s["samples"],
                    "status": s["status"],
                    "calls": u["calls"],
                    "no_capacity_429": sum(1 for x in chat if x.get("fault") == "resource_unavailable"),
                    "by_tier": u.get("by_tier"),
                    "cost_usd": round(u["cost_usd"], 4),
                    "served_at_list_price_usd": round(served_cost(log, since, tier, factor), 4),
                    "cost_per_sample_usd": s["per_sample"]["cost_usd"],
                    "wall_s": s["bench_wall_s"],
                    "batches": (s.get("batch") or {}).get("batches"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["cost_per_sample_usd"]
    for row in rows:
        row["over_default"] = round(row["cost_per_sample_usd"] / base, 3)
    print(f"{'way':<9}{'samples':>8}{'calls':>7}{'429s':>6}{'cost/sample':>13}{'x default':>11}{'wall s':>9}")
    for row in rows:
        print(
            f"{row['way']:<9}{row['samples']:>8}{row['calls']:>7}{row['no_capacity_429']:>6}"
            f"{row['cost_per_sample_usd']:>13.6f}{row['over_default']:>11.3f}{row['wall_s']:>9.1f}"
        )
    save(
        "tiers",
        {
            "machine": machine(),
            "size": a.size,
            "model": MODEL,
            "flex_unavailable": a.flex_unavailable,
            "flex_slower": a.flex_slower,
            "estimate": said,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
