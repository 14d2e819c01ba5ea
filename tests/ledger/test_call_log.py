"""The write-ahead log of a directory's LM calls (refed_dspy.ledger.call_log): what a killed invocation paid and no
file holds is counted by the next one, once; a clean end leaves nothing to count."""

from __future__ import annotations

import json

import pytest

from refed_dspy.clients.calls import CallInfo
from refed_dspy.ledger.call_log import CallLog, lost_in, lost_usage


def _paid(tokens=(100, 20, 0)):
    return CallInfo("generate", "m", prompt_tokens=tokens[0], completion_tokens=tokens[1], cached_tokens=tokens[2])


def test_a_clean_end_leaves_nothing_to_count(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    n = log.sent("teacher", "generate", "m", 0.01)
    log.settled(n, _paid(), 0.002)
    log.end()
    again = CallLog.open(path)
    assert again.lost is None and again.found_now is None
    again.close()


def test_a_killed_invocation_is_counted_once_settled_calls_at_their_cost_the_rest_at_their_bound(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    kept = log.sent("teacher", "generate", "m", 0.01)
    log.settled(kept, _paid(), 0.002)
    log.kept([kept])  # its record was written: not counted again
    answered = log.sent("teacher", "improve", "m", 0.01)
    log.settled(answered, _paid((300, 50, 100)), 0.004)  # answered, its record never written
    failed = log.sent("teacher", "generate", "m", 0.01)
    log.settled(failed, CallInfo("generate", "m", error="LMRateLimitError"), None)  # no reply: not paid
    log.sent("teacher", "generate", "m", 0.01)  # in flight at the kill
    log.sent("teacher", "improve", "m", 0.03, calls=3)  # a task of 3 calls sent to a Ray worker
    log.close()  # killed: no end line

    again = CallLog.open(path)
    found = again.found_now
    assert found == again.lost
    assert found["calls"] == 1 + 1 + 3 and found["lost_in_flight"] == 4
    assert found["interrupted_calls"] == 4 and found["failed_calls"] == 1
    assert found["cost_usd"] == pytest.approx(0.004)
    assert found["interrupted_cost_usd"] == pytest.approx(0.01 + 3 * 0.03)
    assert (found["prompt_tokens"], found["completion_tokens"], found["cached_tokens"]) == (300, 50, 100)
    assert set(found["by_stage"]) == {"generate", "improve"}
    again.end()

    # compacted to what was lost, which stays counted; nothing is found twice
    third = CallLog.open(path)
    assert third.found_now is None and third.lost["calls"] == 5
    third.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [next(iter(x)) for x in lines] == ["lost", "open"]


def test_an_owner_that_reports_what_was_lost_empties_the_log(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    log.sent("judge", "judge", "m", 0.02)
    log.close()
    again = CallLog.open(path)
    assert again.lost["calls"] == 1
    again.end(reported_lost=True)
    assert path.read_text() == "" and lost_in(path) is None


def test_a_line_torn_by_a_kill_is_a_request_never_sent(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    log.sent("teacher", "generate", "m", 0.01)
    log.close()
    with open(path, "ab") as fh:
        fh.write(b'{"s": 2, "r": "tea')
    again = CallLog.open(path)
    assert again.found_now["calls"] == 1
    again.close()


def test_a_task_settled_with_its_usage_counts_that_usage():
    lines = [
        {"open": "a"},
        {"s": 1, "r": "teacher", "g": "sample", "m": "?", "n": 4, "b": 0.01},
        {"p": 1, "u": {"calls": 2, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.001}},
    ]
    found, dead = lost_usage(lines)
    assert dead == ["a"] and found["calls"] == 2 and found["cost_usd"] == pytest.approx(0.001)
    assert found["lost_in_flight"] == 0
