"""What provider prompt caching saves on a small REFED run: the share of prompt tokens read from the provider's cache
and written to it, and the cost with and without it, at each model's list prices.

    python bench/prompt_cache.py [--size 40]

Each run is a real synthesis against the loopback server (in its own process), which counts tokens with tiktoken's
o200k_base and caches as each provider does: Anthropic's Messages path only what a request marks with cache_control
(from the model's minimum: 4,096 tokens for Claude Haiku 4.5, 1,024 for Sonnet 4.5), written at 1.25x and read at 0.1x
the input price; the OpenAI path any prefix of 1,024 tokens or more. Costs are the runs' summaries (which equal the
server's tokens at list prices: tests/synthesis/test_prompt_cache.py); `uncached` prices the same tokens with nothing
read or written. References: the embedded seed set (LIMA-like lengths: about 380 tokens an answer), and synthetic
ones with long answers (5,000 words). Programs: the built-in one, and a "compiled" one, the built-in one with 4 demos
on its response and improvement steps (as BootstrapFewShot leaves them).
Prints and saves bench/results/prompt_cache.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import dspy
from harness import Server, make_seeds, run_child, save, synth_overrides, table

from refed_dspy.providers.prices import resolve_price

CASES = [  # (label, model, references, program, prompt_cache)
    ("haiku-4.5, built-in", "anthropic/claude-haiku-4-5", "lima", "built-in", True),
    ("haiku-4.5, compiled", "anthropic/claude-haiku-4-5", "lima", "compiled", True),
    ("haiku-4.5, compiled, prompt_cache=false", "anthropic/claude-haiku-4-5", "lima", "compiled", False),
    ("haiku-4.5, long refs", "anthropic/claude-haiku-4-5", "long", "built-in", True),
    ("haiku-4.5, long refs, prompt_cache=false", "anthropic/claude-haiku-4-5", "long", "built-in", False),
    ("sonnet-4.5, built-in", "anthropic/claude-sonnet-4-5", "lima", "built-in", True),
    ("sonnet-4.5, compiled", "anthropic/claude-sonnet-4-5", "lima", "compiled", True),
    ("sonnet-4.5, compiled, prompt_cache=false", "anthropic/claude-sonnet-4-5", "lima", "compiled", False),
    ("gpt-4o-mini, compiled (automatic cache)", "openai/gpt-4o-mini", "lima", "compiled", True),
]
DEMOS = 4


def compiled_program(path: Path) -> Path:
    """The built-in REFED program with DEMOS demos on its response and improvement steps, made from the embedded
    references (what BootstrapFewShot leaves on a compiled program), saved as `synthesis.program` takes it."""
    from refed_dspy.methods import METHODS
    from refed_dspy.store.seeds import read_references

    refs, _ = read_references(None, "auto", None, None)
    program = METHODS.get("refed").build_pipeline()
    feedback = "Keep the structure clear, give one concrete example, and say what to check first. " * 3
    analysis = {
        "original_strengths": ["clear"],
        "improvement_opportunities": ["an example"],
        "relevant_feedback": ["x"],
    }
    strategy = {"planned_changes": ["add an example"], "rationale": "the feedback asks for one"}
    generate, improve = [], []
    for k in range(DEMOS):
        ref, other = refs[2 * k], refs[2 * k + 1]
        generate.append(
            {"example_instruction": ref.instruction, "example_response": ref.response}
            | {"instruction": other.instruction, "response": other.response}
        )
        improve.append(
            {"feedback": feedback, "instruction": other.instruction, "draft_response": other.response}
            | {"analysis": analysis, "implementation_strategy": strategy, "improved_response": other.response}
        )
    program.respond.generate.demos = [dspy.Example(**d) for d in generate]
    program.respond.improve.demos = [dspy.Example(**d) for d in improve]
    program.save(str(path))
    return path


def run_case(label: str, model: str, seeds: Path | None, program: Path | None, cache: bool, size: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="refed-pc-"))
    with Server(log_path=work / "server.jsonl", tokenizer="o200k_base") as srv:
        base = srv.api_base.removesuffix("/v1") if model.startswith("anthropic/") else srv.api_base
        extra = [f"teacher.model='{model}'", f"teacher.prompt_cache={'true' if cache else 'false'}"]
        extra += [f"synthesis.program='{program}'"] if program is not None else []
        report = run_child(synth_overrides(base, work / "run", size, 8, seeds=seeds, extra=extra))
        log = [e for e in srv.log() if e.get("status") == 200]
    u, n = report["usage"], report["samples"]
    price = resolve_price(model, None, None, None)
    uncached = price.cost(u["prompt_tokens"], u["completion_tokens"])
    marked = sum(1 for e in log if e.get("cache_marks"))
    return {
        "case": label,
        "samples": n,
        "prompt_tok_per_sample": round(u["prompt_tokens"] / n),
        "read_share": round(u["cached_tokens"] / max(1, u["prompt_tokens"]), 3),
        "written_share": round(u.get("cache_write_tokens", 0) / max(1, u["prompt_tokens"]), 3),
        "requests_marked": f"{marked}/{len(log)}",
        "usd_per_1k_samples": round(report["cost_usd"] / n * 1000, 3),
        "usd_per_1k_uncached": round(uncached / n * 1000, 3),
        "saved": f"{1 - report['cost_usd'] / uncached:.1%}" if uncached else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--long-words", type=int, default=5000, help="words of each long reference's answer")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="refed-pc-inputs-"))
    seeds = {"lima": None, "long": make_seeds(tmp / "seeds.jsonl", 40, response_words=args.long_words)}
    programs = {"built-in": None, "compiled": compiled_program(tmp / "compiled.json")}
    rows = [
        run_case(label, model, seeds[refs], programs[program], cache, args.size)
        for label, model, refs, program, cache in CASES
    ]
    print(table(rows, list(rows[0])))
    print(json.dumps({"saved": str(save("prompt_cache", {"size": args.size, "demos": DEMOS, "rows": rows}))}))


if __name__ == "__main__":
    main()
