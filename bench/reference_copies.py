"""Copies of the reference at scale: the report's `reference_copies` block and the `reference_copy` filter over many
samples, each measured against its own reference (instruction to instruction, final response to response).

    python bench/reference_copies.py [--samples 100000] [--words 300] [--copies 0.02]

The references are the embedded seed set (40 pairs, responses of about 320 words); each sample's instruction and
response are Zipf text drawn like the loopback server's (--words words of response), and a share of them (--copies)
copy their reference's response with a few words changed, so the copy path is exercised. Prints the wall time and
the CPU time of each pass, the microseconds a sample, the copies found, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time

from harness import ROOT, save, table

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from loopback_server import _zipf_vocab  # noqa: E402

from refed_dspy.filters import reference_copy  # noqa: E402
from refed_dspy.quality.figures import copies_block  # noqa: E402
from refed_dspy.store.seeds import read_references  # noqa: E402


def samples(n: int, words: int, copies: float, refs: list, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    vocab, cum = _zipf_vocab(20000)

    def text(k: int) -> str:
        return " ".join(rng.choices(vocab, cum_weights=cum, k=k))

    out = []
    for i in range(n):
        ref = refs[i % len(refs)]
        if rng.random() < copies:
            response = ref.response.split()
            for _ in range(3):
                response[rng.randrange(len(response))] = "changed"
            response = " ".join(response)
        else:
            response = text(rng.randint(words // 2, words * 3 // 2))
        out.append(
            {
                "instruction": text(rng.randint(8, 20)),
                "response": response,
                "improved_response": response,
                "meta": {"id": f"s{i}", "method": "refed", "reference_id": ref.id},
            }
        )
    return out


def timed(fn) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--copies", type=float, default=0.02)
    args = ap.parse_args()
    refs, _ = read_references()
    data = samples(args.samples, args.words, args.copies, refs)
    by_id = {r.id: (r.instruction, r.response) for r in refs}
    rows = []
    block, wall, cpu = timed(lambda: copies_block(data, by_id, 0.8))
    rows.append({"pass": "report block", "samples": len(data), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
    rows[-1].update(us_per_sample=round(wall / len(data) * 1e6), copies=block["over_threshold"])
    result, wall, cpu = timed(lambda: reference_copy(data, by_id))
    rows.append({"pass": "filter", "samples": len(data), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
    rows[-1].update(us_per_sample=round(wall / len(data) * 1e6), copies=len(result.removed))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(table(rows, ["pass", "samples", "wall_s", "cpu_s", "us_per_sample", "copies"]))
    print(f"peak RSS {peak} MiB (the samples held in memory included)")
    save("reference_copies", {"args": vars(args), "rows": rows, "peak_rss_mib": peak})


if __name__ == "__main__":
    main()
