"""An experiment's spending by part (`spent.json`): a part that pays call by call writes each request to its log
before it is sent, so a kill loses nothing of what it paid; a resumed experiment starts its ledger from the file and
the logs of the parts it killed."""

from __future__ import annotations

import json

import pytest

from refed_dspy.clients.calls import CallInfo
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.spend import Spend
from refed_dspy.providers.prices import Price

PRICE = Price(input=1.0, cached_input=0.5, output=2.0)  # USD per 1M tokens: 2e-4 a call below


def _call(n: int = 1) -> list[CallInfo]:
    return [CallInfo(stage="s", model="m", prompt_tokens=100, completion_tokens=50) for _ in range(n)]


def _pay(budget: CallBudget, n: int, role: str, answered: bool = True) -> None:
    """`n` calls through `budget` as the call boundary makes them: opened (written to the log), settled, recorded;
    `answered=False`: still in flight."""
    for info in _call(n):
        ticket = budget.open_call(role, "m", "s", PRICE, 50, None)
        if answered:
            budget.settle(ticket, info, PRICE)
            budget.record([info], PRICE, role)
            budget.release_call(ticket)


def _on_file(path, key: str = "parts") -> dict:
    return json.loads(path.read_text()).get(key, {})


def test_a_live_part_is_on_file_after_every_call_and_added_once_at_the_end(tmp_path):
    path = tmp_path / "spent.json"
    spend = Spend(path, CallBudget())
    spend.add("cell:a:optimize", {"calls": 4, "cost_usd": 0.001})
    with spend.live("cell:a:optimize", CallBudget(max_calls=100)) as budget:
        _pay(budget, 1, "teacher")
        assert _on_file(path, "live")["cell:a:optimize"]["calls"] == 1  # this attempt's call, shown while it runs
        _pay(budget, 2, "judge")
        assert _on_file(path, "live")["cell:a:optimize"]["calls"] == 3
        assert _on_file(path)["cell:a:optimize"]["calls"] == 4  # counted: an earlier attempt's 4
        assert spend.ledger.total_calls == 4  # the experiment's ledger takes the attempt's figure once, at its end
    # by role where the attempt said (the earlier attempt's 4 calls did not)
    assert _on_file(path)["cell:a:optimize"] == {
        "calls": 7,
        "cost_usd": pytest.approx(0.001 + 3 * 2e-4),
        "by_role": {"judge": {"calls": 2}, "teacher": {"calls": 1}},
    }
    assert _on_file(path, "live") == {}
    assert spend.part("cell:a:optimize")["by_role"] == {"judge": {"calls": 2}, "teacher": {"calls": 1}}
    assert spend.ledger.total_calls == 7
    budget.record(_call(), PRICE, "teacher")  # no longer watched
    assert _on_file(path)["cell:a:optimize"]["calls"] == 7
    assert Spend(path, CallBudget()).ledger.total_calls == 7  # a clean end leaves nothing more to count


def test_what_a_killed_part_paid_is_counted_when_the_experiment_resumes(tmp_path):
    path = tmp_path / "spent.json"
    spend = Spend(path, CallBudget())
    watched = spend.live("cell:b:test", CallBudget())
    budget = watched.__enter__()
    _pay(budget, 3, "judge")
    _pay(budget, 1, "judge", answered=False)  # in flight when the process dies
    # the process dies here: the context never exits; the next invocation reads the file and the part's log
    resumed = Spend(path, CallBudget(max_calls=10))
    assert resumed.ledger.total_calls == 4
    assert resumed.of("cell:b") == {
        "calls": 4,
        "cost_usd": pytest.approx(6e-4),
        "interrupted_cost_usd": pytest.approx(2e-4),  # the call in flight, at what it was reserved (the dearest seen)
    }
    assert Spend(path, CallBudget()).ledger.total_calls == 4  # counted once


def test_a_failing_attempt_still_adds_what_it_paid(tmp_path):
    spend = Spend(tmp_path / "spent.json", CallBudget())
    with pytest.raises(RuntimeError), spend.live("cell:c:optimize", CallBudget()) as budget:
        budget.record(_call(2), PRICE, "teacher")
        raise RuntimeError("the provider went away")
    assert spend.of("cell:c")["calls"] == 2 and spend.ledger.total_calls == 2


def test_calls_cut_off_in_a_part_are_kept_against_the_experiments_cost_budget(tmp_path):
    """A part whose calls all timed out paid $0 in known cost but up to a bound: the experiment keeps that bound (on
    file, on resume, and in what the next part is left), so its cost budget cannot be handed out again."""
    from refed_dspy.experiments.spend import BudgetStop, left_to_spend

    path = tmp_path / "spent.json"
    spend = Spend(path, CallBudget(max_cost_usd=0.01))
    part = CallBudget()
    part.call_cost(PRICE, 1000, "teacher")  # one call reserved at 2000 x $1 + 1000 x $2 per 1M: $0.004
    with spend.live("check:s", part) as budget:
        budget.record([CallInfo(stage="s", model="m", interrupted=True)] * 2, PRICE, "teacher")
    assert _on_file(path)["check:s"]["interrupted_cost_usd"] == pytest.approx(0.008)
    assert left_to_spend(spend.ledger)[1] == pytest.approx(0.002)
    resumed = Spend(path, CallBudget(max_cost_usd=0.008))
    with pytest.raises(BudgetStop, match=r"up to \$0.0080 of it in calls cut off"):
        left_to_spend(resumed.ledger, "the next cell")
    # a run-dir part reporting its whole usage again moves the bound by the difference only
    spend.set_total("synth:x", {"calls": 1, "cost_usd": 0.0, "interrupted_cost_usd": 0.001}, "teacher")
    spend.set_total("synth:x", {"calls": 1, "cost_usd": 0.0, "interrupted_cost_usd": 0.001}, "teacher")
    assert spend.ledger.totals.cost_bound == pytest.approx(0.009)


def test_the_tables_say_up_to_what_calls_of_unknown_tokens_can_have_cost():
    """A cell whose optimization had a call in flight at a kill (counted as paid at its bound, $0.0027): its row and
    the experiment's total say what was spent and up to what (before, $0.0487 against $0.0514 billed, no "up to")."""
    from refed_dspy.experiments.outputs import ExperimentResult, experiment_markdown, leaderboard_rows

    row = {
        "id": "c1",
        "label": "optimizer=bootstrap",
        "status": "done",
        "optimize_usage": {"calls": 40, "cost_usd": 0.0387, "interrupted_cost_usd": 0.0027},
        "eval_usage": {"calls": 10, "cost_usd": 0.01},
    }
    result = ExperimentResult.model_validate(
        {
            "name": "e",
            "status": "complete",
            "out": "x",
            "split": {"train": 1, "val": 1, "test": 1},
            "examples": {"train": 1, "val": 1, "test": 5},
            "level": 0.95,
            "cell_level": 0.95,
            "detectable": 0.3,
            "underpowered": True,
            "cells": [row],
            "baselines": [],
            "champion": None,
            "estimate": {},
            "usage": {"calls": 50, "cost_usd": 0.0487, "interrupted_cost_usd": 0.0027},
            "wall_s": 1.0,
            "finished_at": "now",
        }
    )
    table = leaderboard_rows(result)[0]
    assert table[6] == "$0.0387 (up to $0.0414)" and table[8] == "$0.0100"
    assert "Total: 50 LM calls, $0.0487 (up to $0.0514)." in experiment_markdown(result)
