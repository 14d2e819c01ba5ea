"""Exactly-once online, proven at deterministic points: a run (and a judging) killed with SIGKILL where a crash costs
the most (refed_dspy.runtime.stops, through tests/crash_at), then the same command run to its end.

What a resume may pay again is known exactly. Every answer the provider sent and the client read is in the run's cache
and settled in its write-ahead log, so no request body may be answered twice but the calls in flight at the kill: none
with one piece of work at a time (the kill lands where its calls are over), at most those the log found unsettled
(`usage.lost_in_flight`) with several. The loopback server's log is the referee: each request's body hash and status.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import crash_env, lines, run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.synthesis.api import synthesize

SMALL = {"seeds.limit": 3, "synthesis.instructions_per_feature": 2}


def answered_twice(log: list[dict]) -> int:
    """Request bodies the server answered (200) more than once: each a call paid again."""
    answered = Counter(e["sha"] for e in log if e.get("status") == 200)
    return sum(n - 1 for n in answered.values())


def kill_then_finish(command: list[str], crash: str) -> None:
    """`refed COMMAND` killed by itself with SIGKILL at `crash`, then the same command run to its end."""
    code, _, err = run_refed(*command, env_extra=crash_env(crash))
    assert code == -9, f"not killed at {crash}: {err[-2000:]}"
    code, _, err = run_refed(*command)
    assert code == 0, err[-2000:]


def assert_every_sample_once(run: Path, size: int) -> None:
    samples = lines(run / "samples.jsonl")
    assert len(samples) == size == len({s["meta"]["id"] for s in samples})
    feedback = [f["reference_id"] for f in lines(run / "feedback.jsonl")]
    assert len(feedback) == len(set(feedback)) == SMALL["seeds.limit"]
    units = [j["unit"] for j in lines(run / "journal.jsonl") if j.get("kind") == "unit"]
    assert len(units) == len(set(units))


@pytest.mark.parametrize(
    "crash",
    [
        "before_record@feedback:2",  # during feedback: a reference's two calls answered, its feedback not written
        "answer_paid@generate:3",  # a sample's draft paid, its improvement not asked yet
        "before_record@sample:4",  # a sample's calls answered, its record not written
    ],
)
def test_killed_with_one_piece_of_work_at_a_time_pays_for_nothing_twice(server_factory, tmp_path, crash):
    srv = server_factory()
    run = tmp_path / "run"
    command = ["synthesize", *sets(run_overrides(srv, run, 8, **SMALL, **{"synthesis.concurrency": 1}))]
    kill_then_finish(command, crash)
    assert_every_sample_once(run, 8)
    log = read_log(srv.cfg.log_path)
    assert answered_twice(log) == 0
    usage = json.loads((run / "summary.json").read_text())["usage"]
    # the killed invocation's settled calls are read back from its log, each once, none in flight
    assert usage["calls"] == sum(1 for e in log if e.get("status") == 200) and not usage.get("lost_in_flight")


def test_killed_mid_batch_of_records_pays_again_only_for_the_calls_in_flight(server_factory, tmp_path):
    """Eight calls in flight, the answers of several tasks read together and written one after another: killed with the
    fifth sample's record unwritten (others finished beside it, unwritten too). Only the calls the log found in flight
    may be paid again."""
    srv = server_factory(latency_s=0.02)
    run = tmp_path / "run"
    command = ["synthesize", *sets(run_overrides(srv, run, 12, **SMALL, **{"synthesis.concurrency": 8}))]
    kill_then_finish(command, "before_record@sample:5")
    assert_every_sample_once(run, 12)
    log = read_log(srv.cfg.log_path)
    usage = json.loads((run / "summary.json").read_text())["usage"]
    in_flight = usage.get("lost_in_flight", 0)
    assert in_flight <= 8 and answered_twice(log) <= in_flight, (answered_twice(log), usage)
    answered = sum(1 for e in log if e.get("status") == 200)
    assert answered <= usage["calls"] <= answered + in_flight


@pytest.mark.parametrize("crash", ["before_record@judge:3", "answer_paid@judge_pairwise:2"])
def test_a_killed_judging_judges_each_sample_once_and_pays_for_nothing_twice(server_factory, tmp_path, crash):
    teacher, judge = server_factory(), server_factory()
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(teacher, run, 6, **SMALL)))
    over = [f"judge.api_base='{judge.api_base}'", "judge.api_key_env=''", "judging.concurrency=1", "run.progress=false"]
    if crash.startswith("answer_paid@judge_pairwise"):
        # a sample's calls run at once (its rubric score beside the two orders): with the rubric off, the second
        # pairwise answer ends the first sample's calls, so nothing is in flight at the kill
        over.append("judging.pointwise=false")
    kill_then_finish(["judge", "run", str(run), *sets(over)], crash)
    judged = [j["sample_id"] for j in lines(run / "judgments.jsonl")]
    assert sorted(judged) == sorted(s["meta"]["id"] for s in lines(run / "samples.jsonl"))
    log = read_log(judge.cfg.log_path)
    assert answered_twice(log) == 0
    usage = json.loads((run / "judge_summary.json").read_text())["usage"]
    assert usage["calls"] == sum(1 for e in log if e.get("status") == 200) and not usage.get("lost_in_flight")
