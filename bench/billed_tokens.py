"""Billed tokens a sample, step by step, beside the paper's code: what a REFED sample costs at gpt-4o-mini prices.

    python bench/billed_tokens.py [--size 800] [--concurrency 40] [--paper PATH] [--cases ...] [--no-latency]

One loopback server (in its own process) answers every run, with the harness's latency model. It counts tokens as
ceil(characters / 4) (`tokenizer = "chars4"`) and bills a request's `response_format` as input, as OpenAI bills a
structured output's schema (it is shown to the model). Its answers are the same for both programs: a response 60
words, a list item or a short text 14, Zipf-distributed over 20,000 words; the embedded 40 references (LIMA-like
lengths) are the seeds, so 800 samples are 20 a reference.

Cases (`--cases`):
- `openai`: refed's built-in program with `schema_dialect = "openai"` (what api.openai.com gets);
- `compiled`: the same with a 4-demo compiled program (bench/prompt_cache.py's: 4 demos on the response and
  improvement steps, as BootstrapFewShot leaves them);
- `gateway`: an OpenAI-compatible host that is not api.openai.com and shows the schema to the model (a gateway in
  front of OpenAI's models), told so with `schema_shown = true`;
- `gateway-unsaid`: the same host without that setting (the schema dialect `auto` takes it for a grammar server);
- `paper`: the paper's code (Shuhaibm/refed at 7188193; `--paper` names its checkout; none of it is copied here),
  driven in a child process: its feedback collector, then its synthesizer (40 workers), through its own AzureOpenAI
  client pointed at the loopback server.

Steps: feedback (the two feedback asks, once a reference), synthesis (new instructions), draft (the first response),
improve. Per sample: each step's tokens over the samples the run made. `$/1k` is the list price (no cache reads);
`x paper` is the cost a sample against the paper's code's. Writes bench/results/billed_tokens.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from harness import LATENCY, Server, run_child, save, synth_overrides, table

from refed_dspy.providers.prices import default_price

PRICE = default_price("openai/gpt-4o-mini")
STEP_OF_OUTPUT = {  # the first output field (or reply key) names the ask, hence the step
    "subject_areas": "feedback",
    "response_feedback": "feedback",
    "new_instructions": "synthesis",
    "instructions": "synthesis",
    "response": "draft",
    "analysis": "improve",
}
STEPS = ("feedback", "synthesis", "draft", "improve")
CASES = {
    "openai": ["teacher.schema_dialect='openai'"],
    "compiled": ["teacher.schema_dialect='openai'"],
    "gateway": ["teacher.schema_shown=true"],
    "gateway-unsaid": [],
}


def step_of(entry: dict) -> str:
    outputs = entry.get("outputs") or []
    return STEP_OF_OUTPUT.get(outputs[0] if outputs else "", "other")


def rows_of(case: str, log: list[dict], samples: int, wall_s: float) -> tuple[dict, list[dict]]:
    """The case's row (tokens and cost a sample) and its rows by step, from the server's log of answered calls."""
    by_step: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for e in log:
        st = by_step[step_of(e)]
        st[0] += 1
        st[1] += e.get("prompt_tokens", 0)
        st[2] += e.get("completion_tokens", 0)
    calls = sum(st[0] for st in by_step.values())
    prompt = sum(st[1] for st in by_step.values())
    completion = sum(st[2] for st in by_step.values())
    n = max(1, samples)
    row = {
        "case": case,
        "samples": samples,
        "calls_per_sample": round(calls / n, 2),
        "prompt_tok_per_sample": round(prompt / n),
        "completion_tok_per_sample": round(completion / n),
        "usd_per_1k_samples": round(PRICE.cost(prompt, completion, 0) / n * 1000, 4),
        "wall_s": round(wall_s, 1),
    }
    steps = [
        {
            "case": case,
            "step": name,
            "calls_per_sample": round(st[0] / n, 3),
            "prompt_tok_per_call": round(st[1] / max(1, st[0])),
            "prompt_tok_per_sample": round(st[1] / n),
            "completion_tok_per_sample": round(st[2] / n),
        }
        for name in (*STEPS, "other")
        if (st := by_step.get(name))
    ]
    return row, steps


def ours(case: str, size: int, concurrency: int, server_cfg: dict, work: Path) -> tuple[dict, list[dict]]:
    """refed synthesize on the case's settings against a fresh loopback server."""
    extra = list(CASES[case])
    if case == "compiled":
        from prompt_cache import compiled_program

        extra.append(f"synthesis.program='{compiled_program(work / 'compiled.json')}'")
    with Server(log_path=work / "server.jsonl", **server_cfg) as srv:
        report = run_child(synth_overrides(srv.api_base, work / "run", size, concurrency, extra=extra))
        log = [e for e in srv.log() if e.get("status") == 200]
    return rows_of(case, log, report["samples"], report["wall_s"])


def paper(path: Path, size: int, server_cfg: dict, work: Path) -> tuple[dict, list[dict]]:
    """The paper's code (its checkout at `path`) in a child process against a fresh loopback server."""
    with Server(log_path=work / "server.jsonl", **server_cfg) as srv:
        env = dict(
            os.environ,
            AZURE_ENDPOINT=srv.api_base.removesuffix("/v1"),
            AZURE_OPENAI_KEY="unused",
            AZURE_VERSION="2024-06-01",
            TIKTOKEN_CACHE_DIR=_tiktoken_files(),
        )
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, __file__, "--run-paper", str(path), "--size", str(size), "--out", str(work / "out")],
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"the paper's code failed:\n{proc.stderr[-3000:]}")
        samples = len(json.loads((work / "out" / "synthesized_data.json").read_text()))
        log = [e for e in srv.log() if e.get("status") == 200]
    return rows_of("paper", log, samples, wall)


def _tiktoken_files() -> str:
    """Where LiteLLM keeps tiktoken's encodings (the paper's synthesizer counts with one; no download)."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    return os.path.join(spec.submodule_search_locations[0], "litellm_core_utils", "tokenizers")


def run_paper(path: Path, size: int, out: Path) -> None:
    """In the child: the paper's feedback collector and synthesizer on the embedded references, as its generate.py
    runs them (its seed loading, which reads the Hugging Face hub, replaced by a reader of the same pairs)."""
    import contextlib
    import io

    sys.path.insert(0, str(path))
    from ReferenceLevelFeedbackCollector import ReferenceLevelFeedbackCollector
    from ReferenceLevelFeedbackSynthesizer import ReferenceLevelFeedbackSynthesizer

    from refed_dspy.store.seeds import read_references

    refs, _ = read_references(None, "auto", None, None)

    class Collector(ReferenceLevelFeedbackCollector):
        def process_seed_dataset(self, seed_dataset_name):
            return [{"instruction": r.instruction, "response": r.response} for r in refs]

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        feedback = Collector("gpt-4o-mini", "embedded", str(out)).collect_feedback()
        ReferenceLevelFeedbackSynthesizer(feedback, "gpt-4o-mini", str(out)).synthesize_data(size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--concurrency", type=int, default=40)
    ap.add_argument("--cases", nargs="+", default=[*CASES, "paper"], choices=[*CASES, "paper"])
    ap.add_argument("--paper", type=Path, help="a checkout of Shuhaibm/refed (7188193); the paper case needs it")
    ap.add_argument("--no-latency", action="store_true", help="answer at once (the token counts are the same)")
    ap.add_argument("--run-paper", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_paper:
        return run_paper(args.run_paper, args.size, args.out)
    if "paper" in args.cases and args.paper is None:
        ap.error("the paper case needs --paper PATH (a checkout of Shuhaibm/refed)")
    server_cfg = {"log_prompts": False, "vocab_size": 20000, "tokenizer": "chars4", "seed": 7}
    if not args.no_latency:
        server_cfg |= LATENCY
    rows, steps = [], []
    for case in args.cases:
        work = Path(tempfile.mkdtemp(prefix=f"refed-billed-{case}-"))
        if case == "paper":
            row, by_step = paper(args.paper, args.size, server_cfg, work)
        else:
            row, by_step = ours(case, args.size, args.concurrency, server_cfg, work)
        print(row, flush=True)
        rows.append(row)
        steps += by_step
    base = next((r for r in rows if r["case"] == "paper"), None)
    for row in rows:
        if base:
            row["x_paper"] = round(row["usd_per_1k_samples"] / base["usd_per_1k_samples"], 3)
    print(table(rows, list(rows[0])))
    print()
    print(table(steps, list(steps[0])))
    payload = {"size": args.size, "concurrency": args.concurrency, "server": server_cfg, "rows": rows, "steps": steps}
    print(f"wrote {save('billed_tokens', payload)}")


if __name__ == "__main__":
    main()
