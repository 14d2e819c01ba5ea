"""Client overhead: CPU seconds per 1,000 samples against a zero-latency server, by stage, and as a ratio
to the CPU of the same requests sent with the plain `openai` async client.

    python bench/overhead.py [--size 1000] [--concurrency 16 64]

The server runs in its own process and logs every request's messages; the plain client then replays
exactly those requests at the same concurrency. CPU is the client process's own (user + system).
The split comes from a second, yappi-profiled run (all threads, CPU clock): each function's self time
goes to a stage by the file it lives in (bench/child.py BUCKETS); profiling inflates every figure, so
the split is given as shares and scaled to the unprofiled total.

What watching a run costs (issue 55) comes from a third run with its Prometheus endpoint on: what the run's Watch
records (each piece of work's calls, outcomes, retries, records, rejects) timed in the CPU of the thread that does it,
per call and as a share of the client's CPU per call (at most 2%); its figures file written once a second (ms a
write, from its own thread); and one scrape of the final figures (ms, made only when something scrapes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import Server, run_child, save, synth_overrides, table


def measure(size: int, concurrency: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="refed-ovh-"))
    with Server(log_path=work / "server.jsonl", log_prompts=True, vocab_size=20000) as srv:
        ours = run_child(synth_overrides(srv.api_base, work / "run", size, concurrency))
        prof = run_child(synth_overrides(srv.api_base, work / "run-prof", size, concurrency), profile=True)
        replay = [f"log={work / 'server.jsonl'}", f"api_base={srv.api_base}", f"concurrency={concurrency}"]
        # the log now holds both runs' requests; the replay sends the first run's only
        plain = run_child(replay + [f"limit={ours['usage']['calls']}"], mode="plain")
        metrics = ["metrics.prometheus_port=0", "metrics.linger_s=0"]
        watched = run_child(
            synth_overrides(srv.api_base, work / "run-watched", size, concurrency, extra=metrics), time_recording=True
        )
    per_k = 1000.0 / ours["samples"]
    split_total = sum(prof["cpu_split_s"].values()) or 1.0
    split = {k: round(v / split_total * ours["cpu_s"] * per_k, 2) for k, v in prof["cpu_split_s"].items()}
    rec, watched_calls = watched["recording"], watched["usage"]["calls"]
    return {
        "concurrency": concurrency,
        "samples": ours["samples"],
        "calls": ours["usage"]["calls"],
        "cpu_s_per_1k_samples": round(ours["cpu_s"] * per_k, 2),
        "plain_openai_cpu_s_same_calls": round(plain["cpu_s"] * per_k, 2),
        "ratio": round(ours["cpu_s"] / plain["cpu_s"], 2),
        "cpu_ms_per_call": round(ours["cpu_s"] / ours["usage"]["calls"] * 1000, 2),
        "plain_cpu_ms_per_call": round(plain["cpu_s"] / plain["calls"] * 1000, 2),
        "split_s_per_1k_samples": split,
        "recording_us_per_call": round(rec["record_s"] / watched_calls * 1e6, 2),
        "recording_share_of_cpu_per_call": round(rec["record_s"] / watched["cpu_s"], 5),
        "watched_cpu_ms_per_call": round(watched["cpu_s"] / watched_calls * 1000, 2),
        "figures_file_ms_per_write": round(rec["write_s"] / max(1, rec["writes"]) * 1000, 3),
        "figures_file_writes": rec["writes"],
        "scrape_ms": rec["scrape_ms"],
        "top_functions_profiled": prof["top_functions"][:15],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = ap.parse_args()
    rows = []
    for c in args.concurrency:
        row = measure(args.size, c)
        print({k: v for k, v in row.items() if k != "top_functions_profiled"}, flush=True)
        rows.append(row)
    print(
        table(
            rows,
            [
                "concurrency",
                "samples",
                "calls",
                "cpu_s_per_1k_samples",
                "plain_openai_cpu_s_same_calls",
                "ratio",
                "cpu_ms_per_call",
                "plain_cpu_ms_per_call",
            ],
        )
    )
    print("\nwatching a run (its Prometheus endpoint on):")
    print(
        table(
            rows,
            [
                "concurrency",
                "watched_cpu_ms_per_call",
                "recording_us_per_call",
                "recording_share_of_cpu_per_call",
                "figures_file_ms_per_write",
                "scrape_ms",
            ],
        )
    )
    for row in rows:
        print(f"\nsplit at concurrency {row['concurrency']} (CPU s per 1,000 samples):")
        for stage, secs in row["split_s_per_1k_samples"].items():
            print(f"  {stage:42s} {secs:6.2f}")
    print(f"wrote {save('overhead', {'rows': rows})}")


if __name__ == "__main__":
    main()
