"""Shared pieces of the benchmarks: the loopback server in its own process, synthetic seed sets,
one synthesis run per child process (so CPU seconds and peak RSS are that run's own), and output.

Benchmarks measure and print; they never assert timings. Each writes bench/results/<name>.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
SERVER = ROOT / "tests" / "loopback_server.py"

# A latency model like a fast hosted model: 0.3 s to the first token, then ~170 output tokens/s (the
# loopback replies run 20-400 tokens), each call's delay scaled by a uniform +-50% jitter.
LATENCY = {"latency_s": 0.3, "latency_per_token_s": 0.006, "jitter": 0.5}


class Server:
    """`tests/loopback_server.py` in a child process (its CPU does not count as the client's)."""

    def __init__(self, log_path: Path | None = None, **cfg: Any):
        if log_path is not None:
            cfg["log_path"] = str(log_path)
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--config", json.dumps(cfg)], stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"loopback server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.api_base = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.api_base}/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def log(self) -> list[dict]:
        if self.log_path is None or not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_TOPICS = [
    "a community garden",
    "a small bakery",
    "a rural clinic",
    "a city bus network",
    "a chess club",
    "a school library",
    "a bicycle repair shop",
    "a wildlife survey",
    "a food bank",
    "a startup's payroll",
    "a museum's archive",
    "a marathon training plan",
    "a home solar setup",
    "a volunteer fire station",
]
_ASKS = [
    "Explain how to plan the first month of",
    "Write a short guide for newcomers to",
    "Compare two ways to fund",
    "Draft a checklist for auditing",
    "Describe the main risks in running",
    "Outline a weekly schedule for",
    "Summarize what a new manager should learn about",
]


def make_seeds(path: Path, n: int, seed: int = 0, response_words: int = 180) -> Path:
    """Write `n` synthetic reference pairs (our own template text) as JSONL; returns the path."""
    rng = random.Random(seed)
    words = [
        "plan",
        "budget",
        "people",
        "schedule",
        "risk",
        "measure",
        "review",
        "improve",
        "document",
        "share",
        "team",
        "goal",
        "cost",
        "time",
        "quality",
        "safety",
        "training",
        "feedback",
        "weekly",
        "monthly",
        "simple",
        "clear",
        "first",
        "next",
        "then",
        "finally",
        "because",
    ]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            instruction = f"{rng.choice(_ASKS)} {rng.choice(_TOPICS)} (case {i})."
            body = " ".join(rng.choice(words) for _ in range(response_words))
            fh.write(json.dumps({"instruction": instruction, "input": "", "output": body.capitalize() + "."}) + "\n")
    return path


def run_child(
    overrides: list[str],
    *,
    profile: bool = False,
    mode: str = "synthesize",
    timeout: float = 3600,
    time_recording: bool = False,
) -> dict[str, Any]:
    """Run one synthesis (or a plain-client replay) in a fresh Python process; returns its JSON report
    (`time_recording`: with what the run's Watch records timed, under `recording`)."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="true", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(BENCH / "child.py"), "--mode", mode, *(["--profile"] if profile else [])]
    cmd += ["--time-recording"] if time_recording else []
    for ov in overrides:
        cmd += ["--set", ov]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synthesize_cli(args: list[str]) -> dict:
    """`refed synthesize` in a child process with each of `args` as a --set: its summary.json, with the wall time
    the command took (`bench_wall_s`). RuntimeError with the end of its stderr when it fails."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="true", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "refed_dspy.cli", "synthesize"]
    for a in args:
        cmd += ["--set", a]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    run_dir = Path(next(a for a in args if a.startswith("run.dir=")).split("=", 1)[1].strip("'"))
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["bench_wall_s"] = round(time.monotonic() - t0, 1)
    return summary


def synth_overrides(
    api_base: str,
    run_dir: Path,
    size: int,
    concurrency: int,
    seeds: Path | None = None,
    method: str = "refed",
    extra: list[str] | None = None,
) -> list[str]:
    """`--set` overrides for a run against the loopback server."""
    ov = [
        f"teacher.api_base='{api_base}'",
        "teacher.api_key_env=''",
        f"run.dir='{run_dir}'",
        f"synthesis.size={size}",
        f"synthesis.concurrency={concurrency}",
        f"synthesis.method='{method}'",
        "run.progress=false",
        "teacher.timeout=120",
    ]
    if seeds is not None:
        ov += [f"seeds.source='{seeds}'", "seeds.format='alpaca'"]
    return ov + list(extra or [])


def ok_calls(log: list[dict]) -> list[dict]:
    """The server's answered (HTTP 200) requests."""
    return [e for e in log if e.get("status") == 200]


def efficiency(samples: int, wall_s: float, concurrency: int, log: list[dict]) -> dict[str, float]:
    """samples/s over the ideal concurrency / (mean server latency per call x calls per sample)."""
    calls = len(log)
    mean_latency = sum(e.get("service_s", 0.0) for e in log) / max(1, calls)
    per_sample = calls / max(1, samples)
    ideal = concurrency / (mean_latency * per_sample) if mean_latency > 0 else float("inf")
    achieved = samples / wall_s
    return {
        "samples_per_s": round(achieved, 2),
        "ideal_samples_per_s": round(ideal, 2),
        "efficiency": round(achieved / ideal, 3),
        "mean_latency_s": round(mean_latency, 4),
        "calls_per_sample": round(per_sample, 3),
        "server_calls": calls,
    }


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    import dspy

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem,
        "python": platform.python_version(),
        "dspy": dspy.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }


def table(rows: list[dict], cols: list[str]) -> str:
    """A Markdown table of `rows` restricted to `cols`."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (with the machine) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path
