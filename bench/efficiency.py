"""Throughput efficiency: samples/s achieved over the ideal for the server's latency and the concurrency.

    python bench/efficiency.py [--levels 16 64 256] [--latencies 40]

ideal = concurrency / (mean server latency per call x LM calls per sample), over the whole run, the
feedback stage included. The server runs in its own process with a jittered latency model; each level
synthesizes enough samples to span about `--latencies` mean call latencies of wall time, so the
unavoidable start (feedback -> unit -> sample) and drain (the last samples' two calls) weigh as they would
in a run of that length.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from harness import LATENCY, Server, efficiency, run_child, save, synth_overrides, table

CALLS_PER_SAMPLE = 2.2  # refed with 40 references and 10 instructions per feature (measured)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--latencies", type=float, default=40.0, help="ideal wall time, in mean call latencies")
    ap.add_argument("--mean-latency", type=float, default=1.6, help="expected mean latency of the model below (s)")
    args = ap.parse_args()
    rows = []
    for c in args.levels:
        size = int(math.ceil(args.latencies * c / CALLS_PER_SAMPLE / 100.0) * 100)
        work = Path(tempfile.mkdtemp(prefix="refed-eff-"))
        with Server(log_path=work / "server.jsonl", vocab_size=20000, **LATENCY) as srv:
            report = run_child(synth_overrides(srv.api_base, work / "run", size, c))
            log = srv.log()
            peak = srv.stats()["max_in_flight"]
        row = {
            "concurrency": c,
            "samples": report["samples"],
            "wall_s": report["wall_s"],
            **efficiency(report["samples"], report["wall_s"], c, log),
            "server_max_in_flight": peak,
            "client_cpu_s": report["cpu_s"],
            "retries": report["retries"]["total"],
        }
        print(row, flush=True)
        rows.append(row)
    cols = [
        "concurrency",
        "samples",
        "wall_s",
        "calls_per_sample",
        "mean_latency_s",
        "samples_per_s",
        "ideal_samples_per_s",
        "efficiency",
        "server_max_in_flight",
        "client_cpu_s",
    ]
    print(table(rows, cols))
    path = save("efficiency", {"latency_model": LATENCY, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
