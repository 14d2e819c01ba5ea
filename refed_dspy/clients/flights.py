"""One flight per request: a request identical to one in flight in this process is not sent again; it waits for that
one's answer, which the run cache then gives it (a cache hit, not paid).

Identical means the same run cache key (refed_dspy.store.cache.RunCache.cache_key): DSPy's request cache key, with the
request's `rollout_id` in it, so that DSPy's deliberate resamples (a new rollout_id each, dropped from the body before
it is sent, so that their bodies may be the same on the wire) each go out; like DSPy's, it leaves out where the request
is sent (api_base, the key), as the run cache does.

Each request the call boundary makes is one `Flight` (`flight`, around the request; `current` inside it). When the run
cache finds no answer for a request of a flight, the flight claims the request's key (`Flight.claim`); the cache looks
again after claiming, so an answer stored by a first request just before it ended is found. A claim lasts until its
flight ends, after the answer is stored. A request whose key another flight has claimed gets `InFlight` from the cache
instead of a miss: the boundary waits for that claim to end (`sent_once`, `asent_once`) and asks again. The first
request's answer is then in the cache; where the first failed, was cut off or stored nothing, the waiter sends its own
request: it never receives another request's failure, and it never waits on a request that is over.

No wait can close a circle: a flight holds no claim while it waits (`InFlight` is raised before it claims anything, and
what it claimed earlier is let go first), and only a flight that is not inside another's request waits (a request
made inside another's, an LM calling another, never waits: the outer one holds its claim). A synchronous request made
on a thread whose event loop runs never waits either (the first request may need that loop to end): it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_claims: dict[str, _Claim] = {}  # the keys of the requests in flight in this process, with who claimed them
_waiting = 0  # the requests waiting for one of them
_current: contextvars.ContextVar[Flight | None] = contextvars.ContextVar("refed_flight", default=None)


class _Claim:
    """One flight's claim on a key, until `end`: the threads and coroutines that wait for it are woken then."""

    def __init__(self, owner: Flight):
        self.owner = owner
        self._ended = threading.Event()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def end(self) -> None:
        with _lock:
            self._ended.set()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits there any more
                loop.call_soon_threadsafe(_done, future)

    def wait(self) -> None:
        global _waiting
        with _lock:
            _waiting += 1
        try:
            self._ended.wait()
        finally:
            with _lock:
                _waiting -= 1

    async def wait_async(self) -> None:
        global _waiting
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with _lock:
            if self._ended.is_set():
                return
            self._futures.append((loop, future))
            _waiting += 1
        try:
            await future
        finally:
            with _lock:
                _waiting -= 1
                with contextlib.suppress(ValueError):
                    self._futures.remove((loop, future))


def _done(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class InFlight(Exception):  # noqa: N818 - not an error: the request waits, then asks again
    """A request's key is claimed by another request in flight: the boundary waits for `claim` to end and asks again.

    Raised by the run cache from inside DSPy's call, before anything is sent; never past the call boundary."""

    def __init__(self, claim: _Claim):
        super().__init__("an identical request is in flight")
        self.claim = claim


class Flight:
    """One request under way at the call boundary, and the keys it has claimed (see the module docstring).

    Args:
        waits: whether the request waits for an identical one in flight (False: it is sent, and claims what no other
            request has claimed).
    """

    def __init__(self, waits: bool = True):
        self.waits = waits
        self._held: list[tuple[str, _Claim]] = []

    def claim(self, key: str) -> bool:
        """Claim `key` for this request, whose answer the run cache does not hold. Returns whether it claimed it now
        (False: it held it already, or another holds it and this one does not wait). Raises InFlight when another
        request holds it and this one waits."""
        with _lock:
            held = _claims.get(key)
            if held is None:
                claim = _claims[key] = _Claim(self)
                self._held.append((key, claim))
                return True
        if held.owner is self or not self.waits:
            return False
        raise InFlight(held)

    def drop(self, key: str) -> None:
        """Let `key` go (its answer was found after all); those waiting for it ask again."""
        for pair in [p for p in self._held if p[0] == key]:
            self._held.remove(pair)
            _let_go(*pair)

    def let_go(self) -> None:
        """Let go of every key this request claimed: it is over (its answer stored, or none), or it is about to wait."""
        held, self._held = self._held, []
        for key, claim in held:
            _let_go(key, claim)


def _let_go(key: str, claim: _Claim) -> None:
    with _lock:
        if _claims.get(key) is claim:
            del _claims[key]
    claim.end()


def current() -> Flight | None:
    """The flight of the request under way here (None: no request of the call boundary's)."""
    return _current.get()


@contextlib.contextmanager
def flight(synchronous: bool) -> Iterator[Flight]:
    """One request of the call boundary, from before it is sent until its answer is stored (or it failed): its claims
    are let go when the block ends. `synchronous`: the request blocks its thread while it waits (it then waits only
    where no event loop runs on that thread)."""
    outer = _current.get()
    waits = outer is None and not (synchronous and _loop_running())
    made = Flight(waits)
    token = _current.set(made)
    try:
        yield made
    finally:
        _current.reset(token)
        made.let_go()


def sent_once(send: Callable[[], T]) -> T:
    """`send()` (DSPy's call of one request), again after each identical request in flight has ended: its answer is then
    in the run cache, or this request is sent itself."""
    while True:
        try:
            return send()
        except InFlight as waiting:
            _let_go_here()
            try:
                waiting.claim.wait()
            except BaseException as stop:  # a signal while it waited: this request was never sent, nothing was paid
                stop.unpaid = True
                raise


async def asent_once(send: Callable[[], Awaitable[T]]) -> T:
    """`sent_once` for an awaited call."""
    while True:
        try:
            return await send()
        except InFlight as waiting:
            _let_go_here()
            try:
                await waiting.claim.wait_async()
            except asyncio.CancelledError as stop:  # cancelled while it waited: never sent, nothing paid
                stop.unpaid = True
                raise


def _let_go_here() -> None:
    """The flight about to wait lets go of what it claimed: a flight that waits holds nothing."""
    here = _current.get()
    if here is not None:
        here.let_go()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def in_flight() -> int:
    """How many keys are claimed now (0 once every request is over)."""
    with _lock:
        return len(_claims)


def waiting() -> int:
    """How many requests wait now for an identical one in flight."""
    with _lock:
        return _waiting
