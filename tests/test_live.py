"""The live tier: `refed synthesize` and `refed judge` against your own endpoint, a provider's or one you serve, run
only when asked (`pytest -m live`) with the model in REFED_LIVE_MODEL; skipped otherwise, and the skip says what to set.

    REFED_LIVE_MODEL=openai/gpt-4o-mini pytest -m live tests/test_live.py                   # OPENAI_API_KEY set
    REFED_LIVE_MODEL=openai/my-model REFED_LIVE_API_BASE=http://127.0.0.1:8000/v1 \\
        REFED_LIVE_KEY_ENV= pytest -m live tests/test_live.py                                # your own server, no key

It spends a few cents at most: 2 samples from 1 reference, judged, under `synthesis.max_calls = 24`. It asserts what
any model must give: exact sizes, valid records, paid calls within the budget and counted with their tokens.
"""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import lines, run_refed, sets

from refed_dspy.store.records import SampleRecord

pytestmark = pytest.mark.live

ASK = (
    "the live tier runs against your own endpoint: set REFED_LIVE_MODEL (a model string, e.g. openai/gpt-4o-mini), "
    "and REFED_LIVE_API_BASE and REFED_LIVE_KEY_ENV (the key's variable, empty for none) where it is not the "
    "provider's own, then run pytest -m live"
)


def live_overrides(run_dir) -> list[str]:
    """The teacher and the judge on REFED_LIVE_MODEL, a run of 2 samples from 1 reference within 24 calls."""
    model = os.environ.get("REFED_LIVE_MODEL")
    if not model:
        pytest.skip(ASK)
    out = [f"run.dir='{run_dir}'", "run.progress=false", "synthesis.size=2", "seeds.limit=1"]
    out += ["synthesis.instructions_per_feature=2", "synthesis.max_calls=24", "judging.criteria=['helpfulness']"]
    for role in ("teacher", "judge"):
        out.append(f"{role}.model='{model}'")
        if os.environ.get("REFED_LIVE_API_BASE"):
            out.append(f"{role}.api_base='{os.environ['REFED_LIVE_API_BASE']}'")
        if "REFED_LIVE_KEY_ENV" in os.environ:
            out.append(f"{role}.api_key_env='{os.environ['REFED_LIVE_KEY_ENV']}'")
    return out


def test_synthesize_and_judge_against_your_endpoint(tmp_path):
    run = tmp_path / "run"
    over = live_overrides(run)
    code, out, err = run_refed("synthesize", *sets(over), timeout=900)
    assert code == 0, err[-2000:]
    samples = lines(run / "samples.jsonl")
    assert len(samples) == 2 == len({s["meta"]["id"] for s in samples})
    assert all(SampleRecord.model_validate(s) for s in samples)
    usage = json.loads((run / "summary.json").read_text())["usage"]
    assert 0 < usage["calls"] <= 24 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    code, out, err = run_refed("judge", "run", str(run), *sets(over), timeout=900)
    assert code == 0, err[-2000:]
    judged = lines(run / "judgments.jsonl")
    assert sorted(j["sample_id"] for j in judged) == sorted(s["meta"]["id"] for s in samples)
    assert all(1 <= j["pointwise"]["overall"] <= 10 for j in judged if j.get("pointwise"))
