"""How close an experiment's estimate of each cell's LM calls comes to what the cell makes.

    python bench/estimates.py [--examples 24 48] [--optimizers bootstrap bootstrap_random_search miprov2 gepa]

For each size, one experiment on the loopback server in signal mode (demonstrations make better answers, so the
optimizers really work): one cell per optimizer, auto = light, default settings otherwise, all the references of
the embedded seed set. Prints, per cell, the estimate made once the examples exist (what decides whether a cell
starts), its range, and the calls the cell made (optimizing and scoring its test examples), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness import Server, save, table

from refed_dspy.experiments.experiment import experiment


def _file(work: Path, api_base: str, examples: int, optimizers: list[str]) -> Path:
    text = f"""
[teacher]
api_base = '{api_base}'
api_key_env = ''
[judge]
api_base = '{api_base}'
api_key_env = ''
[run]
dir = '{work / "run"}'
progress = false
[judging]
criteria = ['helpfulness', 'accuracy']
[optimize]
num_threads = 2
auto = 'light'
[experiment]
out = '{work / "exp"}'
examples = {examples}
test_fraction = 0.3
[experiment.grid]
"optimize.optimizer" = {json.dumps(optimizers)}
"""
    path = work / "exp.toml"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--optimizers", nargs="+", default=["bootstrap", "bootstrap_random_search", "miprov2", "gepa"])
    args = parser.parse_args()
    rows = []
    for examples in args.examples:
        work = Path(tempfile.mkdtemp(prefix="refed-estimates-"))
        with Server(log_path=work / "server.jsonl", signal=True) as srv:
            result = experiment(_file(work, srv.api_base, examples, args.optimizers))
        est = result.estimate
        for cell in result.cells:
            made = int((cell.get("optimize_usage") or {}).get("calls", 0)) + int(
                (cell.get("eval_usage") or {}).get("calls", 0)
            )
            rows.append(
                {
                    "examples": f"{result.examples['train']}/{result.examples['val']}/{result.examples['test']}",
                    "optimizer": cell["optimizer"],
                    "estimate": est["cells"][cell["id"]],
                    "optimizing": est["optimize"][cell["id"]],  # beside its own range (the estimate adds testing)
                    "optimizing range": f"{est['least'][cell['id']]}-{est['most'][cell['id']]}",
                    "made": made,
                    "estimate / made": round(est["cells"][cell["id"]] / made, 2) if made else None,
                    "kept": cell.get("kept"),
                }
            )
        print(table(rows[-len(result.cells) :], list(rows[0])), flush=True)
    save("estimates", {"rows": rows})


if __name__ == "__main__":
    main()
