"""`refed estimate --pilot N`: a real run of N samples, projected to the config's size, against the full run."""

from __future__ import annotations

import json

from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import LoopbackServer, ServerConfig

from refed_dspy.config import load_config
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.estimate import format_estimate
from refed_dspy.synthesis.pilot import pilot_estimate, project


def test_a_pilot_projects_the_full_run_within_15_percent(tmp_path):
    with LoopbackServer(ServerConfig(vocab_size=5000)) as srv:
        over = run_overrides(srv, tmp_path / "run", 60, **{"seeds.limit": 12, "synthesis.instructions_per_feature": 3})
        e = pilot_estimate(load_config(None, over), 12)
        full = synthesize(load_config(None, over))
    assert e["pilot"]["samples"] == 12 and e["pilot"]["dir"].endswith("pilot")
    assert full["status"] == "complete" and full["samples"] == 60
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        error = abs(e["total"][key] - full["usage"][key]) / full["usage"][key]
        assert error <= 0.15, (key, e["total"][key], full["usage"][key])
    cost_error = abs(e["total"]["cost_usd"] - full["cost_usd"]) / full["cost_usd"]
    assert cost_error <= 0.15, (e["total"]["cost_usd"], full["cost_usd"])
    # the pilot's samples are kept beside the run, which does not count them
    assert len((tmp_path / "run" / "pilot" / "samples.jsonl").read_text().splitlines()) == 12


def test_a_pilot_smaller_than_a_unit_s_yield_projects_the_units_the_run_takes(tmp_path):
    """The newcomer trial: a pilot of 3 samples, whose one unit wrote 10 instructions, was projected as a unit for
    every 3 samples (feedback 28 calls and synthesize 13 against 8 and 4; 121 calls in all against 92). The units are
    the size over what a unit kept, and feedback follows them."""
    with LoopbackServer(ServerConfig(vocab_size=5000)) as srv:
        over = run_overrides(srv, tmp_path / "run", 40, **{"seeds.limit": 12, "synthesis.instructions_per_feature": 10})
        e = pilot_estimate(load_config(None, over), 3)
        full = synthesize(load_config(None, over))
    assert e["pilot"]["samples"] == 3 and full["status"] == "complete"
    by_stage = full["usage"]["by_stage"]
    for stage in ("feedback", "synthesize"):
        assert abs(e["stages"][stage]["calls"] - by_stage[stage]["calls"]) <= 1, (stage, e["stages"], by_stage)
    assert abs(e["total"]["calls"] - full["usage"]["calls"]) / full["usage"]["calls"] <= 0.15


def test_a_pilot_of_a_model_served_here_says_its_time_and_no_batch_or_flex(tmp_path):
    """A teacher the command serves has no batch API and no flex tier, and the pilot measured its time here: the
    projection says that time and leaves the batch and flex columns out (a hosted teacher's keeps them)."""
    with LoopbackServer(ServerConfig()) as srv:
        over = run_overrides(srv, tmp_path / "run", 12, **{"seeds.limit": 4, "synthesis.instructions_per_feature": 3})
        hosted = pilot_estimate(load_config(None, over), 3)
    summary = json.loads((tmp_path / "run" / "pilot" / "summary.json").read_text())
    served = load_config("configs/local.toml", [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=12"])
    e = project(served, summary, 4)
    text = format_estimate(e)
    assert e.get("wall") is None and e["local"].seconds == round(summary["wall_s_total"] * 12 / 3, 1)
    assert "batch" not in text and "flex" not in text, text
    assert "the pilot's 3 samples took" in text and "on the local server at http://127.0.0.1:8080" in text, text
    assert "batch" in format_estimate(hosted) and hosted.get("local") is None
    # a model with no price: the projection says why, as the estimate does (it raised KeyError: 'unpriced')
    unpriced = load_config(None, [*over, "teacher.model='openai/my-own-model'"])
    said = format_estimate(project(unpriced, summary, 4))
    assert "no price known for openai/my-own-model (a server on this machine or its network" in said


def test_estimate_says_what_it_assumed_and_json_is_alone(tmp_path):
    over = [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=50"]
    code, out, err = run_refed("estimate", *sets(over))
    assert code == 0, err
    assert "assumed: json_schema outputs" in out and "tokens counted with tiktoken o200k_base" in out
    assert "estimate: walking 4 references" in err  # progress, step by step, on stderr
    code, out, err = run_refed("estimate", "--json", "--no-save", *sets(over))
    body = json.loads(out)  # stdout is the JSON alone
    assert body["adapter"]["mode"] == "json_schema" and body["tokenizer"] == "tiktoken o200k_base"


def test_pilot_errors_are_one_line(tmp_path):
    over = [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=10"]
    for args, said in (
        (["--pilot", "10"], "is the run"),
        (["--pilot", "0"], "at least 1"),
        (["--pilot", "2", "--no-save"], "--no-save"),
    ):
        code, out, err = run_refed("estimate", *args, *sets(over))
        assert code == 2 and said in err and "Traceback" not in err, err
        assert not (tmp_path / "run" / "pilot").exists()


def test_a_pilot_of_another_config_says_what_to_do(tmp_path):
    with LoopbackServer(ServerConfig()) as srv:
        over = run_overrides(srv, tmp_path / "run", 40, **{"seeds.limit": 4, "synthesis.instructions_per_feature": 2})
        pilot_estimate(load_config(None, over), 4)
        code, out, err = run_refed("estimate", "--pilot", "4", *sets([*over, "teacher.temperature=0.3"]))
    assert code == 2 and "delete that folder" in err and "teacher.temperature" in err and "--fresh" not in err, err
