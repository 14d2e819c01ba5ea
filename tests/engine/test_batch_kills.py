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


# list prices per million tokens (input, cached input, output); a batch is billed at half of them
LIST_PRICES = {"openai/gpt-4o-mini": (0.15, 0.075, 0.6), "anthropic/claude-haiku-4-5": (1.0, 0.1, 5.0)}
LIST_PRICES["openai/our-own-teacher"] = (0.15, 0.15, 0.6)  # priced by the config: a model of no o200k family


def at_batch_list_price(model: str, tokens: dict[str, int]) -> float:
    """What the provider bills for `tokens` answered in batches, by the model's list price."""
    uncached, cached, output = LIST_PRICES[model]
    prompt, read = tokens["prompt_tokens"], tokens["cached_tokens"]
    return ((prompt - read) * uncached + read * cached + tokens["completion_tokens"] * output) / 1e6 / 2


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
    cost = at_batch_list_price(load_config(None, over).teacher.model, truth)
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
    model = load_config(None, over).teacher.model
    lines = [e for e in log if e.get("custom_id") and e.get("status") == 200]
    costs = [at_batch_list_price(model, e) for e in lines]
    assert sum(costs) <= 0.02 + max(costs)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["usage"]["calls"] >= len(lines)
    assert summary["cost_usd"] == pytest.approx(sum(costs), rel=1e-9, abs=1e-9)
    assert [k.returncode for k in killed] == [-9] * 7, killed[-1].stderr[-2000:]  # each invocation was killed


def test_a_cost_budget_holds_when_replies_grow_mid_run(tmp_path):
    """Batch mode under `max_cost_usd`, the server's replies 100x longer once 12 batch lines are answered: what the
    provider billed stays within the budget. Each piece of work was reserved at what the calls seen had cost, and no
    request of a batch was weighed against the budget: an attacker's run billed 5x its budget. Now a
    piece of work no boundary here gates is held at its worst case (every call writing all of max_tokens)."""
    import threading
    import time

    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), words_per_text=20, extra=FAST)) as srv:
        over = batch_overrides(
            srv,
            tmp_path / "run",
            60,
            **{"synthesis.max_cost_usd": 0.015, "teacher.max_tokens": 6000, "seeds.limit": 10},
        )

        def answered() -> list[dict]:
            return [e for e in read_log(tmp_path / "log.jsonl") if e.get("custom_id") and e.get("status") == 200]

        def grow() -> None:
            while len(answered()) < 12:
                time.sleep(0.02)
            srv.cfg.words_per_text = 2000

        threading.Thread(target=grow, daemon=True).start()
        done = _cli(["synthesize", *_set(over)])
        assert done.returncode in (0, 1), done.stderr[-2000:]
    model = load_config(None, over).teacher.model
    costs = [at_batch_list_price(model, e) for e in answered()]
    assert len(costs) > 12 and max(costs) > 10 * min(costs)  # the replies grew while the run went on
    assert sum(costs) <= 0.015, (sum(costs), len(costs))


def long_references_billed(tmp_path, word: str, words: int, refs: int, budget: float, **server) -> list[float]:
    """A batch run of `refs` references of `words` copies of `word` under `max_cost_usd = budget` (and the config
    overrides `server` names under `set`): what the provider billed for each answered request, by its list price."""
    text = " ".join([word] * words)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(json.dumps({"instruction": f"Say {i} things.", "response": f"{i} {text}"}) + "\n" for i in range(refs))
    )
    extra = {"synthesis.max_cost_usd": budget, "teacher.max_tokens": 300, "seeds.source": f"'{seeds}'"}
    extra |= {"seeds.limit": refs, **server.pop("set", {})}
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST, **server)) as srv:
        over = batch_overrides(srv, tmp_path / "run", 40, **extra)
        done = _cli(["synthesize", *_set(over)])
        assert done.returncode in (0, 1), done.stderr[-2000:]
    model = load_config(None, over).teacher.model
    answered = [e for e in read_log(tmp_path / "log.jsonl") if e.get("custom_id") and e.get("status") == 200]
    return [at_batch_list_price(model, e) for e in answered]


def test_a_cost_budget_holds_when_the_references_are_long(tmp_path):
    """Batch mode under `max_cost_usd` with references of 8,000 words: a piece of work no boundary here gates is held
    at a prompt its role is assumed to send (2,000 tokens), and a reviewer's run with long references billed $0.0055
    of a $0.004 budget. Each request is weighed at its own bound (its counted body, all of its max_tokens) before it
    joins a batch: what the provider billed stays within the budget."""
    costs = long_references_billed(tmp_path, "lorem", 8000, 4, 0.004)
    assert costs and max(costs) > 0.0005  # the long references reached the provider
    assert sum(costs) <= 0.004, (sum(costs), len(costs))


def test_a_cost_budget_holds_when_the_provider_counts_three_times_our_tokens(tmp_path):
    """A reviewer's batch run under $0.004 billed $0.0074: long references a provider counts at three tokens a word
    where refed counts one (the loopback's chars4 tokenizer on "information"), all sent in the first wave, before any
    answer told refed the provider's count. A model whose provider does not count as refed does (not of OpenAI's o200k
    family) has each request of a first wave weighed at its UTF-8 bytes, which no byte-level tokenizer exceeds, and the
    later ones raised by the count the answers taught: eight references of 4,000 words under $0.012 (billed $0.0152
    before), what the provider billed stays within it."""
    priced = {"teacher.input_usd_per_mtok": 0.15, "teacher.output_usd_per_mtok": 0.6}
    own = {"teacher.model": "'openai/our-own-teacher'", **priced}
    costs = long_references_billed(tmp_path, "information", 4000, 8, 0.012, tokenizer="chars4", set=own)
    assert costs and max(costs) > 0.0008  # the long references reached the provider, at three times our count
    assert sum(costs) <= 0.012, (sum(costs), len(costs))
