"""The batch kill matrix: a run killed (SIGKILL) in each wave of its dependent stages, at each point of a batch's
life, on OpenAI's and Anthropic's batch APIs, with expiries and faults, then resumed.

The loopback provider is the referee. Every line it answered is in its log with the request's body hash and tokens:
no request body is answered twice, and the summary's calls, tokens and cost are what it answered and would bill."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from loopback_server import LoopbackServer, ServerConfig, read_log
from test_batch import FAST, _cli, _set, assert_no_custom_id_twice, assert_none_lost, batch_overrides, samples_of

from refed_dspy.clients.lm import price_of
from refed_dspy.config import load_config

ANTHROPIC = {"teacher.model": "'anthropic/claude-haiku-4-5'"}


def billed(log: list[dict]) -> dict[str, int]:
    """What the provider answered as a batch line and bills: its successful lines, their tokens."""
    ok = [e for e in log if e.get("custom_id") and e.get("status") == 200]
    return {
        "calls": len(ok),
        "prompt_tokens": sum(e["prompt_tokens"] for e in ok),
        "completion_tokens": sum(e["completion_tokens"] for e in ok),
        "cached_tokens": sum(e["cached_tokens"] for e in ok),
    }


def assert_paid_once_and_reported(run: Path, log: list[dict], over: list[str]) -> dict:
    """No request body answered twice; the summary's calls, tokens and cost equal what the provider answered."""
    answered = Counter(e["sha"] for e in log if e.get("custom_id") and e.get("status") == 200)
    twice = [sha for sha, n in answered.items() if n > 1]
    assert not twice, f"{len(twice)} request bodies answered more than once"
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)
    summary = json.loads((run / "summary.json").read_text())
    usage = summary["usage"]
    truth = billed(log)
    assert {k: usage[k] for k in truth} == truth
    spec = load_config(None, over).teacher
    price = price_of(spec, batch=True)
    cost = price.cost(truth["prompt_tokens"], truth["completion_tokens"], truth["cached_tokens"])
    assert summary["cost_usd"] == pytest.approx(cost, rel=1e-9, abs=1e-9)
    return summary


def kill_and_resume(tmp_path: Path, crash: str, extra: dict, server_extra: dict | None = None) -> None:
    with LoopbackServer(
        ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra={**FAST, **(server_extra or {})})
    ) as srv:
        run = tmp_path / "run"
        over = batch_overrides(srv, run, 8, **extra)
        args = ["synthesize", *_set(over)]
        killed = _cli(args, {"REFED_CRASH_AT": crash})
        assert killed.returncode == -9, (crash, killed.stderr[-2000:])
        done = _cli(args)
        assert done.returncode == 0, done.stderr[-2000:]
    assert len(samples_of(run)) == 8
    assert_paid_once_and_reported(run, read_log(tmp_path / "log.jsonl"), over)


# each wave of the refed method (feedback -> instructions -> a draft -> its improvement): the batch is open at the
# provider when the run dies, so the resumed run must find it, use its answers and ask nothing of it again
# (Anthropic's waves differ from OpenAI's only in the API's calls, which the first and last wave exercise)
@pytest.mark.parametrize(
    "api, wave",
    [
        *(("openai", w) for w in ("feedback", "synthesize", "generate", "improve")),
        ("anthropic", "feedback"),
        ("anthropic", "improve"),
    ],
)
def test_killed_while_a_wave_is_open_pays_nothing_twice(tmp_path, api, wave):
    kill_and_resume(tmp_path, f"while_polling@{wave}:1", ANTHROPIC if api == "anthropic" else {})


# the second call of a two-call task at the points of its batch's life where the provider holds something, with
# expiries and failing lines (before the upload nothing is there: test_batch.py's kill test covers that point)
@pytest.mark.parametrize("point", ["after_upload", "after_create", "while_writing_results"])
def test_killed_in_the_second_call_of_a_task_with_faults(tmp_path, point):
    faults = {"batch_expire_every": 3, "batch_line_error_rate": 0.08, "batch_fail_every": 4}
    kill_and_resume(tmp_path, f"{point}@improve:1", {}, faults)


def test_anthropic_killed_in_the_second_call_with_expiries(tmp_path):
    faults = {"batch_expire_every": 2, "batch_line_error_rate": 0.08}
    kill_and_resume(tmp_path, "after_create@improve:1", ANTHROPIC, faults)


def test_an_uninterrupted_batch_run_reports_what_the_provider_billed(tmp_path):
    """The reference point of the matrix: with no kill, the records' figures are the provider's."""
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        over = batch_overrides(srv, run, 8, **ANTHROPIC)
        done = _cli(["synthesize", *_set(over)])
        assert done.returncode == 0, done.stderr[-2000:]
    assert_paid_once_and_reported(run, read_log(tmp_path / "log.jsonl"), over)


def test_a_cost_budget_holds_across_seven_kills_each_just_after_a_submit(tmp_path):
    """Batch mode under `max_cost_usd = 0.02`, killed 7 times, each just after it created a batch at the provider
    (which answers and bills it whatever happens to the run): three times at the first batch of an invocation, four
    times as the improvements go out (the drafts answered, their work cut off), then run to its end. What the provider
    billed stays within the budget and one call, and the summary says what it billed: answers paid but cut off by a
    kill, and the requests of batches a killed invocation left open, are charged to the budget (before: $0.0231 and
    $0.0252 billed in two runs, the summary $0.0047 short in the one that stopped at the budget)."""
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        over = batch_overrides(srv, run, 100, **{"synthesis.max_cost_usd": 0.02})
        args = ["synthesize", *_set(over)]
        killed = [
            _cli(args, {"REFED_CRASH_AT": crash}) for crash in ["after_create:1"] * 3 + ["after_create@improve:1"] * 4
        ]
        done = _cli(args)
        assert done.returncode in (0, 1), done.stderr[-2000:]
    log = read_log(tmp_path / "log.jsonl")
    price = price_of(load_config(None, over).teacher, batch=True)
    lines = [e for e in log if e.get("custom_id") and e.get("status") == 200]
    costs = [price.cost(e["prompt_tokens"], e["completion_tokens"], e["cached_tokens"]) for e in lines]
    assert sum(costs) <= 0.02 + max(costs)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["usage"]["calls"] >= len(lines)
    assert summary["cost_usd"] == pytest.approx(sum(costs), rel=1e-9, abs=1e-9)
    assert [k.returncode for k in killed] == [-9] * 7, killed[-1].stderr[-2000:]  # each invocation was killed
