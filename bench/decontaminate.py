"""Decontamination at scale: 100,000 samples against 5,000 benchmark prompts, time and peak memory.

    python bench/decontaminate.py [--samples 100000] [--prompts 5000] [--vocab 20000] [--keep DIR]

Texts are Zipf-distributed over --vocab words like the loopback server's (bench/dedup.py's vocabulary): prompts of
10-80 words (AlpacaEval's run 5-150, Arena-Hard's longer), instructions of 10-40 words, responses of 150 words. One
sample in a hundred copies a prompt, one in a hundred copies it with its first and last words changed, so the
answer is known: `missed` counts the planted copies the rule must find (the verbatim ones, and the edited copies of
prompts of 11 words or more, which keep at least half of their 8-grams) and did not, `others` the samples removed
that are no planted copy. Each measurement runs in a fresh process, so its wall
time and peak RSS (`ru_maxrss`) are its own:

- `decontaminate()`: the filter on samples already in memory (read the benchmark file, build the index, check
  every sample), and the resident memory it adds to that of the samples (`added_mib`: the index and the reasons);
- `refed filter`: the command a user runs, `refed filter RUN --out DIR --apply decontaminate` on a run dir of that
  many samples (reading samples.jsonl, writing the kept and the removed ones); and, for what the command costs
  without a benchmark, the same with a filter that keeps every sample (`length:min_words=1`).

Both with instructions only (the default) and with `check_responses = true`. Prints a table and writes
bench/results/decontaminate.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, save, table

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from loopback_server import _zipf_vocab  # noqa: E402


def zipf_text(rng: random.Random, words: list[str], cum: list[float], n: int) -> str:
    return " ".join(rng.choices(words, cum_weights=cum, k=n)).capitalize() + "."


def make_data(where: Path, samples: int, prompts: int, vocab: int, seed: int = 0) -> dict[str, int]:
    """Write where/bench.jsonl (the prompts) and where/run/{samples.jsonl,config.toml}; returns the planted copies."""
    rng = random.Random(seed)
    words, cum = _zipf_vocab(vocab)
    bench = [zipf_text(rng, words, cum, rng.randint(10, 80)) for _ in range(prompts)]
    (where / "bench.jsonl").write_text("".join(json.dumps({"instruction": p}) + "\n" for p in bench))
    run = where / "run"
    run.mkdir()
    planted = {"verbatim": 0, "edited": 0, "edited_short": 0}
    expected = []  # the ids the rule must find: the verbatim copies, and the edited copies of prompts of 11+ words
    with open(run / "samples.jsonl", "w") as fh:
        for i in range(samples):
            draw = rng.random()
            if draw < 0.01:
                instruction = rng.choice(bench)
                planted["verbatim"] += 1
                expected.append(f"s{i}")
            elif draw < 0.02:
                ws = rng.choice(bench).rstrip(".").split()
                ws[0], ws[-1] = "Kindly", "tomorrow"
                instruction = " ".join(ws) + "."
                # L words have L-7 8-grams, 2 of them broken: (L-9)/(L-7) >= 0.5 from 11 words on
                if len(ws) >= 11:
                    planted["edited"] += 1
                    expected.append(f"s{i}")
                else:
                    planted["edited_short"] += 1
            else:
                instruction = zipf_text(rng, words, cum, rng.randint(10, 40))
            response = zipf_text(rng, words, cum, 150)
            record = {
                "instruction": instruction,
                "response": response,
                "improved_response": response,
                "meta": {"id": f"s{i}", "reference_id": f"r{i % 1000}", "feature": "subject_areas"},
            }
            fh.write(json.dumps(record) + "\n")
    (where / "expected.json").write_text(json.dumps(expected))
    (run / "config.toml").write_text(f'[quality]\nbenchmarks = ["{where / "bench.jsonl"}"]\n')  # refed filter reads it
    return planted


def child_function(where: Path, responses: bool) -> None:
    """In a fresh process: the filter on samples in memory. Prints one JSON line."""
    from refed_dspy.filters import make_filter
    from refed_dspy.store.jsonl import read_jsonl

    samples = list(read_jsonl(where / "run" / "samples.jsonl"))
    spec = make_filter("decontaminate", benchmarks=[str(where / "bench.jsonl")], check_responses=responses)
    before = rss_mib()
    t0 = time.perf_counter()
    result = spec.apply(samples, {})  # reads the benchmark file, builds the index, checks every sample
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    removed = [s["meta"]["id"] for s, _ in result.removed]
    # what the check holds once done (the index, the reasons), beside the samples: the peak is the reading's
    figures = {"seconds": round(seconds, 2), "peak_rss_mib": round(peak), "added_mib": round(rss_mib() - before)}
    print(json.dumps({**figures, **found(where, removed)}))


def rss_mib() -> float:
    """This process's resident memory now (not its peak)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def found(where: Path, removed: list[str]) -> dict:
    """How the removed ids compare with the planted ones the rule must find."""
    if not removed:
        return {"removed": 0}
    expected = set(json.loads((where / "expected.json").read_text()))
    return {"removed": len(removed), "missed": len(expected - set(removed)), "others": len(set(removed) - expected)}


def child_command(where: Path, apply: str) -> None:
    """In a fresh process: `refed filter --apply APPLY` as its only child, whose peak RSS is then this process's
    RUSAGE_CHILDREN peak. Prints one JSON line."""
    out = where / "clean"
    cmd = [sys.executable, "-m", "refed_dspy.cli", "filter", str(where / "run"), "--out", str(out), "--overwrite"]
    cmd += ["--apply", apply]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"refed filter exited {proc.returncode}: {proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    removed = [json.loads(line)["item_id"] for line in (out / "rejects.jsonl").read_text().splitlines()]
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mib": round(peak), **found(where, removed)}))


def measure(args: list[str]) -> dict:
    """One measurement in a fresh process: this script with `args`."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = [  # (what, texts checked, this script's arguments)
    ("refed filter, length (no benchmark)", "-", ["--command", "{where}", "--apply", "length:min_words=1"]),
    ("refed filter, decontaminate", "instruction", ["--command", "{where}", "--apply", "decontaminate"]),
    (
        "refed filter, decontaminate",
        "instruction + response",
        ["--command", "{where}", "--apply", "decontaminate:check_responses=true"],
    ),
    ("decontaminate() on samples in memory", "instruction", ["--function", "{where}"]),
    ("decontaminate() on samples in memory", "instruction + response", ["--function", "{where}", "--responses"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--prompts", type=int, default=5_000)
    ap.add_argument("--vocab", type=int, default=20_000)
    ap.add_argument("--keep", type=Path, help="write the data here (default: a temporary directory)")
    ap.add_argument("--function", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--command", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--responses", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--apply", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.function:
        child_function(args.function, args.responses)
        return
    if args.command:
        child_command(args.command, args.apply)
        return
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        planted = make_data(where, args.samples, args.prompts, args.vocab)
        print(
            f"data: {args.samples:,} samples ({planted}), {args.prompts:,} prompts in {time.perf_counter() - t0:.1f} s"
        )
        rows = []
        for what, texts, case in CASES:
            row = {"what": what, "texts": texts, **measure([a.format(where=where) for a in case])}
            rows.append(row)
            print(row, flush=True)
    print(table(rows, ["what", "texts", "seconds", "peak_rss_mib", "added_mib", "removed", "missed", "others"]))
    payload = {"args": {k: args.__dict__[k] for k in ("samples", "prompts", "vocab")}, "planted": planted, "rows": rows}
    print(f"wrote {save('decontaminate', payload)}")


if __name__ == "__main__":
    main()
