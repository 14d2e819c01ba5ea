"""Scale on Ray: samples/s with 1, 2 and 4 workers at one per-worker concurrency, the Ray path's overhead
against the local engine, and the driver's memory at a large size.

    python bench/ray_scale.py [--workers 1 2 4] [--concurrency 16] [--latencies 40] [--memory-size 100000]

One local Ray (`ray.init(num_cpus=8)`: logical CPUs, one per worker actor) is started here and every run joins
it by address, so each run pays only its own workers' start. The loopback server runs in its own process with
the jittered latency model of `harness.LATENCY`; it is not the bottleneck (it answers each call after its
latency, however many are in flight). Each run synthesizes enough samples to span about `--latencies` mean call
latencies at its concurrency. Two rates are reported: over the whole wall time of the run (the workers' start
included) and over the window from the server's first call to its last (the steady rate a long run sees).
`--cache-server` runs each worker count twice, alternated: the workers opening the run's cache themselves, and
reaching it through the cache server as workers on other nodes do (`ray.cache_server = "always"`).
`--memory-size` runs one more synthesis against a zero-latency server and reports the driver's peak RSS and
the time from the last call to the run's end (the final merge and summary); `--references N` makes that run one
over N synthetic references, one sample each (`--memory-only --references 100000`: the driver at 100K references).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from harness import LATENCY, Server, make_seeds, run_child, save, synth_overrides, table

CALLS_PER_SAMPLE = 2.2  # refed with 40 references and 10 instructions per feature (measured)


def _window_rate(samples: int, log: list[dict]) -> float:
    times = [e["t"] for e in log if "t" in e]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    return round(samples / span, 2) if span > 0 else 0.0


def _run(
    address: str | None, workers: int, concurrency: int, size: int, server_cfg: dict, extra: list[str] | None = None
) -> dict:
    work = Path(tempfile.mkdtemp(prefix="refed-ray-"))
    ray = [] if address is None else ["ray.enabled=true", f"ray.address='{address}'", f"ray.workers={workers}"]
    ray += extra or []
    with Server(log_path=work / "server.jsonl", **server_cfg) as srv:
        t0 = time.time()
        report = run_child(synth_overrides(srv.api_base, work / "run", size, concurrency, extra=ray), timeout=14400)
        log = srv.log()
    last_call = max((e["t"] for e in log if "t" in e), default=t0)
    calls = report["usage"]["calls"] if report.get("usage") else None
    return {
        "path": "local" if address is None else "ray",
        "workers": workers if address else 1,
        "concurrency_per_worker": concurrency,
        "samples": report["samples"],
        "wall_s": report["wall_total_s"],
        "samples_per_s": round(report["samples"] / report["wall_total_s"], 2),
        "steady_samples_per_s": _window_rate(report["samples"], log),
        "ledger_calls": calls,
        "server_calls": len(log),
        "driver_peak_rss_mib": report["peak_rss_mib"],
        "driver_cpu_s": report["cpu_s"],
        "after_last_call_s": round(report["ended_at"] - last_call, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--concurrency", type=int, default=16, help="calls in flight per worker")
    ap.add_argument("--latencies", type=float, default=40.0, help="ideal wall time, in mean call latencies")
    ap.add_argument("--memory-size", type=int, default=100000, help="0 skips the memory run")
    ap.add_argument("--memory-only", action="store_true", help="only the memory run (writes ray_memory.json)")
    ap.add_argument("--cache-server", action="store_true", help="each worker count also through the cache server")
    ap.add_argument(
        "--references",
        type=int,
        default=0,
        help="the memory run on N synthetic references, one sample each (instructions_per_feature=1, size N)",
    )
    args = ap.parse_args()

    import ray

    ray.init(num_cpus=8, include_dashboard=False, logging_level="ERROR")
    address = ray.get_runtime_context().gcs_address
    rows = []
    try:
        size = int(math.ceil(args.latencies * args.concurrency / CALLS_PER_SAMPLE / 100.0) * 100)
        if not args.memory_only:
            rows.append(_run(None, 1, args.concurrency, size, {"vocab_size": 20000, **LATENCY}))
            print(rows[-1], flush=True)
        for w in [] if args.memory_only else args.workers:
            for cache in ["auto", "always"] if args.cache_server else ["auto"]:
                extra = [f"ray.cache_server='{cache}'"]
                rows.append(_run(address, w, args.concurrency, size * w, {"vocab_size": 20000, **LATENCY}, extra))
                rows[-1]["cache"] = "direct" if cache == "auto" else "server"
                print(rows[-1], flush=True)
        if args.references:
            seeds = make_seeds(Path(tempfile.mkdtemp(prefix="refed-seeds-")) / "seeds.jsonl", args.references)
            extra = [f"seeds.source='{seeds}'", "seeds.format='alpaca'", "synthesis.instructions_per_feature=1"]
            rows.append({"references": args.references, **_run(address, 2, 64, args.references, {}, extra)})
            print(rows[-1], flush=True)
        elif args.memory_size:
            rows.append(_run(address, 2, 64, args.memory_size, {"vocab_size": 20000}))
            print(rows[-1], flush=True)
    finally:
        ray.shutdown()
    base = next((r for r in rows if r["path"] == "ray" and r["workers"] == 1 and r.get("cache") != "server"), None)
    local = rows[0]
    for r in [] if args.memory_only or args.references else rows:
        if base and r["path"] == "ray" and r["concurrency_per_worker"] == args.concurrency:
            r["speedup_vs_1_worker"] = round(r["steady_samples_per_s"] / base["steady_samples_per_s"], 2)
    if base:
        base["vs_local"] = round(base["steady_samples_per_s"] / local["steady_samples_per_s"], 3)
    cols = ["references"] * bool(args.references) + [
        "path",
        "workers",
        "cache",
        "concurrency_per_worker",
        "samples",
        "wall_s",
        "samples_per_s",
        "steady_samples_per_s",
        "speedup_vs_1_worker",
        "vs_local",
        "ledger_calls",
        "server_calls",
        "driver_peak_rss_mib",
        "driver_cpu_s",
        "after_last_call_s",
    ]
    print(table(rows, cols))
    name = "ray_references" if args.references else "ray_memory" if args.memory_only else "ray_scale"
    latency = None if args.memory_only or args.references else LATENCY  # the memory runs answer at once
    print(f"wrote {save(name, {'latency_model': latency, 'rows': rows})}")


if __name__ == "__main__":
    main()
