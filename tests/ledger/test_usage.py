"""Usage arithmetic: what the records hold, raised to what a batch provider answered."""

from __future__ import annotations

import pytest

from refed_dspy.launch.batch.store import tokens_of
from refed_dspy.ledger.usage import with_unrecorded
from refed_dspy.providers.prices import Price

PRICE = Price(input=1.0, cached_input=0.5, output=2.0)


def recorded(calls: int, prompt: int, completion: int) -> dict:
    bucket = {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": 0}
    bucket["cost_usd"] = PRICE.cost(prompt, completion)
    return {**bucket, "cached_calls": 3, "by_stage": {"generate": dict(bucket)}}


def test_answers_in_no_record_are_added_to_their_stage_and_said_apart():
    usage = recorded(2, 100, 40)
    answered = {
        "generate": {"calls": 2, "prompt_tokens": 100, "completion_tokens": 40, "cached_tokens": 0},
        "improve": {"calls": 1, "prompt_tokens": 70, "completion_tokens": 30, "cached_tokens": 0},
    }
    out = with_unrecorded(usage, answered, PRICE)
    assert out["calls"] == 3 and out["prompt_tokens"] == 170 and out["completion_tokens"] == 70
    assert out["cost_usd"] == pytest.approx(PRICE.cost(170, 70))
    assert out["by_stage"]["improve"]["calls"] == 1 and out["by_stage"]["generate"]["calls"] == 2
    assert out["unrecorded"] == {**answered["improve"], "cost_usd": pytest.approx(PRICE.cost(70, 30))}
    assert out["cached_calls"] == 3  # what only the records know is kept
    assert usage["calls"] == 2 and "improve" not in usage["by_stage"]  # the records' figures are not changed


def test_nothing_unrecorded_changes_nothing():
    usage = recorded(2, 100, 40)
    same = {"generate": {"calls": 2, "prompt_tokens": 100, "completion_tokens": 40, "cached_tokens": 0}}
    out = with_unrecorded(usage, same, PRICE)
    assert out == usage and "unrecorded" not in out


def test_an_unknown_price_stays_unknown():
    usage = {**recorded(1, 10, 10), "cost_usd": None}
    out = with_unrecorded(usage, {"generate": {"calls": 2, "prompt_tokens": 20, "completion_tokens": 20}}, None)
    assert out["calls"] == 2 and out["cost_usd"] is None and out["unrecorded"]["cost_usd"] is None


def test_tokens_of_each_api_count_as_dspy_counts_them():
    openai = {"usage": {"prompt_tokens": 50, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 20}}}
    assert tokens_of("openai", openai) == (50, 7, 20)
    anthropic = {"usage": {"input_tokens": 30, "output_tokens": 7, "cache_read_input_tokens": 20}}
    assert tokens_of("anthropic", anthropic) == (50, 7, 20)
    assert tokens_of("openai", None) == (0, 0, 0)


def test_a_stage_whose_calls_have_no_price_has_no_cost():
    """A run on a model with no price: its total cost is unknown, and so is each stage's (they said $0, and the report
    then said "Nothing was paid: all 70 calls were priced at $0")."""
    from refed_dspy.ledger.usage import Totals

    totals = Totals()
    unknown = {"calls": 2, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": None}
    priced = {"calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.25}
    totals.add({**unknown, "calls": 3, "cost_usd": None, "by_stage": {"generate": unknown, "improve": priced}})
    out = totals.as_dict()
    assert out["cost_usd"] is None and out["by_stage"]["generate"]["cost_usd"] is None
    assert out["by_stage"]["improve"]["cost_usd"] == 0.25 and out["by_stage"]["generate"]["calls"] == 2
