"""A command's start with a key variable of one's own naming against the usual one: `refed synthesize` of one sample.

    python bench/key_start.py [--reps 5]

One loopback server (its own process) answers every run. Each run is a fresh `refed synthesize` process making one
sample from one embedded reference (5 LM calls), with `api_key_env = "MY_VLLM_KEY"` (the usual name for a vLLM or a
gateway of one's own) or `"OPENAI_API_KEY"`, each variable holding a made-up key; the two kinds alternate, so that
whatever else the machine does falls on both alike. Figures: each run's wall and CPU time (the CPU time is less moved
by other work on a shared machine), the median of each kind and their ratios (the goal: within 10%). Until the key check stopped asking LiteLLM whose key MY_VLLM_KEY is, that question
imported LiteLLM at every start (seconds). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, Server, save

VARIABLES = ("MY_VLLM_KEY", "OPENAI_API_KEY")


def one_run(api_base: str, variable: str, run_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `refed synthesize` of one sample with the key in `variable`."""
    sets = [
        f"teacher.api_base='{api_base}'",
        f"teacher.api_key_env='{variable}'",
        f"run.dir='{run_dir}'",
        "synthesis.size=1",
        "seeds.limit=1",
        "run.progress=false",
    ]
    cmd = [sys.executable, "-m", "refed_dspy.cli", "synthesize", *[x for s in sets for x in ("--set", s)]]
    env = dict(
        os.environ,
        LITELLM_LOCAL_MODEL_COST_MAP="true",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
        MY_VLLM_KEY="sk-bench-my-vllm-0123456789abcdef",
        OPENAI_API_KEY="sk-bench-openai-0123456789abcdef",
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="runs of each kind (alternating)")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {v: [] for v in VARIABLES}
    cpus: dict[str, list[float]] = {v: [] for v in VARIABLES}
    with Server() as server, tempfile.TemporaryDirectory() as tmp:
        one_run(server.api_base, VARIABLES[1], Path(tmp) / "warm")  # the first start also fills the OS's file cache
        for rep in range(args.reps):
            order = VARIABLES if rep % 2 == 0 else VARIABLES[::-1]
            for variable in order:
                wall, cpu = one_run(server.api_base, variable, Path(tmp) / f"{variable}-{rep}")
                walls[variable].append(round(wall, 3))
                cpus[variable].append(round(cpu, 3))
                print(f"rep {rep + 1}  {variable:<15} wall {wall:6.2f} s  cpu {cpu:6.2f} s", flush=True)
    figures = {}
    for name, runs in (("wall", walls), ("cpu", cpus)):
        median = {v: statistics.median(w) for v, w in runs.items()}
        ratio = median["MY_VLLM_KEY"] / median["OPENAI_API_KEY"]
        figures[name] = {"median_s": median, "ratio": round(ratio, 3)}
        print(
            f"{name:<4} median  MY_VLLM_KEY {median['MY_VLLM_KEY']:.2f} s  OPENAI_API_KEY "
            f"{median['OPENAI_API_KEY']:.2f} s  ratio {ratio:.3f}  (goal: at most 1.10)"
        )
    path = save("key_start", {"reps": args.reps, "walls_s": walls, "cpu_s": cpus, **figures})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
