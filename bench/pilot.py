"""The error of `refed estimate --pilot N`: a pilot of N samples projected to a run of SIZE, against that run.

    python bench/pilot.py [--size 200] [--pilots 5 10 20] [--methods refed no_feedback]

Each method runs once at full size on the loopback server (words Zipf-distributed over 20,000, replies 20-400
tokens), then pilots of each N on fresh run dirs against the same server; the walk-through estimate (no pilot) is
shown beside them. Error = (projected - measured) / measured, for calls, prompt and completion tokens, and cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness import ROOT, Server, save, synth_overrides, table

sys.path.insert(0, str(ROOT))

from refed_dspy.config import load_config  # noqa: E402
from refed_dspy.synthesis.api import synthesize  # noqa: E402
from refed_dspy.synthesis.estimate import estimate  # noqa: E402
from refed_dspy.synthesis.pilot import pilot_estimate  # noqa: E402

KEYS = ("calls", "prompt_tokens", "completion_tokens", "cost_usd")


def overrides(api_base: str, run: Path, size: int, method: str) -> list[str]:
    return synth_overrides(api_base, run, size, 32, method=method)


def errors(projected: dict, measured: dict) -> dict[str, str]:
    return {k: f"{(projected[k] - measured[k]) / measured[k]:+.1%}" for k in KEYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--pilots", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--methods", nargs="+", default=["refed", "no_feedback"])
    args = ap.parse_args()
    rows = []
    for method in args.methods:
        work = Path(tempfile.mkdtemp(prefix="refed-pilot-"))
        with Server(vocab_size=20000) as srv:
            full = synthesize(load_config(None, overrides(srv.api_base, work / "full", args.size, method)))
            measured = {**full["usage"], "cost_usd": full["cost_usd"]}
            # earlier=False: the walk's own defaults, not the lengths the full run beside it measured
            walk = estimate(load_config(None, overrides(srv.api_base, work / "walk", args.size, method)), earlier=False)
            rows.append({"method": method, "basis": "walk (no call)", **errors(walk["total"], measured)})
            for n in args.pilots:
                config = load_config(None, overrides(srv.api_base, work / f"pilot{n}", args.size, method))
                e = pilot_estimate(config, n)
                rows.append({"method": method, "basis": f"pilot of {n}", **errors(e["total"], measured)})
        print(f"{method}: the full run of {args.size}: {measured['calls']} calls, ${measured['cost_usd']:.4f}")
    cols = ["method", "basis", *KEYS]
    print(table(rows, cols))
    print(save("pilot", {"size": args.size, "rows": rows}))


if __name__ == "__main__":
    main()
