"""Memory: the client's peak RSS at 1,000, 10,000 and 50,000 samples (records stream to disk; nothing
but the dedup index grows with the run).

    python bench/memory.py [--sizes 1000 10000 50000] [--concurrency 64]

Zero-latency server in its own process; each size runs in a fresh client process, so its peak RSS
(ru_maxrss) is that run's own.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import Server, run_child, save, synth_overrides, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    rows = []
    for size in args.sizes:
        work = Path(tempfile.mkdtemp(prefix="refed-mem-"))
        with Server(vocab_size=20000) as srv:
            r = run_child(synth_overrides(srv.api_base, work / "run", size, args.concurrency), timeout=7200)
        rows.append(
            {
                "size": size,
                "samples": r["samples"],
                "peak_rss_mib": r["peak_rss_mib"],
                "wall_s": r["wall_s"],
                "samples_per_s": round(r["samples"] / r["wall_s"], 1),
                "client_cpu_s": r["cpu_s"],
                "cpu_ms_per_sample": round(r["cpu_s"] / r["samples"] * 1000, 2),
            }
        )
        print(rows[-1], flush=True)
    print(table(rows, list(rows[0])))
    print(f"wrote {save('memory', {'concurrency': args.concurrency, 'rows': rows})}")


if __name__ == "__main__":
    main()
