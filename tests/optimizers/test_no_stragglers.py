"""DSPy's evaluator (dspy.Evaluate, and every optimizer built on its ParallelExecutor) sends an item again when its
first run is still going after `timeout` seconds (120 by default) and three or fewer items remain, without cancelling
the first: both are paid. Inside our work that re-submission is off, so no request body reaches the server twice and
optimize_summary.json (with its examples) counts what the servers answered. The test lowers DSPy's timeout to one
second (the provider answers in 1.2 s) instead of waiting two minutes."""

from __future__ import annotations

import json
import threading
from collections import Counter

import dspy
import pytest
from conftest import run_overrides
from loopback_server import read_log

import refed_dspy
from refed_dspy.config import load_config
from refed_dspy.optimizers import make_metric
from refed_dspy.optimizers.compile import evaluate_detailed
from refed_dspy.programs import RespondAndImprove

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")


@pytest.fixture
def quick_stragglers(monkeypatch):
    """DSPy's evaluator with a straggler timeout of one second (its default is 120)."""
    from dspy.evaluate import evaluate as evaluate_module

    base = evaluate_module.ParallelExecutor

    class Quick(base):
        def __init__(self, *args, **kwargs):
            kwargs["timeout"] = 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "ParallelExecutor", Quick)


def _bodies_twice(before: set[threading.Thread], *servers) -> int:
    """Request bodies a server saw more than once, once every request sent has arrived: a re-sent item's requests
    come after the evaluation has returned (DSPy's executor does not wait for them), from the executor's threads, so
    every thread the work started (not in `before`) is waited for, then the servers."""
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon:
            thread.join(120)
            assert not thread.is_alive(), f"{thread.name} is still running"
    for srv in servers:
        srv.wait_idle()
    sent = Counter(e["sha"] for srv in servers for e in read_log(srv.cfg.log_path))
    return sum(n - 1 for n in sent.values())


def _answered(srv) -> int:
    return sum(1 for e in read_log(srv.cfg.log_path) if e.get("status") == 200)


def test_the_evaluator_sends_no_item_twice(server_factory, tmp_path, quick_stragglers):
    teacher_srv, judge_srv = server_factory(latency_s=1.2), server_factory(latency_s=1.2)
    over = run_overrides(teacher_srv, tmp_path / "run", 3)
    over += [f"judge.api_base='{judge_srv.api_base}'", "judge.api_key_env=''"]
    cfg = load_config(None, over)
    lm = dspy.LM("openai/m", api_base=teacher_srv.api_base, api_key="unused", num_retries=0, cache=False)
    judge = dspy.LM("openai/j", api_base=judge_srv.api_base, api_key="unused", num_retries=0, cache=False)
    devset = [
        dspy.Example(
            reference_instruction="Explain tides.",
            reference_response="The moon pulls the sea.",
            instruction=f"Explain {topic} to a child.",
            feedback="Be concrete.",
        ).with_inputs(*INPUTS)
        for topic in ("rainbows", "volcanoes", "eclipses")
    ]
    before = set(threading.enumerate())
    mean, rows, _ = evaluate_detailed(RespondAndImprove(), devset, make_metric(cfg, judge=judge), lm, num_threads=6)
    assert len(rows) == 3
    assert _bodies_twice(before, teacher_srv, judge_srv) == 0
    assert len(read_log(teacher_srv.cfg.log_path)) == 3 * 2  # a response and its improvement per example


def test_optimize_pays_each_request_once_and_counts_what_the_servers_answered(
    server_factory, tmp_path, quick_stragglers
):
    teacher_srv, judge_srv = server_factory(latency_s=1.2), server_factory(latency_s=1.2)
    over = run_overrides(
        teacher_srv,
        tmp_path / "run",
        4,
        **{
            "judge.api_base": f"'{judge_srv.api_base}'",
            "judge.api_key_env": "''",
            "optimize.out": f"'{tmp_path / 'opt'}'",
            "optimize.optimizer": "'bootstrap'",
            "optimize.n_train": 2,
            "optimize.n_val": 3,
            "optimize.num_threads": 6,
            "synthesis.concurrency": 8,
        },
    )
    before = set(threading.enumerate())
    refed_dspy.optimize(load_config(None, over))
    summary = json.loads((tmp_path / "opt" / "optimize_summary.json").read_text())
    assert _bodies_twice(before, teacher_srv, judge_srv) == 0
    paid = summary["usage"]["calls"]  # the examples' synthesis included
    assert paid == _answered(teacher_srv) + _answered(judge_srv)
