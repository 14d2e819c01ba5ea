"""A cost budget reserves a call at its expected output plus a learned margin, not at max_tokens, and is still never
overshot by more than one call (issue 46, item 1): the ledger's arithmetic on its own, then whole runs of a reasoning
teacher (16,000 output tokens a call at worst) against the loopback server's own token counts."""

from __future__ import annotations

import json
import random

import pytest
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.clients.boundary import Prompt, ledger_of, open_on
from refed_dspy.clients.calls import CallInfo, MustWait
from refed_dspy.config import load_config
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.ledger.tickets import BudgetExceeded, ExpectedOutput, OutputStats
from refed_dspy.providers.prices import Price
from refed_dspy.synthesis.api import synthesize

MODEL = "openai/gpt-5-mini"
PRICE = Price(input=1.0, cached_input=0.5, output=10.0)


def test_the_expected_output_is_the_mean_plus_a_learned_margin():
    stats = OutputStats()
    for tokens in (100, 100, 100, 100):
        stats.add(tokens)
    assert stats.reserve(16000) == 150  # no spread seen: half the mean
    for tokens in (100, 900):
        stats.add(tokens)
    assert stats.reserve(16000) > 900 and stats.reserve(500) == 500  # three deviations, capped at max_tokens
    seen = ExpectedOutput()
    assert seen.reserve("teacher", "generate", 16000) is None  # nothing answered: only the worst case is safe
    seen.learn("teacher", "generate", 300)
    assert seen.reserve("teacher", "generate", 16000) == 450 and seen.reserve("teacher", "improve", 16000) == 450
    assert seen.reserve("judge", "judge", 16000) is None


def _answered(tokens: int, prompt: int = 1000) -> CallInfo:
    return CallInfo(stage="generate", model="m", prompt_tokens=prompt, completion_tokens=tokens)


def _list_cost(prompt: int, completion: int) -> float:
    """What a call costs at PRICE's list price ($1 input, $10 output per million tokens), by the test's own count."""
    return (prompt * 1.0 + completion * 10.0) / 1e6


def test_a_call_waits_while_the_worst_case_of_the_calls_in_flight_could_overshoot():
    """One call in flight that may still write 16,000 tokens: a second call waits (MustWait) until it is over, though
    the expected costs of both fit; with nothing in flight, a call whose expected cost does not fit is refused."""
    budget = CallBudget(max_cost_usd=0.165)  # one call at its worst fits ($0.161), and a little more
    first = budget.open_call("teacher", "m", "generate", PRICE, 16000, 1000)
    assert first.cost == pytest.approx(PRICE.cost(1001, 16000)) == first.need  # nothing learned: its worst case
    budget.settle(first, _answered(200), PRICE)
    budget.record([_answered(200)], PRICE, "teacher")
    budget.release_call(first)
    second = budget.open_call("teacher", "m", "generate", PRICE, 16000, 1000)
    assert second.need == pytest.approx(PRICE.cost(1001, 300))  # learned: the expected output plus its margin
    assert second.need < second.cost / 10
    with pytest.raises(MustWait):  # paid + the worst of `second` + its own expected cost would not fit
        budget.open_call("teacher", "m", "generate", PRICE, 16000, 1000)
    budget.settle(second, _answered(250), PRICE)
    budget.record([_answered(250)], PRICE, "teacher")
    budget.release_call(second)
    third = budget.open_call("teacher", "m", "generate", PRICE, 16000, 1000)  # room again
    budget.release_call(third)
    small = CallBudget(max_cost_usd=PRICE.cost(1000, 200) * 2)
    small.outputs.learn("teacher", "generate", 200)
    small.record([_answered(200)], PRICE, "teacher")
    with pytest.raises(BudgetExceeded):  # nothing in flight to wait for: the budget is reached
        small.open_call("teacher", "m", "generate", PRICE, 16000, 1000)


def test_whatever_the_calls_write_the_budget_is_overshot_by_at_most_one_call():
    """Calls opened and settled in a random order, each writing anything from nothing to all of max_tokens (the tail
    a reasoning model has), under budgets of 3 to 20 of the dearest calls: what they paid, priced by the test at the
    list price from the tokens each wrote, never exceeds the budget by more than one call at its worst (the longest
    prompt writing all of max_tokens), and most trials keep several calls in flight at once."""
    rng = random.Random(5)
    longest, max_tokens = 1500, 16000
    worst = _list_cost(longest, max_tokens)  # $0.1615
    several = 0
    for trial in range(200):
        limit = worst * rng.choice([3, 5, 10, 20])
        budget = CallBudget(max_cost_usd=limit)
        in_flight, paid, most_at_once = [], 0.0, 0
        for _ in range(400):
            if in_flight and (rng.random() < 0.5 or len(in_flight) > 12):
                ticket, prompt = in_flight.pop(rng.randrange(len(in_flight)))
                tokens = rng.choice([rng.randint(50, 400), max_tokens - rng.randint(0, 50)])
                budget.settle(ticket, _answered(tokens, prompt), PRICE)
                budget.record([_answered(tokens, prompt)], PRICE, "teacher")
                budget.release_call(ticket)
                paid += _list_cost(prompt, tokens)
                continue
            prompt = rng.randint(200, longest)
            try:
                ticket = budget.open_call("teacher", "m", "generate", PRICE, max_tokens, prompt)
            except MustWait:
                continue
            except BudgetExceeded:
                break
            in_flight.append((ticket, prompt))
            most_at_once = max(most_at_once, len(in_flight))
        for ticket, prompt in in_flight:  # the rest write all they may
            budget.settle(ticket, _answered(max_tokens, prompt), PRICE)
            budget.record([_answered(max_tokens, prompt)], PRICE, "teacher")
            paid += _list_cost(prompt, max_tokens)
        assert paid <= limit + worst + 1e-9, (trial, paid, limit, worst)
        assert budget.total_cost == pytest.approx(paid)
        several += most_at_once >= 3
    assert several >= 150, several  # the ledger was tested with calls in flight, not one at a time


def _reasoning_run(server, run, size: int, budget: float, concurrency: int, **extra) -> list[str]:
    return run_overrides(
        server,
        run,
        size,
        **{
            "teacher.model": f"'{MODEL}'",
            "synthesis.max_cost_usd": budget,
            "synthesis.concurrency": concurrency,
            **extra,
        },
    )


def _at_list_price(prompt: int, completion: int, cached: int = 0) -> float:
    """gpt-5-mini's list price: $0.25 input, $0.025 cached input, $2 output per million tokens."""
    return ((prompt - cached) * 0.25 + cached * 0.025 + completion * 2.0) / 1e6


def _served_cost(server) -> tuple[float, float]:
    """What the server's own token counts cost at gpt-5-mini's list price, and the dearest call it could have made
    (its prompt writing all of max_tokens)."""
    log = [e for e in read_log(server.cfg.log_path) if e.get("status") == 200]
    spent = sum(_at_list_price(e["prompt_tokens"], e["completion_tokens"], e.get("cached_tokens", 0)) for e in log)
    return spent, max(_at_list_price(e["prompt_tokens"], 16000) for e in log)


def test_a_small_budget_starts_a_reasoning_teacher(server_factory, tmp_path):
    """gpt-5-mini at 16,000 output tokens a call: a task of 4 calls was reserved at $0.13, so a budget of $0.05 started
    nothing. Reserved at the expected output once a call has answered (the first call at its worst case, said in the
    summary), the run makes samples and stays within the budget by the server's own count."""
    srv = server_factory()
    run = tmp_path / "run"
    summary = synthesize(load_config(None, _reasoning_run(srv, run, 30, 0.05, 4, **{"teacher.max_tokens": 16000})))
    spent, _worst = _served_cost(srv)
    assert summary["status"] == "budget" and summary["samples"] >= 5, summary.get("budget_stop")
    assert spent <= 0.05 and summary["cost_usd"] == pytest.approx(spent, rel=1e-9)
    assert summary["budget_first_call"].startswith(
        "$0.0325 (teacher: a prompt of 2,000 tokens writing all of max_tokens"
    )


def test_a_reasoning_tail_never_overshoots_the_budget_by_more_than_one_call(server_factory, tmp_path):
    """A fifth of the calls reason up to their output limit (the dearest a call can be and still answer), 8 in flight:
    the server's own tokens at list price exceed max_cost_usd by at most one call's worst case."""
    srv = server_factory(reasoning_tail=0.2, seed=3)
    run = tmp_path / "run"
    summary = synthesize(load_config(None, _reasoning_run(srv, run, 60, 0.15, 8)))
    spent, worst = _served_cost(srv)
    assert summary["status"] == "budget" and summary["usage"]["calls"] > 4
    assert spent <= 0.15 + worst, (spent, worst)
    assert summary["cost_usd"] == pytest.approx(spent, rel=1e-9)
    assert json.loads((run / "summary.json").read_text())["budget_stop"].startswith("the cost budget of $0.15")


def test_an_lm_that_sends_no_output_limit_is_held_at_the_model_s_own():
    """A user's dspy.LM("openai/gpt-5-mini") sends no limit (DSPy's default for a reasoning model): its worst case is
    the model's own largest output by LiteLLM's table (128,000), not a reply of no tokens at all."""
    import dspy

    from refed_dspy.clients.boundary import max_tokens_of
    from refed_dspy.clients.lm import bounded

    assert max_tokens_of(bounded(dspy.LM(MODEL, api_key="unused"), "teacher")) == 128_000
    lm = bounded(dspy.LM("openai/gpt-4o-mini", api_key="unused", max_tokens=900), "teacher")
    assert max_tokens_of(lm) == 900


def test_without_a_cost_budget_a_logged_request_is_held_at_its_counted_prompt_filling_max_tokens(tmp_path):
    """The write-ahead log's bound for a request is what a kill charges it at: without a cost budget too, it is the
    request's own prompt, counted, and max_tokens of output, not the mean of the role's calls so far (cheap ones here)."""
    budget = CallBudget(max_calls=None, max_cost_usd=None)
    budget.log = CallLog.open(tmp_path / "ledger.jsonl")
    for _ in range(5):
        budget.record([_answered(20, prompt=100)], PRICE, "teacher")
    lm = type("LM", (), {"budget": budget, "price": PRICE, "role": "teacher", "model": MODEL})()
    lm.kwargs = {"max_tokens": 4000}
    long_prompt = [{"role": "user", "content": "a long reference text " * 3000}]
    ledger, prompt = ledger_of(lm, (), {"messages": long_prompt})
    assert prompt is not None and prompt.tokens > 10_000
    _, ticket = open_on(lm, ledger, prompt, "improve", None)
    assert ticket.cost >= _list_cost(prompt.tokens, 4000) > 10 * _list_cost(100, 20)
    budget.log.close()
    sent = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines() if '"s"' in x]
    assert sent[-1]["b"] == pytest.approx(ticket.cost)


def test_without_a_cost_budget_an_engine_task_s_request_is_logged_at_its_counted_prompt(tmp_path):
    """The same for a request of the engine's work (a synthesis's, a judging's): its task's ledger holds the run's
    log (the budget does not), and counted its prompts only under a cost budget, so a call cut off by a kill was
    charged at the role's mean (the attacker's resumed run went 43% past a cost cap set on resume)."""
    from refed_dspy.ledger.tickets import TaskLedger

    budget = CallBudget(max_calls=None, max_cost_usd=None)
    for _ in range(5):
        budget.record([_answered(20, prompt=100)], PRICE, "teacher")
    log = CallLog.open(tmp_path / "ledger.jsonl")
    task = TaskLedger(budget, PRICE, 4000, "teacher", log, budget.call_cost(PRICE, 4000, "teacher"))
    lm = type("LM", (), {"budget": None, "price": PRICE, "role": "teacher", "model": MODEL})()
    lm.kwargs = {"max_tokens": 4000}
    assert task.counts_prompts
    _, ticket = open_on(lm, task, Prompt(20_000, None), "improve", None)
    assert ticket.cost >= _list_cost(20_000, 4000)
    log.close()
    sent = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines() if '"s"' in x]
    assert sent[-1]["b"] == pytest.approx(ticket.cost)


def test_a_call_lost_with_a_ray_worker_counts_at_the_worst_case_its_piece_was_held_at():
    # an attacker killed a Ray worker as the replies grew: its calls in flight were counted at the dearest call seen
    # so far ($0.0024 each) while the provider billed the long replies ($0.021-0.029 each): the ledger 11% short
    from refed_dspy.engine.execution import TaskAccounts
    from refed_dspy.providers.prices import Price

    price = Price(2.5, 1.25, 10.0)
    budget = CallBudget(None, 1.0)
    budget.record([CallInfo("generate", "m", 500, 20)], price, "teacher")  # a short reply seen first
    accounts = TaskAccounts({"sample": 2}, price, 4000, "teacher", budget)
    accounts.log_tasks = True  # its calls are made on Ray workers
    task = accounts.reserve("sample", 1, None, final=True)
    task.calls.append(CallInfo("generate", "m", interrupted=True, lost_with="its Ray worker"))
    accounts.release(task)
    usage = accounts.account(task)
    worst = price.bound(2000, 4000)
    assert task.calls[0].cost_bound_usd == pytest.approx(worst)
    assert usage["interrupted_cost_usd"] == pytest.approx(worst)


def test_a_batch_request_is_held_at_its_own_bound_and_one_already_sent_whatever_the_room():
    # a piece of work in batch mode is held before its requests are built; each request is weighed at its bound as it
    # joins a batch: a long one is refused when the budget cannot hold it now (nothing sent; its piece runs again,
    # held at that bound), while one an earlier invocation's batch holds already (it may be billed whatever happens)
    # is held whatever the room
    from refed_dspy.clients.calls import HeldShort
    from refed_dspy.engine.execution import TaskAccounts
    from refed_dspy.providers.prices import Price

    price = Price(2.5, 1.25, 10.0)
    budget = CallBudget(None, 0.05)
    accounts = TaskAccounts({"sample": 2}, price, 1000, "teacher", budget, own_record=True)
    task = accounts.reserve("sample", 1, None, final=True)
    held = budget.reserved_cost
    assert held == pytest.approx(2 * price.bound(2000, 1000))
    accounts.hold(task, 0.01)  # within what the piece holds: nothing more reserved
    assert budget.reserved_cost == pytest.approx(held)
    with pytest.raises(HeldShort) as refused:  # a long prompt: more than the budget has room for now
        accounts.hold(task, 0.045)
    assert refused.value.bound == 0.045 and budget.tripped is None  # the piece runs again when there is room
    assert budget.reserved_cost == pytest.approx(held) and task.asked == pytest.approx(0.01)
    accounts.hold(task, 0.045, sent=True)  # already in a batch at the provider: held all the same
    assert budget.reserved_cost == pytest.approx(0.055)
    accounts.release(task)
    assert budget.reserved_cost == pytest.approx(0.0)
