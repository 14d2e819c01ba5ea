"""`refed estimate`: no call made; the walk-through uses the real prompts; the run's summary states the error."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from conftest import run_overrides
from loopback_server import LoopbackServer, ServerConfig

from refed_dspy.config import load_config
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.estimate import (
    Lengths,
    cacheable_tokens,
    common_prefix,
    estimate,
    format_estimate,
    made_up_value,
    references_reached,
    work_counts,
)
from refed_dspy.synthesis.summary import estimate_error, format_summary


def test_pure_parts():
    assert common_prefix(["abcd", "abxy", "abzz"]) == "ab" and common_prefix([]) == ""
    assert cacheable_tokens(1023) == 0 and cacheable_tokens(1100) == 1024 and cacheable_tokens(1300) == 1280
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "minItems": 5, "maxItems": 5, "items": {"type": "string"}},
            "score": {"type": "integer", "minimum": 1, "maximum": 10},
            "verdict": {"enum": ["A", "B", "tie"]},
            "improved_response": {"type": "string"},
        },
    }
    value = made_up_value(schema, "out", Lengths(response=50, instruction=10), {}, itertools.count())
    assert len(value["items"]) == 5 and value["score"] == 5 and value["verdict"] == "A"
    assert len(value["improved_response"].split()) == 50
    cfg = load_config(None, ["synthesis.size=100", "synthesis.instructions_per_feature=10"])
    assert work_counts(cfg, 40) == {"feedback": 12, "unit": 12, "sample": 100}
    # a run takes every reference once for a feature before the next feature: 12 units reach 12 references (each
    # with its prompt prefix written to a marked cache), not 6; 50 units over 40 references reach all 40
    assert references_reached(cfg, work_counts(cfg, 40), 40) == 12
    assert references_reached(cfg, {"feedback": 40, "unit": 50, "sample": 400}, 40) == 40
    cfg = load_config(None, ["synthesis.size=10", "synthesis.method='reflection'"])
    assert work_counts(cfg, 40) == {"feedback": 0, "unit": 0, "sample": 10}


def test_estimate_makes_no_call_and_covers_every_stage(tmp_path):
    with LoopbackServer(ServerConfig()) as srv:
        over = run_overrides(srv, tmp_path / "run", 500)
        heard: list[str] = []
        e = estimate(load_config(None, over), say=heard.append)
        assert srv.state.count == 0  # not one request
    assert heard[0] == "reading the seeds (the embedded seed set)" and not any("None" in line for line in heard)
    assert set(e["stages"]) == {"feedback", "synthesize", "generate", "improve"}
    assert e["stages"]["generate"]["calls"] == 500 == e["stages"]["improve"]["calls"]
    t = e["total"]
    assert t["calls"] == sum(s["calls"] for s in e["stages"].values())
    assert t["cost_low_usd"] < t["cost_usd"] < t["cost_high_usd"]
    assert abs(t["batch_cost_usd"] - 0.5 * t["cost_usd"]) < 1e-6
    # the prompts are the real ones: the improve step's carry the draft, so they are longer than generate's
    assert e["stages"]["improve"]["prompt_tokens"] > e["stages"]["generate"]["prompt_tokens"]


def test_the_estimate_says_where_the_budget_stops_the_run(tmp_path):
    """A cost cap below the estimate: where it stops the run, at the column the run pays (batch in batch mode); one
    inside the range: that it may stop it; one above the range: nothing (a newcomer's trial ran a $0.01 cap against a
    $0.21 estimate that never named it, and the run stopped at 22 of 200)."""
    with LoopbackServer(ServerConfig()) as srv:
        over = run_overrides(srv, tmp_path / "run", 200)
        e = estimate(load_config(None, over))
    t = e["total"]
    for cap, says in (
        (t["cost_usd"] / 10, f"stops the run near {int(200 * (t['cost_usd'] / 10) / t['cost_usd'])} of its 200"),
        ((t["cost_usd"] + t["cost_high_usd"]) / 2, "may stop the run early"),
        (t["cost_high_usd"] * 2, None),
    ):
        text = format_estimate(e.model_copy(update={"max_cost_usd": cap}))
        said = [line for line in text.splitlines() if "synthesis.max_cost_usd" in line]
        assert (said == []) if says is None else (len(said) == 1 and says in said[0]), (cap, said)
    batch = format_estimate(e.model_copy(update={"max_cost_usd": t["cost_usd"] / 10, "mode": "batch"}))
    assert f"near {int(200 * (t['cost_usd'] / 10) / t['batch_cost_usd'])} of its 200" in batch


def _estimate_cli(over: list[str]) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "refed_dspy.cli", "estimate"]
    for o in over:
        args += ["--set", o]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_cli_writes_the_estimate_and_the_run_states_its_error(tmp_path):
    """The estimate made before the run is the one its summary states the error of; an estimate of the same config
    made after the run began (measured on the run itself) is printed and not written over it; one of another config
    is written, for the run that replaces it."""
    with LoopbackServer(ServerConfig()) as srv:
        run = tmp_path / "run"
        over = run_overrides(srv, run, 12, **{"seeds.limit": 4, "synthesis.instructions_per_feature": 3})
        out = _estimate_cli(over)
        assert "improve" in out.stdout and "total" in out.stdout and "range: online" in out.stdout
        assert srv.state.count == 0 and (run / "estimate.json").exists()
        before = (run / "estimate.json").read_text()
        s = synthesize(load_config(None, over))
        after = _estimate_cli(over)
        assert (run / "estimate.json").read_text() == before
        other = _estimate_cli([*over, "synthesis.instructions_per_feature=5"])
    est = s["estimate"]
    assert est["cost_usd"] == json.loads(before)["total"]["cost_usd"]
    assert "cost_error" in est and abs(est["calls_error"]) < 0.35
    assert "against it" in format_summary(s)
    # a model with no price: the estimate promised its error, so the summary says it in calls (a newcomer saw none)
    unpriced = {**s, "estimate": {**est, "cost_usd": None, "cost_error": None}}
    assert f"{est['calls']} calls (refed estimate), the run made" in format_summary(unpriced)
    assert "not written to" in after.stdout and "a run of this config (whatever its size) has begun" in after.stdout, (
        after.stdout
    )
    assert "wrote " in other.stdout and (run / "estimate.json").read_text() != before, other.stdout


def test_an_estimate_of_another_config_is_not_the_runs(tmp_path):
    """An estimate left in the run dir by another config (`refed estimate` with no --config writes into the default
    run dir) is not stated as the run's estimate; one of the same config at another endpoint is (a run resumed at a
    moved endpoint is the same run)."""
    with LoopbackServer(ServerConfig()) as srv:
        run = tmp_path / "run"
        over = run_overrides(srv, run, 6, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 3})
        _estimate_cli([*over, "synthesis.instructions_per_feature=2"])
        assert (run / "estimate.json").exists()
        s = synthesize(load_config(None, over))
        moved = tmp_path / "moved"
        elsewhere = run_overrides(srv, moved, 6, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 3})
        _estimate_cli([*elsewhere, "teacher.api_base='http://127.0.0.1:9/v1'"])
        t = synthesize(load_config(None, elsewhere))
    assert "estimate" not in s
    assert t["estimate"]["calls"] == json.loads((moved / "estimate.json").read_text())["total"]["calls"]


def test_an_estimate_that_names_no_config_is_taken_as_the_runs(tmp_path):
    path = tmp_path / "estimate.json"
    usage = {"calls": 12, "cost_usd": 0.01}
    path.write_text(json.dumps({"size": 6, "total": {"cost_usd": 0.02, "calls": 10}}))
    assert estimate_error(path, "abc", usage, 6, 6, False)["estimate"]["calls_error"] == 0.2
    path.write_text(json.dumps({"size": 6, "config_hash": "xyz", "total": {"cost_usd": 0.02, "calls": 10}}))
    assert estimate_error(path, "abc", usage, 6, 6, False) == {}


def test_progress_line_projects_the_total_cost():
    from refed_dspy.engine.progress import Progress

    p = Progress(100, 0, enabled=False)
    assert "projected" not in p.line()  # nothing to go by yet
    p.done, p.cost = 25, 0.5
    assert p.projected() == 2.0 and "$0.5000, projected $2.0000 in all" in p.line()


def test_the_estimate_prices_the_program_the_run_would_use(tmp_path):
    """synthesis.program names a compiled pipeline whose improver carries long instructions and a demo: the estimate
    walks that program, so its improve prompts are longer than the built-in ones (and nothing else changes)."""
    from refed_dspy.methods import METHODS

    program = METHODS.get("refed").build_pipeline()
    improve = program.respond.improve
    improve.signature = improve.signature.with_instructions("Improve the draft. " + "Keep every fact; " * 300)
    saved = tmp_path / "program.json"
    program.save(str(saved))
    with LoopbackServer(ServerConfig()) as srv:
        over = run_overrides(srv, tmp_path / "run", 200)
        built_in = estimate(load_config(None, over))
        compiled = estimate(load_config(None, [*over, f"synthesis.program='{saved}'"]))
        assert srv.state.count == 0
    grew = compiled.stages["improve"]["prompt_tokens"] - built_in.stages["improve"]["prompt_tokens"]
    assert grew > 200 * 600  # ~900 more prompt tokens on each of 200 improve calls
    # generate is the same prompt (the made-up replies it carries differ by a few tokens from walk to walk)
    same = built_in.stages["generate"]["prompt_tokens"]
    assert abs(compiled.stages["generate"]["prompt_tokens"] - same) < 0.01 * same
    assert compiled.total["cost_usd"] > built_in.total["cost_usd"]


def test_the_schema_is_counted_as_input_where_the_provider_shows_it_and_only_there():
    """As the provider bills it (and bench/billed_tokens.py counts it): OpenAI shows the model the response schema and
    bills it as input; a grammar server (an OpenAI-compatible one of your own) only constrains decoding with it."""
    from refed_dspy.adapters import build_adapter
    from refed_dspy.clients.calls import stage
    from refed_dspy.signatures import ImproveResponse
    from refed_dspy.synthesis.estimate import Lengths, Tally, _Walk, count_tokens

    inputs = {"feedback": "Be concrete.", "instruction": "Explain tides.", "draft_response": "The moon pulls."}
    for overrides, shown in (([], True), (["teacher.api_base='http://127.0.0.1:8080/v1'"], False)):
        spec = load_config(None, overrides).teacher
        adapter, tally = build_adapter(spec), Tally()
        assert adapter.schema_shown is shown
        with stage("improve"):
            _Walk(adapter, spec.model, Lengths(response=40, instruction=10), tally).answer(
                None, {}, ImproveResponse, [], inputs
            )
        messages = adapter.format(ImproveResponse, [], inputs)
        text = "\n".join(m["content"] for m in messages)
        schema = json.dumps(adapter.request_options(ImproveResponse)["response_format"])
        [(prompt, _)] = tally.calls[("sample", "improve")]
        assert prompt == count_tokens(spec.model, text + schema if shown else text), shown


def test_an_unpriced_model_close_to_a_priced_one_is_named_in_the_estimate(tmp_path, monkeypatch):
    over = [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=8"]
    text = format_estimate(estimate(load_config(None, [*over, "teacher.model='openai/gpt-4o-mnii'"])))
    assert "no price known for openai/gpt-4o-mnii (did you mean 'openai/gpt-4o-mini'?): set teacher." in text
    assert "no flex price" not in text  # no price at all: one line says so
    text = format_estimate(estimate(load_config(None, [*over, "teacher.model='openai/my-own-model'"])))
    assert "no price known for openai/my-own-model: set teacher." in text
    local = [
        "teacher.model='openai/gpt-4o-mnii'",
        "teacher.api_base='http://127.0.0.1:8080/v1'",
        "teacher.api_key_env=''",
    ]
    text = format_estimate(estimate(load_config(None, [*over, *local])))
    assert "no price known for openai/gpt-4o-mnii (a server on this machine or its network: no list price)" in text
    # another provider's model of a like name is no typo (it suggested nscale/meta-llama/... for a vLLM model)
    text = format_estimate(
        estimate(load_config(None, [*over, "teacher.model='openai/meta-llama/Llama-3.1-8B-Instruct'"]))
    )
    assert "no price known for openai/meta-llama/Llama-3.1-8B-Instruct: set teacher." in text
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")  # a local server the environment names
    text = format_estimate(
        estimate(load_config(None, [*over, "teacher.model='openai/meta-llama/Llama-3.1-8B-Instruct'"]))
    )
    assert "(a server on this machine or its network: no list price)" in text


def test_the_total_row_costs_what_its_stages_cost():
    # a stage of long prompts (feedback on long references) past gpt-5.4's 272k step beside a stage of short ones:
    # priced at the mean prompt of all the run's calls, the total came out below the sum of its stages (a review)
    from refed_dspy.providers.prices import default_price
    from refed_dspy.synthesis.estimate import _total_priced

    row = dict(cached_tokens=0.0, cache_write_tokens=0.0)
    stages = {
        "feedback": {**row, "calls": 10.0, "prompt_tokens": 3_000_000.0, "completion_tokens": 10_000.0},
        "respond": {**row, "calls": 1_000.0, "prompt_tokens": 5_000_000.0, "completion_tokens": 500_000.0},
    }
    total = _total_priced(stages, default_price("openai/gpt-5.4"), 0.5, {})
    for key in ("cost_usd", "cost_low_usd", "cost_high_usd", "batch_cost_usd"):
        assert total[key] == pytest.approx(sum(stage[key] for stage in stages.values())), key
    assert stages["feedback"]["cost_usd"] == pytest.approx((3_000_000 * 5.0 + 10_000 * 22.5) / 1e6)
    # without the prompt cache, a stage that read nothing from it costs what it costs
    stages["respond"]["cached_tokens"] = 4_000_000.0
    total = _total_priced(stages, default_price("openai/gpt-5.4"), 0.5, {})
    assert "uncached_cost_usd" not in stages["feedback"]
    want = stages["feedback"]["cost_usd"] + stages["respond"]["uncached_cost_usd"]
    assert total["uncached_cost_usd"] == pytest.approx(want)
