"""Measure one synthesis run against the loopback server and print its figures (run by hand).

    python bench/run_1000.py --size 1000 --concurrency 64 --latency 0.2 --faults

Prints samples/s, LM calls per sample, prompt and completion tokens per sample, and rejects by reason.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loopback_server import LoopbackServer, ServerConfig, read_log  # noqa: E402

from refed_dspy.config import load_config  # noqa: E402
from refed_dspy.synthesis.api import synthesize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.0, help="base seconds per call")
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--faults", action="store_true", help="inject 2%% each of truncation, malformed, refusal, 500")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="refed-bench-"))
    faults = dict(sticky_length=0.02, sticky_malformed=0.02, sticky_refusal=0.02, rate_500=0.02) if args.faults else {}
    cfg = ServerConfig(latency_s=args.latency, jitter=args.jitter, log_path=str(work / "server.jsonl"), **faults)
    with LoopbackServer(cfg) as srv:
        config = load_config(
            None,
            [
                f"teacher.api_base='{srv.api_base}'",
                "teacher.api_key_env=''",
                f"run.dir='{work / 'run'}'",
                f"synthesis.size={args.size}",
                f"synthesis.concurrency={args.concurrency}",
                "run.progress=false",
            ],
        )
        t0 = time.perf_counter()
        s = synthesize(config)
        wall = time.perf_counter() - t0
        requests = len(read_log(cfg.log_path))
    u = s["usage"]
    figures = {
        "size": args.size,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "faults": args.faults,
        "samples": s["samples"],
        "wall_s": round(wall, 2),
        "samples_per_s": round(s["samples"] / wall, 2),
        "server_requests": requests,
        "paid_calls": u["calls"],
        "calls_per_sample": round(u["calls"] / s["samples"], 3),
        "prompt_tokens_per_sample": round(u["prompt_tokens"] / s["samples"], 1),
        "completion_tokens_per_sample": round(u["completion_tokens"] / s["samples"], 1),
        "cost_usd_at_gpt4o_mini": round(s["cost_usd"], 4),
        "rejects": s["rejects"],
        "calls_by_stage": {k: v["calls"] for k, v in u["by_stage"].items()},
    }
    print(json.dumps(figures, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
