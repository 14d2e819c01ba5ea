"""Scaling: wall time against the run's size and against the number of references.

    python bench/scaling.py [--sizes 1000 10000] [--refs 100 1000 4000] [--concurrency 256]

Size: the embedded 40 references, the latency model of harness.LATENCY. References: synthetic seed sets,
a fixed size of 4,000 samples with one instruction per feature, so that a larger seed set means more
references in use (each one costs its two feedback calls); the wall time is then read per LM call. Linear
means a constant wall time per sample (size) and per call (references), i.e. a constant efficiency.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import LATENCY, Server, efficiency, make_seeds, run_child, save, synth_overrides, table


def one(size: int, c: int, seeds: Path | None = None, extra: list[str] | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="refed-scale-"))
    with Server(log_path=work / "server.jsonl", vocab_size=20000, **LATENCY) as srv:
        r = run_child(synth_overrides(srv.api_base, work / "run", size, c, seeds=seeds, extra=extra), timeout=7200)
        log = srv.log()
    eff = efficiency(r["samples"], r["wall_s"], c, log)
    return {
        "samples": r["samples"],
        "references": r["references"],
        "feedback_collected": r["feedback_collected"],
        "calls": eff["server_calls"],
        "wall_s": r["wall_s"],
        "ms_per_sample": round(r["wall_s"] / r["samples"] * 1000, 2),
        "ms_per_call": round(r["wall_s"] / eff["server_calls"] * 1000, 3),
        "efficiency": eff["efficiency"],
        "client_cpu_ms_per_call": round(r["cpu_s"] / eff["server_calls"] * 1000, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--refs", type=int, nargs="+", default=[100, 1000, 4000])
    ap.add_argument("--ref-size", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=256)
    args = ap.parse_args()
    by_size = []
    for size in args.sizes:
        by_size.append({"size": size, **one(size, args.concurrency)})
        print(by_size[-1], flush=True)
    by_refs = []
    tmp = Path(tempfile.mkdtemp(prefix="refed-seeds-"))
    for n in args.refs:
        seeds = make_seeds(tmp / f"seeds-{n}.jsonl", n)
        by_refs.append(
            {
                "seed_references": n,
                **one(args.ref_size, args.concurrency, seeds, ["synthesis.instructions_per_feature=1"]),
            }
        )
        print(by_refs[-1], flush=True)
    print(table(by_size, list(by_size[0])))
    print()
    print(table(by_refs, list(by_refs[0])))
    print(
        f"wrote {save('scaling', {'latency_model': LATENCY, 'concurrency': args.concurrency, 'by_size': by_size, 'by_references': by_refs})}"
    )


if __name__ == "__main__":
    main()
