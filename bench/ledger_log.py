"""What the write-ahead log of calls costs: the same synthesis with and without it, interleaved, in one run.

    python bench/ledger_log.py [--size 1000] [--concurrency 64] [--rounds 3]

Each request is written to the run's ledger.jsonl before it is sent and settled after (refed_dspy.ledger.call_log);
the "without" runs turn those writes into no-ops in the child process (REFED_BENCH_NO_CALL_LOG). A zero-latency
loopback server in its own process; CPU is the client's (user + system). Prints CPU seconds and wall time per 1,000
samples for each run and the ratio of the medians (with / without); compare ratios, not seconds, on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from harness import Server, run_child, save, synth_overrides, table


def one(srv: Server, work: Path, name: str, size: int, concurrency: int, log: bool) -> dict:
    if log:
        os.environ.pop("REFED_BENCH_NO_CALL_LOG", None)
    else:
        os.environ["REFED_BENCH_NO_CALL_LOG"] = "1"
    report = run_child(synth_overrides(srv.api_base, work / name, size, concurrency))
    per_k = 1000.0 / report["samples"]
    log_file = work / name / "ledger.jsonl"
    return {
        "run": name,
        "log": log,
        "samples": report["samples"],
        "calls": report["usage"]["calls"],
        "cpu_s_per_1k": round(report["cpu_s"] * per_k, 2),
        "wall_s_per_1k": round(report["wall_total_s"] * per_k, 2),
        "log_bytes": log_file.stat().st_size if log_file.exists() else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="refed-wal-"))
    rows = []
    with Server(vocab_size=20000) as srv:
        for r in range(args.rounds):
            for log in (True, False) if r % 2 == 0 else (False, True):
                rows.append(one(srv, work, f"r{r}-{'log' if log else 'nolog'}", args.size, args.concurrency, log))
    print(table(rows, ["run", "log", "samples", "calls", "cpu_s_per_1k", "wall_s_per_1k", "log_bytes"]))
    for key in ("cpu_s_per_1k", "wall_s_per_1k"):
        with_log = statistics.median(r[key] for r in rows if r["log"])
        without = statistics.median(r[key] for r in rows if not r["log"])
        print(f"{key}: with the log {with_log}, without {without}, ratio {with_log / without:.3f}")
    save("ledger_log", {"size": args.size, "concurrency": args.concurrency, "rows": rows})


if __name__ == "__main__":
    main()
