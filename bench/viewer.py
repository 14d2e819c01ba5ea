"""How fast `refed view` answers on a large run dir.

    python bench/viewer.py [--samples 10000]

Writes a run dir of N judged samples (about 300 words each, Zipf text; 5 % rejects with model text), starts
`refed view` on it in its own process and measures: the time from starting the command to the first page,
then the time of a search (a rare and a common word), of a filtered list, of a later page and of one
sample's page (median of 5 each). Writes bench/results/viewer.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import save, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from loopback_server import _zipf_vocab  # noqa: E402 - the benchmarks' shared made-up vocabulary

WORDS, CUM = _zipf_vocab(20000)


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, cum_weights=CUM, k=n)).capitalize() + "."


def write_run(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    refs = [f"{i:016x}" for i in range(max(1, n // 25))]
    path.mkdir(parents=True)
    (path / "config.toml").write_text('[run]\ndir = "bench"\n')
    (path / "summary.json").write_text(
        json.dumps({"status": "complete", "method": "refed", "teacher": "bench/model", "samples": n, "size": n})
    )
    criteria = ["helpfulness", "accuracy", "depth", "clarity", "instruction_following"]
    with (
        open(path / "samples.jsonl", "w") as s,
        open(path / "judgments.jsonl", "w") as j,
        open(path / "rejects.jsonl", "w") as r,
    ):
        for i in range(n):
            sid = f"{i:016x}"
            ref = rng.choice(refs)
            sample = {
                "instruction": text(rng, 25),
                "response": text(rng, 120),
                "analysis": {
                    "original_strengths": [text(rng, 12)],
                    "improvement_opportunities": [text(rng, 12)],
                    "relevant_feedback": [text(rng, 12)],
                },
                "implementation_strategy": {"planned_changes": [text(rng, 12)], "rationale": text(rng, 20)},
                "improved_response": text(rng, 150),
                "meta": {
                    "id": sid,
                    "method": "refed",
                    "reference_id": ref,
                    "feature": rng.choice(["subject_areas", "relevant_skills"]),
                    "teacher": "bench/model",
                    "program": "builtin",
                    "usage": {"calls": 2, "cached_calls": 0},
                },
            }
            s.write(json.dumps(sample) + "\n")
            scores = {c: rng.randint(1, 10) for c in criteria}
            j.write(
                json.dumps(
                    {
                        "sample_id": sid,
                        "pointwise": {
                            "scores": scores,
                            "overall": statistics.fmean(scores.values()),
                            "rationale": text(rng, 30),
                        },
                        "pairwise": {
                            "winner": rng.choice(["improved", "draft", "tie"]),
                            "verdicts": ["A", "B"],
                            "flipped": False,
                            "rationales": [text(rng, 30), text(rng, 30)],
                        },
                    }
                )
                + "\n"
            )
            if i % 20 == 0:
                r.write(
                    json.dumps(
                        {
                            "stage": "sample",
                            "reason": rng.choice(["truncated", "unparseable"]),
                            "detail": "bench",
                            "reference_id": ref,
                            "item_id": f"x{i}",
                            "final": True,
                            "raw": text(rng, 200),
                        }
                    )
                    + "\n"
                )


def get(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read()
    return time.perf_counter() - t, len(body)


def median_of(url: str, k: int = 5) -> float:
    return statistics.median(get(url)[0] for _ in range(k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        write_run(run, args.samples)
        size_mb = sum(p.stat().st_size for p in run.iterdir()) / 2**20
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "refed_dspy.cli", "view", str(run), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = proc.stdout.readline()
            base = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)
            ready = time.perf_counter() - started
            first, nbytes = get(base + "/")
            first_page = time.perf_counter() - started
            rare, common = WORDS[15000], WORDS[5]
            rows = [
                {"what": "start to the first page", "seconds": round(first_page, 3)},
                {"what": "  of which: start to listening (index built)", "seconds": round(ready, 3)},
                {"what": "  of which: the first page's request", "seconds": round(first, 3)},
                {"what": f"search, a rare word ('{rare}')", "seconds": round(median_of(f"{base}/?q={rare}"), 3)},
                {"what": f"search, a common word ('{common}')", "seconds": round(median_of(f"{base}/?q={common}"), 3)},
                {
                    "what": "filter: verdict win, score 6-10",
                    "seconds": round(median_of(f"{base}/?verdict=win&score_min=6"), 3),
                },
                {"what": "page 100 of the list", "seconds": round(median_of(f"{base}/?page=100"), 3)},
                {
                    "what": "one sample's page",
                    "seconds": round(median_of(f"{base}/sample/{args.samples // 2:016x}"), 3),
                },
                {"what": "rejects page", "seconds": round(median_of(f"{base}/rejects"), 3)},
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{args.samples} samples, {size_mb:.0f} MiB of records; first page {nbytes / 1024:.0f} KiB")
    print(table(rows, ["what", "seconds"]))
    save("viewer", {"samples": args.samples, "record_mib": round(size_mb, 1), "rows": rows})


if __name__ == "__main__":
    main()
