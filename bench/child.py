"""One measured run in its own process (started by harness.run_child); prints one JSON line.

--mode synthesize   refed synthesis with `--set` overrides (the same keys as `refed synthesize --set`)
--mode plain        the same requests, replayed with the plain `openai` async client (reads the
                    server's prompt log given by --set log=PATH, api_base=URL, concurrency=N)
--profile           yappi CPU profile of every thread, self time bucketed by what the code does
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

# Self CPU time of a function counts towards the first bucket whose path fragment its file contains (refed's own
# modules not named here fall to the catch-all "dspy/" of the formatting bucket, as its adapters and programs do).
BUCKETS = [
    (
        "writing records",
        ("refed_dspy/store/", "refed_dspy/ledger/usage.py", "refed_dspy/ledger/call_log.py", "json/encoder"),
    ),
    (
        "scheduling (runner, asyncio, threads)",
        (
            "refed_dspy/engine/",
            "refed_dspy/launch/",
            "refed_dspy/ledger/",
            "refed_dspy/runtime/",
            "refed_dspy/clients/boundary.py",
            "refed_dspy/clients/calls.py",
            "refed_dspy/clients/lm_routing.py",
            "refed_dspy/clients/tries.py",
            "asyncio/",
            "selectors.py",
            "concurrent/futures",
            "threading.py",
            "contextvars",
            "queue.py",
            "heapq",
            "select.epoll",
            "_queue.SimpleQueue",
        ),
    ),
    ("DSPy disk cache", ("dspy/clients/cache.py", "diskcache", "sqlite3", "pickle", "cloudpickle", "hashlib")),
    (
        "HTTP client",
        (
            "dspy/clients/_lm15",
            "lm15",
            "httpx",
            "httpcore",
            "h11",
            "anyio",
            "openai/",
            "ssl.py",
            "socket.py",
            "_socket.socket",
            "http/client",
            "urllib",
            "aiohttp",
            "dspy/clients/engines",
            "refed_dspy/clients/lm.py",  # the engines and transports under a built LM (an endpoint spread, cache marks)
            "refed_dspy/clients/destination.py",  # every request's key and host, checked as it leaves
            "refed_dspy/clients/prompt_cache.py",
        ),
    ),
    (
        "prompt formatting and parsing (DSPy)",
        (
            "dspy/",
            "pydantic",
            "json_repair",
            "json/",
            "re/",
            "signatures/",
            "programs/",
            "typing.py",
            "inspect.py",
            "copy.py",
        ),
    ),
]


def bucket_of(module: str, name: str = "") -> str:
    path = module.replace("\\", "/") + " " + name  # builtins are named by their type: sqlite3.Connection
    for name, fragments in BUCKETS:
        if any(f in path for f in fragments):
            return name
    return "other"


def profile_split(stats) -> dict[str, float]:
    """yappi function stats -> CPU seconds per bucket (self time), plus the top functions overall."""
    split: dict[str, float] = {}
    for st in stats:
        bucket = bucket_of(st.module, st.name)
        split[bucket] = split.get(bucket, 0.0) + st.tsub
    return {k: round(v, 3) for k, v in sorted(split.items(), key=lambda kv: -kv[1])}


def top_functions(stats, n: int = 25, key: str = "tsub") -> list[str]:
    rows = sorted(stats, key=lambda s: -getattr(s, key))[:n]
    return [
        f"{s.tsub:8.3f}s self {s.ttot:8.3f}s total {s.ncall:8d}x {s.module.split('site-packages/')[-1]}:{s.lineno} {s.name}"
        for s in rows
    ]


def run_synthesize(sets: list[str]) -> dict:
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.api import synthesize

    config = load_config(None, sets)
    summary = synthesize(config)
    keep = (
        "status",
        "samples",
        "references",
        "feedback_collected",
        "units",
        "usage",
        "per_sample",
        "cost_usd",
        "wall_s",
        "samples_per_s",
        "rejects",
        "retries",
        "concurrency",
        "ray",
    )
    return {k: summary.get(k) for k in keep}


def run_plain(sets: list[str]) -> dict:
    """Replay the logged requests with AsyncOpenAI at the same concurrency; keep each reply's text."""
    import openai

    opts = dict(s.split("=", 1) for s in sets)
    entries = [json.loads(line) for line in Path(opts["log"]).read_text().splitlines() if line.strip()]
    entries = [e for e in entries if e.get("status") == 200 and e.get("messages")][: int(opts.get("limit", 10**9))]
    limit = int(opts.get("concurrency", 64))
    replies: list[str] = []

    async def main() -> None:
        import httpx

        http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit), timeout=120
        )
        client = openai.AsyncOpenAI(base_url=opts["api_base"], api_key="unused", http_client=http, max_retries=0)
        sem = asyncio.Semaphore(limit)

        async def one(e: dict) -> None:
            async with sem:
                resp = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=e["messages"], temperature=1.0, max_tokens=4096
                )
                replies.append(resp.choices[0].message.content or "")

        await asyncio.gather(*(one(e) for e in entries))
        await http.aclose()

    t0 = time.perf_counter()
    asyncio.run(main())
    return {"calls": len(entries), "wall_s": round(time.perf_counter() - t0, 3), "reply_chars": sum(map(len, replies))}


def time_recording() -> dict[str, float]:
    """Time, in the CPU of the thread that does it, what the run's Watch records (refed_dspy.engine.watch: each
    piece of work's calls, its outcome, retries, records, rejects, window moves) and its file writes once a second;
    returns the totals, filled in as the run goes."""
    from refed_dspy.engine.watch import Watch

    totals = {"record_s": 0.0, "records": 0, "write_s": 0.0, "writes": 0}

    def timed(method, seconds: str, count: str):
        def wrapper(self, *args, **kwargs):
            t0 = time.thread_time()
            try:
                return method(self, *args, **kwargs)
            finally:
                totals[seconds] += time.thread_time() - t0
                totals[count] += 1

        return wrapper

    for name in ("paid", "work_ended", "retried", "written", "rejected", "window_moved"):
        setattr(Watch, name, timed(getattr(Watch, name), "record_s", "records"))
    Watch._write = timed(Watch._write, "write_s", "writes")
    return totals


def scrape_cost(sets: list[str], repeats: int = 20) -> float:
    """Milliseconds one scrape takes: a finished run's figures (its metrics.json) as OpenTelemetry data, then as the
    Prometheus text format, as the endpoint makes them."""
    from prometheus_client import CollectorRegistry, generate_latest

    from refed_dspy.engine.figures import Series
    from refed_dspy.engine.metrics import _readers, metrics_data
    from refed_dspy.store.jsonl import read_json

    run_dir = Path(next(s for s in sets if s.startswith("run.dir=")).split("=", 1)[1].strip("'"))
    rows = read_json(run_dir / "metrics.json")["series"]
    series = [
        Series(r["name"], r["attributes"], **{k: v for k, v in r.items() if k not in ("name", "attributes")})
        for r in rows
    ]
    registry = CollectorRegistry()
    _readers()[0](lambda: metrics_data(series, 0), registry)
    t0 = time.process_time()
    for _ in range(repeats):
        generate_latest(registry)
    return round((time.process_time() - t0) / repeats * 1000, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["synthesize", "plain"], default="synthesize")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--time-recording", action="store_true", help="time what the run's Watch records (overhead.py)")
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import openai  # noqa: F401 - imports are not part of the measured CPU

    import refed_dspy.synthesis.api  # noqa: F401
    import refed_dspy.synthesis.run  # noqa: F401

    if os.environ.get("REFED_BENCH_NO_CALL_LOG"):  # bench/ledger_log.py: the same run without writing the log
        from refed_dspy.ledger.call_log import CallLog

        CallLog.sent = lambda self, *a, **k: 0
        CallLog.settled = CallLog.settled_task = CallLog.kept = lambda self, *a, **k: None

    if args.profile:
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start(builtins=True, profile_threads=True)
    recording = time_recording() if args.time_recording else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    report = run_plain(args.sets) if args.mode == "plain" else run_synthesize(args.sets)
    report["cpu_s"] = round(time.process_time() - cpu0, 3)
    if recording is not None:
        report["recording"] = {k: round(v, 6) for k, v in recording.items()}
        report["recording"]["scrape_ms"] = scrape_cost(args.sets)
    report["wall_total_s"] = round(time.perf_counter() - t0, 3)
    report["ended_at"] = time.time()  # the run's end on the wall clock (a parent compares it with its server's log)
    if args.profile:
        yappi.stop()
        stats = yappi.get_func_stats()
        report["cpu_split_s"] = profile_split(stats)
        report["top_functions"] = top_functions(stats)
        report["top_inclusive"] = top_functions(stats, 60, "ttot")
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
