"""An optimization asks its provider to cache its prompts' repeated part, as a synthesis does (issue 53, item 1): it
sends the same instructions and demos over and over, from several threads, each calling its LMs from an event loop of
its own. Every teacher and judge request of `refed optimize` at an OpenAI-format endpoint carries a prompt_cache_key;
an Anthropic teacher and judge mark their prompts with cache_control and are served cache reads, at a cost below the
same optimization with `prompt_cache = false`, which sends neither."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import long_seeds, run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.config.lm import price_of
from refed_dspy.optimizers.run import optimize

HAIKU = "'anthropic/claude-haiku-4-5'"


def served(srv) -> list[dict]:
    return [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]


def overrides(teacher, judge, tmp_path, name: str, optimizer: str = "miprov2", **extra) -> list[str]:
    return run_overrides(teacher, tmp_path / name, 10) + [
        f"judge.api_base='{judge.api_base}'",
        "judge.api_key_env=''",
        f"optimize.optimizer='{optimizer}'",
        "optimize.n_train=4",
        "optimize.n_val=3",
        "optimize.num_threads=2",
        f"optimize.out='{tmp_path / name / 'opt'}'",
        "judging.criteria=['helpfulness','accuracy']",
        *(f"{k}={v}" for k, v in extra.items()),
    ]


def test_every_request_of_an_openai_optimization_carries_a_prompt_cache_key(server_factory, tmp_path):
    """MIPROv2 (its proposer's calls on a copy of the teacher, its trials in two threads) and the judge of its metric:
    before, 0 of their requests carried a key (their LMs kept DSPy's engine, which asks for nothing)."""
    teacher, judge = server_factory(log_prompts=True), server_factory(log_prompts=True)
    result = optimize(load_config(None, overrides(teacher, judge, tmp_path, "on", **{"optimize.auto": "'light'"})))
    assert result.usage["by_role"]["judge"]["calls"] > 0
    for srv in (teacher, judge):
        log = served(srv)
        unkeyed = [e["outputs"] for e in log if not e["settings"].get("prompt_cache_key", "").startswith("refed-")]
        assert log and not unkeyed, unkeyed

    teacher, judge = server_factory(log_prompts=True), server_factory(log_prompts=True)
    off = {"optimize.auto": "'light'", "teacher.prompt_cache": "false", "judge.prompt_cache": "false"}
    optimize(load_config(None, overrides(teacher, judge, tmp_path, "off", **off)))
    for srv in (teacher, judge):
        assert served(srv) and not any("prompt_cache_key" in e["settings"] for e in served(srv))


def anthropic_optimization(server_factory, tmp_path, name: str, **extra) -> tuple[dict, list[dict], object]:
    """One bootstrap optimization of an Anthropic teacher and judge. Its runs with and without prompt caching send the
    same requests: each answer is drawn from its request (not from the order requests arrive in) with one seed, the
    examples synthesis makes one call at a time (which samples fill it, in which order) and the trials run in one
    thread, so that both make the same examples and the bootstrap stops after the same ones (drawn by arrival, with
    two threads, the runs made 65 to 71 calls, and the cached run's saving was within that spread: a CI run failed)."""
    # the server counts words, not tokens; one seed for both runs (the fixture gives each server a seed of its own)
    srv = server_factory(marked_cache_min_tokens=300, answers_by_request=True, seed=0)
    base = f"'{srv.api_base.removesuffix('/v1')}'"
    sets = {
        "teacher.model": HAIKU,
        "teacher.api_base": base,
        "judge.model": HAIKU,
        "seeds.source": f"'{long_seeds(tmp_path, 8)}'",
        "optimize.num_threads": 1,
        "synthesis.concurrency": 1,  # the examples synthesis too: which samples fill it, in what order
        **extra,
    }
    config = load_config(None, overrides(srv, srv, tmp_path, name, "bootstrap", **sets) + [f"judge.api_base={base}"])
    return optimize(config), served(srv), config


def asked(entry: dict) -> tuple:
    """What a request asked: its output fields and its inputs (not its cache marks)."""
    return tuple(entry["outputs"]), entry["key"]


def test_an_anthropic_optimization_marks_its_prompts_and_pays_less(server_factory, tmp_path):
    result, log, config = anthropic_optimization(server_factory, tmp_path, "cached")
    assert any(e["cache_marks"] for e in log) and sum(e["cached_tokens"] for e in log) > 0
    # the optimization's calls, those that made its examples (the references' feedback) included, as the server saw them
    calls, cached = (result.usage[k] for k in ("calls", "cached_tokens"))
    assert (calls, cached) == (len(log), sum(e["cached_tokens"] for e in log))
    assert 0 < result.extra["examples_usage"]["calls"] < calls
    price = price_of(config.teacher)
    at_list = sum(
        price.cost(e["prompt_tokens"], e["completion_tokens"], e["cached_tokens"], e.get("cache_write_tokens", 0))
        for e in log
    )
    assert result.cost_usd == pytest.approx(at_list, rel=1e-9)

    plain, log_off, _ = anthropic_optimization(
        server_factory, tmp_path, "plain", **{"teacher.prompt_cache": "false", "judge.prompt_cache": "false"}
    )
    assert log_off and not any(e["cache_marks"] for e in log_off) and not any(e["cached_tokens"] for e in log_off)
    assert plain.cost_usd == pytest.approx(sum(price.cost(e["prompt_tokens"], e["completion_tokens"]) for e in log_off))
    # the same run: the same requests, each as often (a CI run with trials in two threads and answers drawn by arrival
    # had made 65 and 71 calls, and the cached one cost more)
    assert Counter(map(asked, log)) == Counter(map(asked, log_off))
    assert result.cost_usd < plain.cost_usd, (result.cost_usd, plain.cost_usd)
