"""Batch mode against online mode on the same stand-in provider, and `refed estimate` against both.

    python bench/batch.py [--size 1000]

One loopback server (its own process) answers both runs: online over /v1/chat/completions, batch through its
OpenAI Files + Batches endpoints (the same chat answers, one batch line at a time). Both runs use the same
embedded references, method and teacher price table (gpt-4o-mini). The stand-in writes responses of
--response-words words (its words are one token each: 400 is as many tokens as the references' responses,
404 in o200k_base) and list items of --item-words, and counts
tokens with o200k_base (gpt-4o-mini's tokenizer) and caches prompt prefixes as OpenAI does.

Figures: cost per sample (batch / online), calls and tokens per sample, wall time, batches; and the estimate's
error on each run's cost and calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness import ROOT, Server, machine, save, synthesize_cli

sys.path.insert(0, str(ROOT))


def overrides(api_base: str, run_dir: Path, size: int, mode: str) -> list[str]:
    return [
        f"teacher.api_base='{api_base}'",
        "teacher.api_key_env=''",
        f"run.dir='{run_dir}'",
        f"synthesis.size={size}",
        "synthesis.concurrency=64",
        f"synthesis.mode='{mode}'",
        "run.progress=false",
        "teacher.timeout=120",
        "batch.poll_s=0.5",
        "batch.linger_s=1.0",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--response-words", type=int, default=400)
    ap.add_argument("--item-words", type=int, default=25)
    a = ap.parse_args()
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.estimate import estimate

    work = Path(tempfile.mkdtemp(prefix="refed-batch-"))
    extra = {"batch_validating_s": 0.2, "batch_finalizing_s": 0.2}
    rows = []
    with Server(
        log_path=work / "server.jsonl",
        words_per_text=a.response_words,
        words_per_item=a.item_words,
        tokenizer="o200k_base",
        extra=extra,
    ) as srv:
        for mode in ("online", "batch"):
            over = overrides(srv.api_base, work / mode, a.size, mode)
            e = estimate(load_config(None, over), earlier=False)  # the walk, not the online run beside it
            s = synthesize_cli(over)
            key = "batch_cost_usd" if mode == "batch" else "cost_usd"
            est_cost, est_calls = e["total"][key], e["total"]["calls"]
            u = s["usage"]
            rows.append(
                {
                    "mode": mode,
                    "samples": s["samples"],
                    "status": s["status"],
                    "calls": u["calls"],
                    "prompt_tokens_per_sample": round(u["prompt_tokens"] / s["samples"], 1),
                    "completion_tokens_per_sample": round(u["completion_tokens"] / s["samples"], 1),
                    "cached_share": round(u["cached_tokens"] / max(1, u["prompt_tokens"]), 3),
                    "cost_usd": round(u["cost_usd"], 4),
                    "cost_per_sample_usd": s["per_sample"]["cost_usd"],
                    "wall_s": s["bench_wall_s"],
                    "batches": (s.get("batch") or {}).get("batches"),
                    "estimate_cost_usd": round(est_cost, 4),
                    "estimate_cost_error": round((u["cost_usd"] - est_cost) / est_cost, 3),
                    "estimate_range_usd": [
                        round(e["total"][key.replace("cost_usd", "cost_low_usd")], 4),
                        round(e["total"][key.replace("cost_usd", "cost_high_usd")], 4),
                    ],
                    "estimate_calls": est_calls,
                    "estimate_calls_error": round((u["calls"] - est_calls) / est_calls, 3),
                    "estimate_prompt_tokens_error": round(
                        (u["prompt_tokens"] - e["total"]["prompt_tokens"]) / e["total"]["prompt_tokens"], 3
                    ),
                    "estimate_completion_tokens_error": round(
                        (u["completion_tokens"] - e["total"]["completion_tokens"]) / e["total"]["completion_tokens"], 3
                    ),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    ratio = rows[1]["cost_per_sample_usd"] / rows[0]["cost_per_sample_usd"]
    print(f"batch / online cost per sample: {ratio:.3f}")
    save(
        "batch",
        {
            "machine": machine(),
            "size": a.size,
            "rows": rows,
            "batch_over_online": round(ratio, 3),
            "stand_in": {"response_words": a.response_words, "item_words": a.item_words},
        },
    )


if __name__ == "__main__":
    main()
