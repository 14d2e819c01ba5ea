"""Run every method on the same references and size against the loopback server, judge each run, and print
the comparison table (run by hand; figures are the loopback server's token counts at gpt-4o-mini prices).

    python bench/compare_methods.py --size 200 --concurrency 32 --latency 0.05
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loopback_server import LoopbackServer, ServerConfig  # noqa: E402

from refed_dspy.config import load_config  # noqa: E402
from refed_dspy.experiments.compare import QUALITY_COLUMNS, compare, markdown_table  # noqa: E402
from refed_dspy.methods import METHODS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--no-judge", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="refed-compare-"))
    cfg = ServerConfig(latency_s=args.latency, jitter=0.5, log_path=str(work / "server.jsonl"))
    with LoopbackServer(cfg) as srv:
        base = srv.api_base
        config = load_config(
            None,
            [
                f"teacher.api_base='{base}'",
                "teacher.api_key_env=''",
                f"judge.api_base='{base}'",
                "judge.api_key_env=''",
                f"run.dir='{work / 'cmp'}'",
                f"synthesis.size={args.size}",
                f"synthesis.concurrency={args.concurrency}",
                f"judging.concurrency={args.concurrency}",
                "run.progress=false",
            ],
        )
        t0 = time.perf_counter()
        result = compare(config, list(METHODS), judge=not args.no_judge)
        wall = time.perf_counter() - t0
    print(markdown_table(result["rows"], QUALITY_COLUMNS))
    print(
        f"{len(METHODS)} methods x {args.size} samples, concurrency {args.concurrency}, latency {args.latency}s +-50%: "
        f"{wall:.1f}s wall (judge included: {not args.no_judge})"
    )
    print("(judge scores and win rates from the loopback server are random: they test the plumbing, not quality)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
