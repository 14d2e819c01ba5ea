"""An optimization's LMs ask their provider to cache the repeated part of each prompt as a run's do (issue 46, item 3):
an `anthropic/claude-haiku-4-5` teacher built by optimize marks its prompts with cache_control and is served cache
reads by the loopback server's Messages endpoint, which caches as Anthropic does; with `teacher.prompt_cache = false`
nothing is marked."""

from __future__ import annotations

import json

from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.optimization.run import optimize

WORDS = [
    "weigh",
    "each",
    "option",
    "against",
    "the",
    "cost",
    "of",
    "running",
    "it",
    "for",
    "a",
    "year",
    "and",
    "say",
    "which",
    "one",
    "you",
    "would",
    "pick",
]


def long_seeds(tmp_path, n: int = 6, words: int = 900) -> str:
    """`n` references whose answers are long enough that the prefix up to each one is cached (the server's minimum
    is set to 300 of its tokens below)."""
    path = tmp_path / "seeds.jsonl"
    rows = [
        {
            "instruction": f"Question {i}: which storage layout suits workload {i}?",
            "response": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words)),
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def optimize_with_haiku(srv, tmp_path, name: str, **extra) -> list[dict]:
    overrides = run_overrides(srv, tmp_path / name, 6) + [
        "teacher.model='anthropic/claude-haiku-4-5'",
        f"teacher.api_base='{srv.api_base.removesuffix('/v1')}'",
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        f"seeds.source='{long_seeds(tmp_path)}'",
        "optimize.optimizer='bootstrap'",
        "optimize.n_train=3",
        "optimize.n_val=2",
        "optimize.num_threads=2",
        "judging.criteria=['helpfulness']",
    ]
    optimize(load_config(None, overrides + [f"{k}={v}" for k, v in extra.items()]))
    return [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200 and e.get("anthropic_version")]


def test_an_optimizers_anthropic_teacher_marks_its_prompts(server_factory, tmp_path):
    srv = server_factory(marked_cache_min_tokens=300)
    teacher = optimize_with_haiku(srv, tmp_path, "cached")
    assert teacher and any(e["cache_marks"] for e in teacher)  # the server received cache_control
    assert sum(e["cached_tokens"] for e in teacher) > 0  # and served cache reads

    off = server_factory(marked_cache_min_tokens=300)
    teacher = optimize_with_haiku(off, tmp_path, "uncached", **{"teacher.prompt_cache": "false"})
    assert teacher and not any(e["cache_marks"] for e in teacher)
    assert not any(e["cached_tokens"] for e in teacher)
