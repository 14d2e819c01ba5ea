"""Provider prompt caching, on by default and priced at the provider's rates (issue 46, item 3).

An `anthropic/claude-haiku-4-5` teacher on the loopback server's Messages endpoint, which caches what a request marks
with cache_control as Anthropic does: the requests carry the marks, the server serves cache reads, and the summary's
cost is the server's own tokens at the input, cache-read, cache-write and output list prices, below what the same
tokens cost uncached; with `prompt_cache = false` nothing is marked and the uncached price is paid. An OpenAI-format
teacher sends a prompt_cache_key, one per reference for the calls of one step."""

from __future__ import annotations

import re

import pytest
from conftest import long_seeds, run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.config.lm import price_of
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.estimate import estimate

HAIKU = "'anthropic/claude-haiku-4-5'"


def anthropic_run(srv, tmp_path, name: str, **extra) -> tuple[dict, object]:
    sets = {
        "teacher.model": HAIKU,
        "teacher.api_base": f"'{srv.api_base.removesuffix('/v1')}'",
        "seeds.source": f"'{long_seeds(tmp_path)}'",
        "seeds.limit": 4,
        "synthesis.instructions_per_feature": 2,
        **extra,
    }
    config = load_config(None, run_overrides(srv, tmp_path / name, 8, **sets))
    return synthesize(config), config


def served(srv) -> list[dict]:
    return [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]


def test_an_anthropic_teacher_marks_its_prompts_and_pays_the_cache_prices(server_factory, tmp_path):
    # the server counts words, not Claude's tokens: its minimum is scaled to that (the client keeps Haiku's own)
    srv = server_factory(marked_cache_min_tokens=300)
    summary, config = anthropic_run(srv, tmp_path, "cached")
    assert summary["status"] == "complete" and summary["samples"] == 8
    log = served(srv)
    assert any(e["cache_marks"] for e in log)  # the server received cache_control
    read = sum(e["cached_tokens"] for e in log)
    written = sum(e.get("cache_write_tokens", 0) for e in log)
    assert read > 0 and written > 0  # and served cache reads
    u = summary["usage"]
    assert (u["calls"], u["prompt_tokens"], u["cached_tokens"], u["cache_write_tokens"]) == (
        len(log),
        sum(e["prompt_tokens"] for e in log),
        read,
        written,
    )
    price = price_of(config.teacher)
    assert (price.input, price.cached_input, price.cache_write, price.output) == (1.0, 0.1, 1.25, 5.0)
    at_list_prices = sum(
        price.cost(e["prompt_tokens"], e["completion_tokens"], e["cached_tokens"], e.get("cache_write_tokens", 0))
        for e in log
    )
    uncached = sum(price.cost(e["prompt_tokens"], e["completion_tokens"]) for e in log)
    assert summary["cost_usd"] == pytest.approx(at_list_prices, rel=1e-9)
    assert summary["cost_usd"] < uncached
    # the report says how much of the prompt came from the cache
    report = build_report(tmp_path / "cached")
    share = report["prompt_cache"]["synthesis"]
    assert share["read_share"] == pytest.approx(read / u["prompt_tokens"], abs=1e-4) and share["read_share"] > 0
    assert "read from the provider's cache" in report.text

    # prompt_cache = false: no mark is sent, nothing is cached, the uncached price is paid
    off = server_factory(marked_cache_min_tokens=300)
    summary, _ = anthropic_run(off, tmp_path, "uncached", **{"teacher.prompt_cache": "false"})
    log = served(off)
    assert summary["samples"] == 8 and log
    assert not any(e["cache_marks"] for e in log) and not any(e["cached_tokens"] for e in log)
    assert summary["usage"]["cached_tokens"] == summary["usage"]["cache_write_tokens"] == 0
    uncached = sum(price.cost(e["prompt_tokens"], e["completion_tokens"]) for e in log)
    assert summary["cost_usd"] == pytest.approx(uncached, rel=1e-9)


_REFERENCE = re.compile(r"\[\[ ## example_instruction ## \]\]\n(.*?)\n\n\[\[ ## example_response", re.S)


def test_an_openai_teacher_sends_one_prompt_cache_key_per_reference(server_factory, tmp_path):
    srv = server_factory(log_prompts=True)
    over = {"seeds.limit": 4, "synthesis.instructions_per_feature": 2}
    synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 8, **over)))
    log = served(srv)
    assert log and all(e["settings"].get("prompt_cache_key", "").startswith("refed-") for e in log)
    keys: dict[str, set[str]] = {}  # the responses' step: reference -> the keys its calls carried
    for e in log:
        if e["outputs"] == ["response"]:
            reference = _REFERENCE.search(e["messages"][-1]["content"]).group(1)
            keys.setdefault(reference, set()).add(e["settings"]["prompt_cache_key"])
    assert len(keys) >= 2 and all(len(k) == 1 for k in keys.values())
    assert len({k for ks in keys.values() for k in ks}) == len(keys)  # another reference, another key

    off = server_factory(log_prompts=True)
    over["teacher.prompt_cache"] = "false"
    synthesize(load_config(None, run_overrides(off, tmp_path / "off", 4, **over)))
    assert served(off) and not any("prompt_cache_key" in e["settings"] for e in served(off))


def test_the_estimate_prices_the_anthropic_cache(tmp_path):
    # Claude's tokenizer counts these: a reference of 3,700 words (about 4,130 tokens) takes the response step's prompt
    # past Haiku 4.5's 4,096 tokens (3,600 did with the longer prompts of format 1; the made-up answers of the walk, as
    # long, stay within a response's 24,000 characters)
    over = [
        f"teacher.model={HAIKU}",
        f"seeds.source='{long_seeds(tmp_path, 8, words=3700)}'",
        "synthesis.size=400",
        f"run.dir='{tmp_path / 'run'}'",
    ]
    cached = estimate(load_config(None, over), walk_refs=2)["total"]
    assert cached["cached_tokens"] > 0 and cached["cache_write_tokens"] > 0
    assert cached["cost_usd"] < cached["uncached_cost_usd"]
    plain = estimate(load_config(None, [*over, "teacher.prompt_cache=false"]), walk_refs=2)["total"]
    assert plain["cached_tokens"] == plain["cache_write_tokens"] == 0 and "uncached_cost_usd" not in plain
    assert plain["cost_usd"] == pytest.approx(cached["uncached_cost_usd"], rel=1e-6)
