"""near_duplicates at scale: wall time, CPU time and peak RSS of the filter on synthetic samples with 150-word responses.

    python bench/near_duplicates.py [--samples 100000] [--copies 0.05] [--fields response instruction both]

Writes a run dir of `--samples` samples (a share `--copies` of them near-copies of an earlier sample: one to three words
of its response changed, under an instruction of their own), then, each in a fresh process:
- `python`: the samples read as `refed filter` reads them, then `make_filter("near_duplicates", field=F).apply(...)`
  timed alone; its peak RSS is the process's (reading the file included), and `filter_adds_mib` the filter's own
  peak over the samples loaded (Linux: the peak is reset through /proc/self/clear_refs before the filter, and the
  process's peak is the larger of the two);
- `cli`: `refed filter RUN --out DIR --apply near_duplicates:field=F`, the whole command (start, read, filter, write).
Peak RSS is that process's own (`wait4`). Measures and prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, save, table

sys.path.insert(0, str(ROOT / "tests"))

from loopback_server import _zipf_vocab  # noqa: E402

CHILD = """
import json, sys, time
from pathlib import Path
from refed_dspy.filters import make_filter
from refed_dspy.store.jsonl import read_jsonl

def rss(key):  # MiB, from /proc/self/status: VmRSS now, VmHWM the peak
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
    return int(line.split()[1]) / 1024

samples = list(read_jsonl(sys.argv[1]))
loaded, load_peak = rss("VmRSS"), rss("VmHWM")
Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here: the filter's own
t0, c0 = time.perf_counter(), time.process_time()
result = make_filter("near_duplicates", field=sys.argv[2]).apply(samples, {})
print(json.dumps({"filter_s": time.perf_counter() - t0, "filter_cpu_s": time.process_time() - c0,
                  "rss_loaded_mib": loaded, "load_peak_mib": load_peak, "filter_peak_mib": rss("VmHWM"),
                  "removed": len(result.removed)}))
"""


def write_run(path: Path, n: int, copies: float, seed: int = 0) -> int:
    """A run dir of `n` samples (samples.jsonl and a config.toml); returns how many are near-copies."""
    rng = random.Random(seed)
    words, cum = _zipf_vocab(20000)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(f'[run]\ndir = "{path}"\n')
    responses: list[str] = []
    made = 0
    with (path / "samples.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            instruction = " ".join(rng.choices(words, cum_weights=cum, k=12)).capitalize() + "?"
            if responses and rng.random() < copies:
                body = rng.choice(responses).split()
                for _ in range(rng.randint(1, 3)):
                    body[rng.randrange(len(body))] = rng.choice(words)
                made += 1
            else:
                body = rng.choices(words, cum_weights=cum, k=150)
            response = " ".join(body)
            responses.append(response)
            record = {
                "instruction": instruction,
                "response": response[: len(response) // 2],
                "improved_response": response,
                "meta": {"id": f"{i:08x}", "method": "refed", "reference_id": f"r{i % 1000}", "feature": "skills"},
            }
            fh.write(json.dumps(record) + "\n")
    return made


def measure(cmd: list[str]) -> tuple[float, float, float, str]:
    """Run `cmd`; returns (wall s, CPU s (user + system), peak RSS MiB of that process, its stdout)."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="true", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # its own rusage: the peak RSS of that process alone
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[:4]} failed (exit {proc.returncode}):\n{err.read()[-3000:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--copies", type=float, default=0.05, help="share of samples that near-copy an earlier one")
    ap.add_argument("--fields", nargs="+", default=["response", "instruction", "both"])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        made = write_run(run, args.samples, args.copies)
        size = (run / "samples.jsonl").stat().st_size / 2**20
        print(
            f"{args.samples:,} samples ({made:,} near-copies of a response), samples.jsonl {size:.0f} MiB", flush=True
        )
        for field in args.fields:
            _, _, _, stdout = measure([sys.executable, "-c", CHILD, str(run / "samples.jsonl"), field])
            got = json.loads(stdout.strip().splitlines()[-1])
            rows.append(
                {
                    "field": field,
                    "how": "python",
                    "wall_s": round(got["filter_s"], 1),
                    "cpu_s": round(got["filter_cpu_s"], 1),
                    "peak_rss_mib": round(max(got["load_peak_mib"], got["filter_peak_mib"])),  # wait4's was reset
                    "samples_loaded_mib": round(got["rss_loaded_mib"]),
                    "filter_adds_mib": round(got["filter_peak_mib"] - got["rss_loaded_mib"]),
                    "removed": got["removed"],
                }
            )
            print(rows[-1], flush=True)
            out = Path(tmp) / f"kept-{field}"
            cmd = [sys.executable, "-m", "refed_dspy.cli", "filter", str(run), "--out", str(out), "--overwrite"]
            wall, cpu, rss, _ = measure([*cmd, "--apply", f"near_duplicates:field={field}"])
            removed = sum(1 for _ in (out / "rejects.jsonl").open())
            rows.append(
                {
                    "field": field,
                    "how": "cli",
                    "wall_s": round(wall, 1),
                    "cpu_s": round(cpu, 1),
                    "peak_rss_mib": round(rss),
                    "removed": removed,
                }
            )
            print(rows[-1], flush=True)
    cols = ["field", "how", "wall_s", "cpu_s", "peak_rss_mib", "samples_loaded_mib", "filter_adds_mib", "removed"]
    print(table(rows, cols))
    print(f"wrote {save('near_duplicates', {'args': vars(args), 'near_copies': made, 'rows': rows})}")


if __name__ == "__main__":
    main()
