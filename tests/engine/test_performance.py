"""What the performance work (issue 8, bench/) changed, checked for behaviour (never for timings):
the memoized system message, the teacher's own wide connection pool, feedback prefetch paying for nothing
the run does not use. Efficiency itself is measured by bench/efficiency.py."""

from __future__ import annotations

import json

import dspy
import pytest
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.adapters import RefedChatAdapter
from refed_dspy.adapters.wording import task_text
from refed_dspy.clients.lm import build_lm
from refed_dspy.config import LMSpec, load_config
from refed_dspy.signatures import GenerateResponse, ImproveResponse
from refed_dspy.synthesis.api import synthesize


@pytest.mark.parametrize("signature", [GenerateResponse, ImproveResponse])
def test_memoized_system_message_is_the_lean_one_and_follows_new_instructions(signature):
    ours, theirs = RefedChatAdapter(), dspy.ChatAdapter()
    inputs = {name: f"value of {name}" for name in signature.input_fields}
    first = ours.format(signature, [], inputs)
    assert first == RefedChatAdapter().format(signature, [], inputs) == ours.format(signature, [], inputs)  # memo hit
    # the lean prompt (adapters/wording.py): the instructions first, no field list, each output once with its type
    system = first[0]["content"]
    assert system.startswith(task_text(signature)) and "Your input fields are" not in system
    assert all(system.count(f"[[ ## {name} ## ]]") == 1 for name in signature.output_fields)
    # the inputs go as DSPy's chat format writes them; only the closing reminder is ours
    mine, dspys = first[1]["content"], theirs.format(signature, [], inputs)[1]["content"]
    assert mine.split("\n\nRespond with")[0] == dspys.split("\n\nRespond with")[0]
    rewritten = signature.with_instructions("A MARKER INSTRUCTION written by an optimizer.")
    system = ours.format(rewritten, [], inputs)[0]["content"]
    assert "A MARKER INSTRUCTION" in system and "A MARKER INSTRUCTION" not in first[0]["content"]


def test_teacher_gets_a_pool_as_wide_as_the_concurrency_and_keeps_the_key_out_of_kwargs(monkeypatch):
    monkeypatch.setenv("REFED_TEST_KEY", "sk-planted-0000")
    spec = LMSpec(model="openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", api_key_env="REFED_TEST_KEY")
    lm = build_lm(spec, "teacher", num_retries=0, max_connections=300)
    assert not isinstance(lm._engine_spec, str)
    assert lm._async_engine_spec.config.max_connections == 300
    assert "sk-planted-0000" not in json.dumps(lm.kwargs, default=str)
    # no max_connections: engines of its own all the same, at DSPy's pool width, whether or not its requests ask
    # OpenAI to cache their prompts (each event loop that calls it gets its own async engine)
    for cache in (True, False):
        own = build_lm(spec.model_copy(update={"prompt_cache": cache}), "teacher")
        assert not isinstance(own._engine_spec, str) and own._async_engine_spec.config.max_connections == 100
        assert "sk-planted-0000" not in json.dumps(own.kwargs, default=str)


def test_teacher_and_judge_pools_follow_their_concurrency(monkeypatch, caplog):
    from refed_dspy.clients import lm as lm_module
    from refed_dspy.clients.lm import stage_lm

    def online_lm(config, role):  # the LM `launch` builds for a stage of `role` when none is handed in
        spec, stage = (config.teacher, config.synthesis) if role == "teacher" else (config.judge, config.judging)
        return stage_lm(spec, role, stage.concurrency)

    config = load_config(
        None,
        [
            "teacher.api_base='http://127.0.0.1:9/v1'",
            "teacher.api_key_env=''",
            "judge.api_base='http://127.0.0.1:9/v1'",
            "judge.api_key_env=''",
            "synthesis.concurrency=300",
            "judging.concurrency=200",
        ],
    )
    assert online_lm(config, "teacher")._async_engine_spec.config.max_connections == 300
    assert online_lm(config, "judge")._async_engine_spec.config.max_connections == 200
    # a model DSPy serves some other way keeps DSPy's engine, and a pool wider than DSPy's is warned about
    monkeypatch.setattr(lm_module, "wide_engines", lambda *args: None)
    with caplog.at_level("WARNING", logger="refed_dspy.clients.lm"):
        judge = online_lm(config, "judge")
    assert judge._engine_spec == "auto"
    assert "judge: 200 calls in flight" in caplog.text and "at most 100 connections" in caplog.text


@pytest.mark.slow
def test_concurrency_above_100_reaches_the_server(server_factory, tmp_path):
    # each reply takes 1.5 s: time enough for the client to have 160 requests out even on a busy machine (pytest -n 2)
    srv = server_factory(latency_s=1.5)
    config = load_config(None, run_overrides(srv, tmp_path / "run", 300, **{"synthesis.concurrency": 160}))
    summary = synthesize(config)
    assert summary["samples"] == 300
    # DSPy's own client would have held this at 100; the pool is as wide as the concurrency
    assert 120 < srv.state.max_in_flight <= 160, srv.state.max_in_flight


def test_feedback_is_collected_only_for_references_the_run_uses(server_factory, tmp_path):
    srv = server_factory()
    # 40 references, 10 instructions per feature: 12 samples need units of 2 references at most
    summary = synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 12, **{"synthesis.concurrency": 64})))
    assert summary["samples"] == 12
    assert summary["feedback_collected"] <= 2
    feedback_calls = [
        e
        for e in read_log(srv.cfg.log_path)
        if e["outputs"] in (["subject_areas", "relevant_skills"], ["response_feedback"])
    ]
    assert len(feedback_calls) == 2 * summary["feedback_collected"]


def test_bench_harness_runs_a_child_and_the_plain_client_replays_its_requests(tmp_path):
    """The benchmarks' plumbing (bench/harness.py, bench/child.py) on a tiny run, so it cannot rot unseen."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from harness import Server, efficiency, run_child, synth_overrides
    from tokens import shared_prefixes

    with Server(log_path=tmp_path / "server.jsonl", log_prompts=True, vocab_size=2000) as srv:
        ours = run_child(synth_overrides(srv.api_base, tmp_path / "run", 20, 8))
        plain = run_child(
            [f"log={tmp_path / 'server.jsonl'}", f"api_base={srv.api_base}", "concurrency=8"], mode="plain"
        )
        log = srv.log()
    assert ours["status"] == "complete" and ours["samples"] == 20
    assert ours["cpu_s"] > 0 and ours["peak_rss_mib"] > 0
    assert plain["calls"] == ours["usage"]["calls"] == len(log) // 2  # the replay doubled the log
    eff = efficiency(ours["samples"], ours["wall_s"], 8, log[: len(log) // 2])
    assert eff["calls_per_sample"] == round(ours["usage"]["calls"] / 20, 3)
    assert shared_prefixes([["a", "b", "c"], ["a", "b", "d"], ["x"]]) == [2, 2, 0]


def test_dedup_bench_data_gives_brute_force_answers():
    """bench/dedup.py's Zipf instructions with edits: the indexed dedup answers as brute force does (and the
    benchmark's own pieces keep working)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from dedup import brute, instructions

    from refed_dspy.text.overlap import Deduper

    items = instructions(400, 14, 2000, edits=0.3)
    d = Deduper(0.7)
    got = [d.offer(it) for it in items]
    assert got == brute(items, 0.7)
    assert got.count("near_duplicate") > 40
