"""Within a run (its ledger scope open), a request identical to one still in flight (the cache's key, `rollout_id`
included) is not sent: it waits for the first's answer, then asks the cache (or, for an LM that caches nothing, takes a
copy) and is counted as a cache hit. A resample (another `rollout_id`) still goes out, a waiter whose first failed
sends its own, and outside every run each request is sent."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dspy
import pytest
from loopback_server import read_log

from refed_dspy.clients.calls import collect_calls, stage
from refed_dspy.clients.lm import bounded
from refed_dspy.clients.lm_routing import LedgerScope, ledger_scope
from refed_dspy.store.cache import shared_cache

# DSPy 3.4 deprecates BaseLM.forward for custom LMs, and still supports it: users' LMs are written that way
pytestmark = pytest.mark.filterwarnings("ignore:Implementing custom LMs through BaseLM.forward:DeprecationWarning")
MODEL = "openai/gpt-4o-mini"


@pytest.fixture
def slow(server_factory, tmp_path):
    """A server that takes 0.6 s an answer, and a run (a run cache and a ledger scope) open for the test."""
    srv = server_factory(latency_s=0.6)
    with shared_cache(tmp_path / "cache"), ledger_scope(LedgerScope()):
        yield srv


def _lm(srv, **kwargs):
    return bounded(dspy.LM(MODEL, api_base=srv.api_base, api_key="unused", num_retries=0, **kwargs), "teacher")


def test_identical_async_calls_in_flight_are_sent_once(slow):
    lm = _lm(slow)

    async def both():
        return await asyncio.gather(lm.acall("the same question"), lm.acall("the same question"))

    with collect_calls() as calls, stage("generate"):
        first, second = asyncio.run(both())
    assert first == second and first
    assert len(read_log(slow.cfg.log_path)) == 1
    assert sorted(c.cache_hit for c in calls) == [False, True]
    assert sum(c.prompt_tokens for c in calls) > 0 and [c.prompt_tokens for c in calls if c.cache_hit] == [0]


def test_identical_calls_from_threads_are_sent_once_even_with_the_lms_cache_off(slow):
    lm = _lm(slow, cache=False)  # DSPy's evaluator re-sending a straggler of a user's LM that caches nothing
    with collect_calls() as calls, stage("generate"), ThreadPoolExecutor(3) as pool:
        sent = [pool.submit(contextvars.copy_context().run, lm, "the same question") for _ in range(3)]
        answers = [f.result() for f in sent]
    assert answers[0] == answers[1] == answers[2]
    assert len(read_log(slow.cfg.log_path)) == 1
    assert sorted(c.cache_hit for c in calls) == [False, True, True]


def test_a_resample_with_another_rollout_id_still_goes_out(slow):
    lm = _lm(slow, temperature=1.0)

    async def both():
        return await asyncio.gather(*(lm.acall("the same question", rollout_id=r) for r in (1, 2)))

    with collect_calls() as calls, stage("generate"):
        asyncio.run(both())
    assert len(read_log(slow.cfg.log_path)) == 2
    assert [c.cache_hit for c in calls] == [False, False]


class OwnLM(dspy.BaseLM):
    """A user's LM whose first request fails after `first_s` (or hangs that long, then is answered); the next is
    answered at once."""

    def __init__(self, first_s: float, first_fails: bool):
        super().__init__("openai/own")
        self.first_s, self.first_fails = first_s, first_fails
        self.sent = 0
        self.lock = threading.Lock()

    def forward(self, prompt=None, messages=None, **kwargs):
        with self.lock:
            self.sent += 1
            first = self.sent == 1
        if first:
            time.sleep(self.first_s)
            if self.first_fails:
                raise RuntimeError("the provider dropped it")
        return dspy.utils.dummies.DummyLM([{"answer": "ok"}]).forward(prompt=prompt, messages=messages)


def _two_calls(lm, tmp_path, **kwargs) -> list:
    """The same request made twice from two threads, the second 0.1 s after the first: (result or error, seconds)."""

    def call(i):
        time.sleep(0.1 * i)  # the first is surely in flight when the second is made
        started = time.monotonic()
        try:
            return lm("the same question", **kwargs), time.monotonic() - started
        except RuntimeError as err:
            return err, time.monotonic() - started

    with (
        shared_cache(tmp_path / "cache"),
        ledger_scope(LedgerScope()),
        collect_calls(),
        stage("generate"),
        ThreadPoolExecutor(2) as pool,
    ):
        return list(pool.map(call, range(2)))


def test_a_waiter_whose_first_failed_sends_its_own(tmp_path):
    lm = bounded(OwnLM(first_s=0.4, first_fails=True), "teacher")
    (first, _), (second, _) = _two_calls(lm, tmp_path)
    assert isinstance(first, RuntimeError)
    assert isinstance(second, list) and second
    assert lm.sent == 2


def test_a_waiter_waits_no_longer_than_its_own_timeout(tmp_path):
    lm = bounded(OwnLM(first_s=3.0, first_fails=False), "teacher")  # the first hangs past the timeout
    (first, _), (second, waited) = _two_calls(lm, tmp_path, timeout=0.5)
    assert first == second and lm.sent == 2
    assert 0.5 <= waited < 2.5


def test_outside_every_run_each_request_is_sent(server_factory, tmp_path):
    srv = server_factory(latency_s=0.6)
    lm = _lm(srv)

    async def both():
        return await asyncio.gather(lm.acall("the same question"), lm.acall("the same question"))

    with shared_cache(tmp_path / "cache"):
        asyncio.run(both())
    assert len(read_log(srv.cfg.log_path)) == 2
