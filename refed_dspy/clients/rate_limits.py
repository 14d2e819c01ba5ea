"""What an LM's HTTP transport sees of a provider's rate limits: each request at the wire, and the limits replies state.

A provider's limit is met at the wire: the requests it holds (sent, no reply yet) and the ones it refuses (429). An
LM that has engines of its own (refed_dspy.clients.lm) reads both in its async HTTP transport (`RateLimitReader`) and
keeps them in its `RateLimits`: how many of its requests are at the provider now, each request as it leaves (with that
number, its own included) and as its reply comes (a 429 or not), for the listener a run sets (the engine's window:
refed_dspy.engine.window), and the per-minute limits its replies state. Counted in the engine instead, a request would
be in flight from the moment its work opened it, long before it leaves on a busy event loop, and the count would say
little of what the provider holds.

The limits stated: the headers each request format's provider states them in (its `Wire.rate_limits`, through
refed_dspy.providers.registry: OpenAI's and those that follow it, `x-ratelimit-limit-requests` and `-tokens`, a
minute's requests and tokens; Anthropic's, requests, tokens, input and output tokens). A
provider that states none leaves them empty.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from refed_dspy.providers.registry import rate_limit_headers


class WireListener(Protocol):
    """What hears an LM's requests at the wire (the engine's window); `limit`: the requests it lets be in flight."""

    limit: float

    def sent(self, level: int, now: float) -> None:
        """A request left at `now` (time.monotonic()) with `level` of the LM's requests at the provider, its own
        included."""

    def answered(self, level: int, refused: bool, sent: float, now: float) -> None:
        """The request that left at `sent` (time.monotonic()) at `level` was answered at `now`: a 429 or not."""


class RateLimits:
    """An LM's requests at the provider (`in_flight`), heard by `listener` as they leave and come back, and the
    per-minute limits its replies last stated (`per_minute`: 'requests', 'tokens', 'input-tokens', 'output-tokens' to
    their limit). An LM spread over several endpoints has one of its own for each (`endpoints`, by URL): a provider's
    limit is each endpoint's, and its requests are heard there too, and the limits stated are the endpoints' together."""

    def __init__(self, endpoints: dict[str, RateLimits] | None = None) -> None:
        self.per_minute: dict[str, float] = {}
        self.in_flight = 0
        self.listener: WireListener | None = None
        self.endpoints = endpoints or {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> RateLimits:  # a deep copy of its LM shares its engines, which it hears
        return self

    def __reduce__(self) -> tuple:  # pickled, it starts again where it is loaded, with the same endpoints
        return (RateLimits, (self.endpoints or None,))

    def room(self) -> float:
        """The requests its listener lets leave now (infinite without one)."""
        listener = self.listener
        return math.inf if listener is None else listener.limit - self.in_flight

    def leave(self, now: float) -> int:
        """A request leaves at `now`: its level (the requests at the provider with it)."""
        with self._lock:
            self.in_flight += 1
            level = self.in_flight
        listener = self.listener
        if listener is not None:
            listener.sent(level, now)
        return level

    def back(self, level: int, sent: float, status: int | None, headers: Iterable[tuple[str, str]] = ()) -> None:
        """The request that left at `sent` at `level` is over: its reply's `status` and `headers` (None: no reply)."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
        self.read(headers)
        listener = self.listener
        if listener is not None and status is not None:
            listener.answered(level, status == 429, sent, time.monotonic())

    def read(self, headers: Iterable[tuple[str, str]]) -> None:
        """Keep the limits a reply's `headers` state (a value that is not a number is left out)."""
        known = rate_limit_headers()
        found: dict[str, float] = {}
        for name, value in headers:
            unit = known.get(name.lower())
            if unit is None:
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            if number >= 0:
                found[unit] = number
        if found:
            with self._lock:
                self.per_minute.update(found)

    def stated(self) -> dict[str, float]:
        """The limits stated, per minute (a copy). Spread over several endpoints, each states its own: their sum, for
        each limit every endpoint states (one that states none may take any number, so until each has stated one, or
        while one never answers, none paces the run: each endpoint's window holds what it meets)."""
        if self.endpoints:
            said = [limits.stated() for limits in self.endpoints.values()]
            units = set.intersection(*(set(limits) for limits in said))
            return {unit: sum(limits[unit] for limits in said) for unit in sorted(units)}
        with self._lock:
            return dict(self.per_minute)


class RateLimitReader:
    """An lm15 async HTTP transport (`inner`) whose requests `limits` hears at the wire: as each leaves, and as its
    reply's headers come (or it fails without one)."""

    def __init__(self, inner: Any, limits: RateLimits):
        self.inner, self.limits = inner, limits

    def stream(self, request: Any) -> _Reading:
        return _Reading(self, request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def copy(self) -> RateLimitReader:
        """A fresh transport of the same kind (lm15 asks for one when the original was closed)."""
        return RateLimitReader(self.inner.copy(), self.limits)

    def __getattr__(self, name: str) -> Any:  # what else lm15 asks of its transport (max_connections, pool_stats)
        return getattr(self.inner, name)


class _Reading:
    """One request through a RateLimitReader: `async with` gives the response once its headers came, as lm15's own."""

    def __init__(self, reader: RateLimitReader, request: Any):
        self.reader, self.request = reader, request
        self._inner_cm: Any = None

    async def __aenter__(self) -> Any:
        limits = self.reader.limits
        self._inner_cm = self.reader.inner.stream(self.request)
        sent = time.monotonic()
        level = limits.leave(sent)
        try:
            response = await self._inner_cm.__aenter__()
        except BaseException:
            limits.back(level, sent, None)
            raise
        limits.back(level, sent, getattr(response, "status", None), getattr(response, "headers", None) or ())
        return response

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner_cm.__aexit__(*exc)
