"""A run's requests in flight, by cache key: a request identical to one still in flight waits for that one's answer
instead of being sent (and paid) again.

The run cache answers a request that was answered before; this answers one made while the first is still on the
wire: DSPy's evaluator sending a slow item again (a straggler), two units of a run that ask the same thing at once (a
seed file with a repeated line). The key is the cache's (DSPy's cache key of what is sent), so DSPy's deliberate
resamples (another `rollout_id`) still go out. A waiter whose first fails sends its own request; one whose first
answered gets a copy of its outputs, counted as a cache hit, whether or not the LM caches (so identical requests made
at once with the cache off are answered once: a fresh sample is asked for with another `rollout_id`). A waiter waits
at most as long
as its own request would (its timeout), then is sent as if alone: a first that hangs (what DSPy's evaluator re-sends
a straggler for) holds up no one for ever.

A run's ledger scope holds its flights (refed_dspy.clients.lm_routing.LedgerScope.flights): a run's calls meet
there, and none of another run's or of a run that ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from concurrent.futures import Future
from typing import Any

LATE = object()  # what `answer_of` gives when the request in flight was not answered in time


class Flights:
    """The requests in flight in one run, each by its key, with the future its waiters read its outputs from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Future] = {}

    def board(self, key: str) -> Future | None:
        """None: no request with `key` is in flight, and the caller's is now (it must `land` it); else the future of
        the one in flight, whose result is its outputs (None: it failed, and a waiter boards again)."""
        with self._lock:
            ahead = self._open.get(key)
            if ahead is None:
                self._open[key] = Future()
            return ahead

    def land(self, key: str, outputs: Any) -> None:
        """The caller's request with `key` is over: its outputs (None: it failed) go to those waiting for it."""
        with self._lock:
            flight = self._open.pop(key)
        flight.set_result(outputs)


def answer_of(ahead: Future, seconds: float) -> Any:
    """The outputs of the request in flight `ahead` (None: it failed), or LATE when it is not over within `seconds`."""
    try:
        return ahead.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        return LATE


async def aanswer_of(ahead: Future, seconds: float) -> Any:
    """`answer_of`, awaited (a waiter cancelled leaves the request in flight and its other waiters as they were)."""
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ahead)), seconds)
    except asyncio.TimeoutError:
        return LATE
