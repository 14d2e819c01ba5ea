"""A request identical to one in flight in a run, by its run-cache key (`rollout_id` included), goes out once: the
second waits for the first's answer and is served it from the run cache, counted as a cache hit and not paid. DSPy's
deliberate resamples (another rollout_id, the same body on the wire) still each go out, and a waiter whose first
request failed sends its own."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from loopback_server import read_log

from refed_dspy.clients import flights
from refed_dspy.clients.lm import build_lm
from refed_dspy.config.lm import LMSpec
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.store.cache import use_run_cache
from refed_dspy.store.rundir import RunDir

MODEL = "openai/gpt-4o-mini"
QUESTION = "Name three rivers of Europe."


def _lm(srv, tmp_path, engine: bool):
    """A refed LM at the server, on a ledger of its own, with the run cache of a run dir in `tmp_path`. `engine`: built
    as a synthesis stage builds its LM (its own wide engines, no retries); else as optimize builds its LMs."""
    use_run_cache(RunDir(tmp_path / "run"))
    spec = LMSpec(model=MODEL, api_base=srv.api_base, api_key_env="", num_retries=0)
    lm = build_lm(spec, "teacher", num_retries=0, max_connections=8 if engine else None)
    budget = CallBudget()
    lm.attach_budget(budget, "teacher", None)
    return lm, budget


def _in_threads(lm, srv, rollouts: list[int | None]) -> list:
    """One call of `lm` per rollout id, each on a thread of its own, the later ones started once the first request is
    at the server: their answers, in order."""
    out: list = [None] * len(rollouts)

    def call(i: int) -> None:
        out[i] = lm(QUESTION, rollout_id=rollouts[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(rollouts))]
    threads[0].start()
    _until(lambda: srv.state.count >= 1)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


async def _gathered(lm, rollouts: list[int | None]) -> list:
    return list(await asyncio.gather(*(lm.acall(QUESTION, rollout_id=r) for r in rollouts)))


def _until(done, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _calls(lm, srv, rollouts: list[int | None], mode: str) -> list:
    return _in_threads(lm, srv, rollouts) if mode == "threads" else asyncio.run(_gathered(lm, rollouts))


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_identical_requests_in_flight_go_out_once_and_are_paid_once(server_factory, tmp_path, mode):
    srv = server_factory(latency_s=0.4)
    lm, budget = _lm(srv, tmp_path, engine=mode == "asyncio")
    answers = _calls(lm, srv, [7, 7, 7], mode)
    assert len(read_log(srv.cfg.log_path)) == 1  # one request on the wire
    assert answers[0] and all(a == answers[0] for a in answers)  # every caller answered, with the one answer
    usage = budget.as_dict()
    assert (usage["calls"], usage["cached_calls"]) == (1, 2)  # charged once; the others served from the run cache
    assert flights.in_flight() == 0


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_deliberate_resamples_each_go_out(server_factory, tmp_path, mode):
    """DSPy drops rollout_id from the body: the two bodies are the same on the wire, their cache keys differ."""
    srv = server_factory(latency_s=0.4)
    lm, budget = _lm(srv, tmp_path, engine=mode == "asyncio")
    _calls(lm, srv, [1, 2], mode)
    log = read_log(srv.cfg.log_path)
    assert len(log) == 2 and log[0]["sha"] == log[1]["sha"]
    assert (budget.as_dict()["calls"], budget.as_dict()["cached_calls"]) == (2, 0)


def test_an_identical_request_answered_earlier_in_the_run_is_not_sent_again(server_factory, tmp_path):
    srv = server_factory()
    lm, budget = _lm(srv, tmp_path, engine=True)
    first = asyncio.run(lm.acall(QUESTION, rollout_id=3))
    again = lm(QUESTION, rollout_id=3)  # synchronously this time: the same request to the provider
    assert again == first and len(read_log(srv.cfg.log_path)) == 1
    assert (budget.as_dict()["calls"], budget.as_dict()["cached_calls"]) == (1, 1)


def test_a_waiter_whose_first_request_failed_sends_its_own(server_factory, tmp_path):
    """The first request is held by the server and dropped: the request waiting for it is sent once it has failed,
    and is answered; nothing waits for ever."""
    srv = server_factory(rate_hang=1.0, hang_s=0.6)
    lm, budget = _lm(srv, tmp_path, engine=False)
    failed: list[BaseException] = []
    answered: list = []

    def first() -> None:
        try:
            lm(QUESTION, rollout_id=5)
        except Exception as err:  # noqa: BLE001 - the failure is what is looked at
            failed.append(err)

    leader = threading.Thread(target=first)
    leader.start()
    _until(lambda: srv.state.count >= 1)
    srv.state.cfg.rate_hang = 0.0  # only the first request is held and dropped
    waiter = threading.Thread(target=lambda: answered.append(lm(QUESTION, rollout_id=5)))
    waiter.start()
    leader.join(timeout=30)
    waiter.join(timeout=30)
    assert len(failed) == 1 and len(answered) == 1 and answered[0]
    first_sent, second_sent = sorted(read_log(srv.cfg.log_path), key=lambda e: e["seq"])
    assert first_sent["fault"] == "hang" and second_sent["status"] == 200
    assert second_sent["t"] - first_sent["t"] >= 0.5  # sent once the first had failed, not beside it
    assert budget.as_dict()["cached_calls"] == 0 and flights.in_flight() == 0


def test_a_request_cancelled_while_it_waits_was_never_sent_nor_paid(server_factory, tmp_path):
    srv = server_factory(latency_s=0.6)
    lm, budget = _lm(srv, tmp_path, engine=True)

    async def go() -> None:
        first = asyncio.create_task(lm.acall(QUESTION, rollout_id=9))
        while srv.state.count < 1:
            await asyncio.sleep(0.005)
        second = asyncio.create_task(lm.acall(QUESTION, rollout_id=9))
        deadline = time.monotonic() + 10
        while flights.waiting() < 1:  # it waits for the first
            assert time.monotonic() < deadline, "the second request never waited for the first"
            await asyncio.sleep(0.005)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await first

    asyncio.run(go())
    usage = budget.as_dict()
    assert len(read_log(srv.cfg.log_path)) == 1
    assert (usage["calls"], usage["interrupted_calls"], usage["cached_calls"]) == (1, 0, 0)


def test_only_a_request_that_can_wait_for_another_waits():
    """A flight inside another's request (an LM calling another) and a synchronous request on a thread whose event loop
    runs are sent rather than wait; an outermost request waits for a key another holds."""

    async def on_a_loop() -> bool:
        with flights.flight(synchronous=True) as here:
            return here.waits

    assert asyncio.run(on_a_loop()) is False
    with flights.flight(synchronous=True) as outer:
        assert outer.waits and outer.claim("k")
        assert outer.claim("k") is False  # its own claim: no wait
        with flights.flight(synchronous=True) as inner:
            assert inner.waits is False and inner.claim("k") is False
    assert flights.in_flight() == 0
    with flights.flight(synchronous=True) as first:
        first.claim("k")
        with pytest.raises(flights.InFlight):
            flights.Flight().claim("k")
    assert flights.in_flight() == 0
