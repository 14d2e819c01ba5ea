"""Client CPU while the engine waits: a server hanging 15% of requests past `teacher.timeout = 5`, against the same run
without faults (issue 51: the client spun through each timeout, 19.4 CPU-seconds for 20 samples against 1.2), and the
progress bar's redraws on a terminal.

    python bench/waiting.py [--size 20] [--concurrency 4 16] [--repeat 1]

Each run is a child process (bench/child.py); its CPU is its own (user + system) over the run, imports excluded.
A hanging request is held by the server for 6 s and dropped; the client gives up at 5 s and retries the work. Rows
with a cost budget (`synthesis.max_cost_usd`) add the call boundary's wait for room (the worst case of a call cut
off is kept against the budget). The terminal row runs `refed synthesize` on a pseudo-terminal (120 columns) and
counts the bar's redraws (a carriage return not ending a line) over the command's wall time.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from harness import LATENCY, ROOT, Server, run_child, save, synth_overrides, table

HANG = {"rate_hang": 0.15, "hang_s": 6.0}


def one_run(size: int, concurrency: int, faults: bool, budget: float | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="refed-wait-"))
    extra = ["teacher.timeout=5"] + ([f"synthesis.max_cost_usd={budget}"] if budget else [])
    with Server(seed=1, **LATENCY, **(HANG if faults else {})) as srv:
        r = run_child(synth_overrides(srv.api_base, work / "run", size, concurrency, extra=extra))
    return {
        "samples": r["samples"],
        "cpu_s": r["cpu_s"],
        "wall_s": r["wall_total_s"],
        "cut_off": r["usage"]["interrupted_calls"],
        "calls": r["usage"]["calls"],
    }


def pair(size: int, concurrency: int, budget: float | None, repeat: int) -> dict:
    """CPU per sample with faults and without, the median of `repeat` runs each."""
    runs = {
        name: [one_run(size, concurrency, faults, budget) for _ in range(repeat)]
        for name, faults in (("faults", True), ("clean", False))
    }
    per = {name: statistics.median(r["cpu_s"] / max(1, r["samples"]) for r in rows) for name, rows in runs.items()}
    last = {name: rows[-1] for name, rows in runs.items()}
    return {
        "concurrency": concurrency,
        "max_cost_usd": budget or "",
        "cpu_ms_per_sample_faults": round(per["faults"] * 1000, 1),
        "cpu_ms_per_sample_clean": round(per["clean"] * 1000, 1),
        "ratio": round(per["faults"] / per["clean"], 2),
        "cut_off_calls": last["faults"]["cut_off"],
        "wall_s_faults": last["faults"]["wall_s"],
        "wall_s_clean": last["clean"]["wall_s"],
    }


def on_a_terminal(size: int, concurrency: int) -> dict:
    """`refed synthesize` with its bar on a pseudo-terminal, against the hanging server: redraws and bytes."""
    work = Path(tempfile.mkdtemp(prefix="refed-wait-tty-"))
    with Server(seed=1, **LATENCY, **HANG) as srv:
        sets = synth_overrides(srv.api_base, work / "run", size, concurrency, extra=["teacher.timeout=5"])
        sets = [s for s in sets if s != "run.progress=false"] + ["run.progress=true"]
        main, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="true", PYTHONPATH=str(ROOT))
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "refed_dspy.cli", "synthesize", *(x for s in sets for x in ("--set", s))],
            stdin=subprocess.DEVNULL,
            stdout=child,
            stderr=child,
            env=env,
        )
        os.close(child)
        out = bytearray()
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(main)
        proc.wait()
        wall = time.monotonic() - t0
    redraws = len(re.findall(rb"\r(?!\n)", bytes(out)))
    return {
        "concurrency": concurrency,
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "redraws": redraws,
        "redraws_per_s": round(redraws / wall, 2),
        "bytes": len(out),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    rows = []
    for concurrency in args.concurrency:
        for budget in (None, 0.03):
            row = pair(args.size, concurrency, budget, args.repeat)
            print(row, flush=True)
            rows.append(row)
    tty = on_a_terminal(args.size, args.concurrency[0])
    print(
        table(
            rows,
            [
                "concurrency",
                "max_cost_usd",
                "cpu_ms_per_sample_faults",
                "cpu_ms_per_sample_clean",
                "ratio",
                "cut_off_calls",
                "wall_s_faults",
                "wall_s_clean",
            ],
        )
    )
    print(f"\non a terminal: {tty}")
    print(f"wrote {save('waiting', {'size': args.size, 'rows': rows, 'terminal': tty})}")


if __name__ == "__main__":
    main()
