"""DSPy's evaluator (dspy.Evaluate, and every optimizer built on its ParallelExecutor) sends an item again when its
first run is still going after `timeout` seconds (120 by default) and three or fewer items remain, without cancelling
the first: both would be paid. Ours (optimizers.compile.evaluate_detailed) never sends one again, and inside our runs
the evaluations DSPy's optimizers make themselves send the same request once (clients/flights.py: the item sent again
waits for the first's answer), so no request body reaches the server twice and optimize_summary.json (with its
examples) counts what the servers answered. The test lowers DSPy's default timeout to one second (the provider answers
in 1.2 s) instead of waiting two minutes."""

from __future__ import annotations

import inspect
import json
import threading
from collections import Counter

import dspy
import pytest
from conftest import run_overrides
from loopback_server import read_log

import refed_dspy
from refed_dspy.clients.lm_routing import LedgerScope, ledger_scope
from refed_dspy.config import load_config
from refed_dspy.optimizers import make_metric
from refed_dspy.optimizers.compile import evaluate_detailed
from refed_dspy.programs import RespondAndImprove
from refed_dspy.store.cache import shared_cache

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")


@pytest.fixture
def quick_stragglers(monkeypatch):
    """DSPy's ParallelExecutor with a default straggler timeout of one second (DSPy's is 120), wherever it is made."""
    from dspy.utils.parallelizer import ParallelExecutor

    init = ParallelExecutor.__init__
    names = list(inspect.signature(init).parameters)[-len(init.__defaults__) :]
    quick = tuple(1 if name == "timeout" else value for name, value in zip(names, init.__defaults__, strict=True))
    assert quick != init.__defaults__
    monkeypatch.setattr(init, "__defaults__", quick)


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


def _examples(*topics: str) -> list[dspy.Example]:
    """One example of the paper's program for each topic."""
    return [
        dspy.Example(
            reference_instruction="Explain tides.",
            reference_response="The moon pulls the sea.",
            instruction=f"Explain {topic} to a child.",
            feedback="Be concrete.",
        ).with_inputs(*INPUTS)
        for topic in topics
    ]


def _answered(srv) -> int:
    return sum(1 for e in read_log(srv.cfg.log_path) if e.get("status") == 200)


def test_the_evaluator_sends_no_item_twice(server_factory, tmp_path, quick_stragglers):
    teacher_srv, judge_srv = server_factory(latency_s=1.2), server_factory(latency_s=1.2)
    over = run_overrides(teacher_srv, tmp_path / "run", 3)
    over += [f"judge.api_base='{judge_srv.api_base}'", "judge.api_key_env=''"]
    cfg = load_config(None, over)
    lm = dspy.LM("openai/m", api_base=teacher_srv.api_base, api_key="unused", num_retries=0, cache=False)
    judge = dspy.LM("openai/j", api_base=judge_srv.api_base, api_key="unused", num_retries=0, cache=False)
    devset = _examples("rainbows", "volcanoes", "eclipses")
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


def test_dspys_own_evaluator_inside_a_run_sends_no_body_twice(server_factory, tmp_path, quick_stragglers):
    """An evaluation a DSPy optimizer makes itself (dspy.Evaluate, straggler timeout as DSPy sets it) re-sends each
    slow item; the re-sent request waits for the first's answer (clients/flights.py)."""
    srv = server_factory(latency_s=1.2)
    lm = dspy.LM("openai/m", api_base=srv.api_base, api_key="unused", num_retries=0, cache=False)
    devset = [dspy.Example(question=f"What is {n} + {n}?").with_inputs("question") for n in range(3)]
    evaluator = dspy.Evaluate(devset=devset, metric=lambda ex, pred, trace=None: 1.0, num_threads=6)
    before = set(threading.enumerate())
    with shared_cache(tmp_path / "cache"), ledger_scope(LedgerScope()), dspy.context(lm=lm):
        evaluator(dspy.Predict("question -> answer"))
    assert _bodies_twice(before, srv) == 0
    assert len(read_log(srv.cfg.log_path)) == 3


def test_compile_program_called_outside_a_run_pays_each_request_once(server_factory, tmp_path, quick_stragglers):
    """A user's own call of compile_program with their own LMs: random search scores each candidate with DSPy's
    evaluator, which re-sends slow items; the compile is a run of its own, so each re-sent request waits."""
    teacher_srv, judge_srv = server_factory(latency_s=1.2), server_factory(latency_s=1.2)
    cfg = load_config(None, [f"judge.api_base='{judge_srv.api_base}'", "judge.api_key_env=''"])
    lm = dspy.LM("openai/m", api_base=teacher_srv.api_base, api_key="unused", num_retries=0)
    judge = dspy.LM("openai/j", api_base=judge_srv.api_base, api_key="unused", num_retries=0)
    examples = _examples("rainbows", "volcanoes", "eclipses", "magnets", "clouds")
    before, told = set(threading.enumerate()), []
    with shared_cache(tmp_path / "cache"):  # the user's cache, kept apart from other tests'
        refed_dspy.optimizers.compile_program(
            RespondAndImprove(),
            examples[:2],
            examples[2:],
            metric=make_metric(cfg, judge=judge),
            lm=lm,
            optimizer="bootstrap_random_search",
            num_candidates=1,
            num_threads=6,
            on_phase=told.append,
        )
    assert _bodies_twice(before, teacher_srv, judge_srv) == 0
    # each part was told as it began, for a progress line (refed optimize's)
    assert told == [
        "scoring the starting program on 3 validation examples",
        "compiling with bootstrap_random_search",
        "scoring the compiled program on 3 validation examples",
    ]
