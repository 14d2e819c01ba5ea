"""`refed judge meta-eval` from Python on the loopback server: it goes through the launch path like every LM-bound
command (a user's LM behind the call boundary, the engine retrying the work and the LM retrying nothing), and what
it reports of its calls is what the server saw."""

from __future__ import annotations

import json
import uuid

import dspy
import pytest
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import FinishedShort
from refed_dspy.quality.meta_eval import meta_eval

LABELS = [
    {"id": "p1", "instruction": "Name a prime number.", "response_a": "7", "response_b": "8", "preference": "a"},
    {"id": "l1", "instruction": "Say hello.", "response": "Hello!", "score": 4, "scale": [1, 5]},
]


def _labels(tmp_path, items=LABELS):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def _config(srv, **extra):
    sets = [
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        "judge.model='openai/loopback-judge'",
        "run.progress=false",
        *[f"{k}={v}" for k, v in extra.items()],
    ]
    return load_config(None, sets)


def test_meta_eval_counts_what_the_server_saw(server_factory, tmp_path):
    srv = server_factory()
    result = meta_eval(_config(srv), _labels(tmp_path))
    assert result.failed == 0 and {r["id"] for r in result.item_results} == {"p1", "l1"}
    served = read_log(srv.cfg.log_path)
    assert result.usage["calls"] == len(served) == 3  # the pair in both orders, the likert item once
    assert result.usage["prompt_tokens"] == sum(e["prompt_tokens"] for e in served)


def test_a_users_lm_is_retried_by_the_engine_once_per_attempt(server_factory, tmp_path):
    """A user's dspy.LM with num_retries=3 on a server that answers 500 every time: its num_retries become the
    engine's retries of the work (the judging records the LM it was given), one request an attempt: 4 requests, not
    4 inside each of 4 attempts."""
    srv = server_factory(fail_status=500)
    lm = dspy.LM("openai/loopback-judge", api_base=srv.api_base, api_key="unused", num_retries=3, cache=False)
    config = _config(srv, **{"judging.max_consecutive_failures": 100})
    with pytest.raises(FinishedShort):
        meta_eval(config, _labels(tmp_path, LABELS[1:]), judge=lm)
    assert len(read_log(srv.cfg.log_path)) == 4


def test_meta_eval_runs_here_whatever_ray_and_the_mode_say(server_factory, tmp_path):
    """No run dir: meta-eval runs online in this process even when the config asks for Ray and batch judging."""
    srv = server_factory()
    config = _config(srv, **{"ray.enabled": "true", "ray.address": "'127.0.0.1:1'", "judging.mode": "'batch'"})
    result = meta_eval(config, _labels(tmp_path))
    assert result.failed == 0 and len(read_log(srv.cfg.log_path)) == 3


def test_a_meta_eval_its_budget_stopped_short_says_so_and_exits_1(server_factory, tmp_path):
    """[judging] max_calls stopping the judge before every label item is judged: the figures are of the items judged,
    `unjudged` counts the rest, and the command says so in one line and exits 1 (not 0, as if it were whole)."""
    from cli_helpers import run_refed

    srv = server_factory()
    items = [LABELS[0], *({**LABELS[1], "id": f"l{i}", "response": f"Hello, {i}!"} for i in range(1, 16))]
    sets = [
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        f"judge.model='openai/loopback-{uuid.uuid4().hex[:8]}'",  # its own: DSPy's cache answers none of it
        "run.progress=false",
        "judging.max_calls=8",
    ]
    out_path = tmp_path / "meta.json"
    code, out, err = run_refed(
        "judge", "meta-eval", "--labels", str(_labels(tmp_path, items)), "--out", str(out_path),
        *[part for s in sets for part in ("--set", s)],
    )  # fmt: skip
    assert code == 1 and out_path.exists(), out + err
    result = json.loads(out_path.read_text())
    assert result["unjudged"] == len(items) - len(result["items"]) > 0
    assert len(read_log(srv.cfg.log_path)) <= 8
    assert "not judged" in out and "stopped at [judging] max_calls" in err, out + err
