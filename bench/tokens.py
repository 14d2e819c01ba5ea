"""Tokens and cost per sample, by method and by stage, at gpt-4o-mini prices; and how much of each prompt
sits in a prefix another call also sent (what a provider's prompt cache can serve).

    python bench/tokens.py [--size 300] [--methods refed no_feedback ...]

Token counts are the loopback server's (words and punctuation marks, `count_tokens`), read back from the
usage it reports, so client and server count alike. The server also bills cached prompt tokens as OpenAI
does (a prefix of 1,024 tokens or more seen before, in 128-token steps); `effective` cost prices those at
the cached-input rate ($0.075/M instead of $0.15/M). `shared prefix` is the share of prompt tokens that
lie in a prefix some other call also sent, whatever its length: what a cache without a minimum could serve.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from harness import ROOT, Server, make_seeds, run_child, save, synth_overrides, table

sys.path.insert(0, str(ROOT / "tests"))
from loopback_server import _TOKEN  # noqa: E402 - the server's own tokenizer

from refed_dspy.methods import METHODS  # noqa: E402
from refed_dspy.providers.prices import default_price  # noqa: E402

PRICE = default_price("openai/gpt-4o-mini")
STAGE_OF_OUTPUTS = {  # the first output field names the signature, hence the stage
    "subject_areas": "feedback",
    "new_instructions": "synthesize",
    "response": "generate",
    "analysis": "improve",
    "response_feedback": "critique (reference or sample)",
    "instruction_critique": "reflect_instruction",
    "response_critique": "reflect_response",
}


def prompt_tokens(entry: dict) -> list[str]:
    return _TOKEN.findall("\n".join(str(m.get("content", "")) for m in entry["messages"]))


def shared_prefixes(seqs: list[list[str]]) -> list[int]:
    """For each token list, the longest prefix it shares with any other list (sorted neighbours)."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    best = [0] * len(seqs)

    def lcp(a: list[str], b: list[str]) -> int:
        n = min(len(a), len(b))
        i = 0
        while i < n and a[i] == b[i]:
            i += 1
        return i

    for j in range(1, len(order)):
        a, b = order[j - 1], order[j]
        k = lcp(seqs[a], seqs[b])
        best[a], best[b] = max(best[a], k), max(best[b], k)
    return best


def stage_of(entry: dict) -> str:
    outputs = entry.get("outputs") or []
    return STAGE_OF_OUTPUTS.get(outputs[0] if outputs else "", "other")


def method_row(method: str, size: int, seeds: Path | None = None) -> tuple[dict, list[dict]]:
    work = Path(tempfile.mkdtemp(prefix="refed-tok-"))
    with Server(log_path=work / "server.jsonl", log_prompts=True, vocab_size=20000) as srv:
        report = run_child(synth_overrides(srv.api_base, work / "run", size, 32, method=method, seeds=seeds))
        log = [e for e in srv.log() if e.get("status") == 200]
    seqs = [prompt_tokens(e) for e in log]
    shared = shared_prefixes(seqs)
    system = [len(_TOKEN.findall(e["messages"][0]["content"])) for e in log]
    u, n = report["usage"], report["samples"]
    list_cost = PRICE.cost(u["prompt_tokens"], u["completion_tokens"], 0)
    eff_cost = PRICE.cost(u["prompt_tokens"], u["completion_tokens"], u["cached_tokens"])
    total_prompt = sum(map(len, seqs)) or 1
    row = {
        "method": method,
        "samples": n,
        "calls_per_sample": round(u["calls"] / n, 2),
        "prompt_tok_per_sample": round(u["prompt_tokens"] / n),
        "completion_tok_per_sample": round(u["completion_tokens"] / n),
        "usd_per_1k_samples_list": round(list_cost / n * 1000, 3),
        "usd_per_1k_samples_effective": round(eff_cost / n * 1000, 3),
        "shared_prefix_share": round(sum(shared) / total_prompt, 3),
        "shared_beyond_system_share": round(
            sum(max(0, s - k) for s, k in zip(shared, system, strict=True)) / total_prompt, 3
        ),
        "cacheable_share_openai_rule": round(u["cached_tokens"] / max(1, u["prompt_tokens"]), 3),
    }
    stages: dict[str, dict] = {}
    for e, seq, s, k in zip(log, seqs, shared, system, strict=True):
        st = stages.setdefault(
            stage_of(e), {"calls": 0, "prompt": 0, "completion": 0, "cached": 0, "shared": 0, "system": 0}
        )
        st["calls"] += 1
        st["prompt"] += len(seq)
        st["completion"] += e.get("completion_tokens", 0)
        st["cached"] += e.get("cached_tokens", 0)
        st["shared"] += s
        st["system"] += k
    stage_rows = [
        {
            "method": method,
            "stage": name,
            "calls_per_sample": round(st["calls"] / n, 3),
            "prompt_tok_per_call": round(st["prompt"] / st["calls"]),
            "system_tok_per_call": round(st["system"] / st["calls"]),
            "completion_tok_per_call": round(st["completion"] / st["calls"]),
            "usd_per_1k_samples": round(PRICE.cost(st["prompt"], st["completion"], st["cached"]) / n * 1000, 3),
            "shared_prefix_share": round(st["shared"] / max(1, st["prompt"]), 3),
            "cacheable_share": round(st["cached"] / max(1, st["prompt"]), 3),
        }
        for name, st in stages.items()
    ]
    return row, stage_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument(
        "--reference-words",
        type=int,
        default=0,
        help="use 40 synthetic references with responses this long instead of the embedded set",
    )
    args = ap.parse_args()
    seeds = None
    if args.reference_words:
        seeds = make_seeds(
            Path(tempfile.mkdtemp(prefix="refed-seeds-")) / "seeds.jsonl", 40, response_words=args.reference_words
        )
    rows, stage_rows = [], []
    for method in args.methods:
        row, stages = method_row(method, args.size, seeds)
        print(row, flush=True)
        rows.append(row)
        stage_rows += stages
    print(table(rows, list(rows[0])))
    print()
    print(table(stage_rows, list(stage_rows[0])))
    name = f"tokens-ref{args.reference_words}w" if args.reference_words else "tokens"
    print(
        f"wrote {save(name, {'price_usd_per_mtok': dataclasses.asdict(PRICE), 'reference_words': args.reference_words, 'rows': rows, 'stages': stage_rows})}"
    )


if __name__ == "__main__":
    main()
