"""The window of work in flight, and a controller that tells a provider's rate limit from noise.

A provider's limit (a cap on requests in flight, a requests- or tokens-per-minute limit) refuses more requests the
more of them are in flight; refusals that do not depend on load (a shared gateway, a busy server, a provider under
regional load turning away a steady share of requests at random) refuse the same share at any number in flight. So
each request is counted at its level: the role's requests at the provider when it left, its own included, as the LM's
own HTTP transport hears them at the wire (refed_dspy.clients.rate_limits; where the requests are made out of sight,
on Ray, or by an LM without a transport of refed's, a piece of work counts as one request at the work in flight when
it started). It is counted as sent when it leaves and as refused when a 429 answers it (a request in flight counts as
not refused: a refusal comes back at once, an answer after the call's latency, so counting only what has come back
would see the refusals of the newest levels before their answers). The window is cut (to `CUT` of the work in flight
at which the refused request's level was met, or of the window if that is less) only when the share refused rises
with the level up to the refused request's (a one-sided trend test at `Z`).

Requests sent before the last cut do not judge it again (cascade dampening: the burst of refusals one window meets is
one signal, not many). It judges once per window's worth of answers since its last cut (the refusals of a window
below a limit are as rare as its noise; the first time after `FIRST_SPAN` windows' worth, as at a run's start each
level has an answer or two), sooner only when the rise is plain (`STRONG_Z`: a cap met at once). It grows back by about
one piece of work per window of successes up to the configured concurrency, `PROBE` times slower within one of the
work in flight where its last cut found the limit (probing: the limit may have moved, and a window that meets it again
at once pays a 429 each time). The counts are halved every `HALF_LIFE` requests, so what a provider did long ago fades.

Where the provider states its per-minute limits in its replies' headers, the run keeps under them before they are hit
(`Pace`): work starts no faster than the tightest allows.

Each refused request waits for its own Retry-After (the engine's retry queue); the others go on. The window's moves
and the refusals it took as noise are its figures: the summary's `concurrency`, the progress line, the metrics.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import Any

from refed_dspy.clients.rate_limits import RateLimits

CUT = 0.75  # the window after a cut, against before
Z = 3.0  # how sure the controller is that refusals rise with the requests in flight before it cuts
MIN_ANSWERS = 8  # requests, at least, before the controller judges them
HALF_LIFE = 4000  # requests after which every count is halved
FIRST_SPAN = 2.0  # windows' worth of answers before the first judgement (the counts are thin before)
STRONG_Z = 4.0  # ... unless the refusals rise so plainly (a cap met at once): then after MIN_ANSWERS
PROBE = 8  # near the level of its last cut, the window grows this many times slower
PACE_SHARE = 0.95  # of a limit the provider states, what the window keeps to
PACE_MEMORY = 0.1  # the weight of each piece of work that succeeded in the moving means the pace is reckoned from


class Window:
    """The window of work in flight (see the module docstring); `limit` is its size now, in slots of the engine's
    work. `on_move(old, new, why)` hears each move to another whole number ("rate_limited", "grew"): a run's events.

    Args:
        concurrency: the most slots of work in flight, as configured.
        wire: the role's LM's requests at the wire and the limits its replies state (None: not heard there; the
            engine tells the window of each piece of work as one request instead).
        in_flight: the slots of work in flight now (what a cut cuts from).
    """

    def __init__(self, concurrency: int, wire: RateLimits | None = None, in_flight: Callable[[], int] | None = None):
        self.concurrency = concurrency
        self.wire = wire
        self.in_flight = in_flight
        self.pace = Pace(wire) if wire is not None else None
        self.limit = float(concurrency)
        self.min_limit = self.limit
        self.on_move: Callable[[float, float, str], None] | None = None
        self.started: dict[int, float] = {}  # requests sent, by level
        self.refused: dict[int, float] = {}  # ... and of those, refused by a rate limit (in flight: not refused)
        self._lock = threading.Lock()  # requests are sent from any thread
        self.since_cut = 0  # requests answered since the last cut
        self.counted = 0  # requests answered since the counts were last halved
        self.cuts = 0
        self.refusals = 0
        self.noise = 0  # refusals the controller took as noise (the window kept)
        self.ceiling: float | None = None  # the work in flight where its last cut found a limit
        self.cut_at = float("-inf")  # when (the engine's clock)

    def sent(self, level: int) -> None:
        """A request is sent with `level` requests of its role in flight, its own included (any thread)."""
        level = max(1, level)
        with self._lock:
            self.started[level] = self.started.get(level, 0.0) + 1

    def answered(self, level: int, refused: bool, sent: float, now: float) -> None:
        """The request sent at `sent` with `level` requests in flight (told to `sent` then) was answered at `now`:
        refused by a rate limit (429) or not (any thread)."""
        level = max(1, level)
        with self._lock:
            self.since_cut += 1
            self._fade()
            if refused:
                self._judge(level, sent, now)

    def answer(self, slots: int, succeeded: bool, seconds: float = 0.0, calls: Iterable[Any] = ()) -> None:
        """Work of `slots` ended after `seconds`: succeeded (the window grows; its `calls`, CallInfo, tell the pace
        what a piece of work asks of the provider) or not."""
        if succeeded:
            with self._lock:
                self._grow(slots)
            if self.pace is not None:
                self.pace.answer(slots, seconds, calls)

    def trend(self, level: int) -> float:
        """How surely refusals rise with the level up to `level` (Cochran-Armitage's test for a trend in the share
        refused across the levels up to it, as a z score); 0 when nothing says so: too few requests, none refused at
        `level`, or all of them sent at one level; infinite when all those sent at several levels were refused."""
        sent = {lv: k for lv, k in self.started.items() if lv <= level}  # up to here: does it rise to it?
        refused = {lv: k for lv, k in self.refused.items() if lv <= level}
        n = sum(sent.values())
        r = sum(refused.values())
        if n < MIN_ANSWERS or not refused.get(level):
            return 0.0
        share = r / n
        weight = sum(k * lv for lv, k in sent.items())
        spread = sum(k * lv * lv for lv, k in sent.items()) - weight * weight / n
        if spread <= 1e-9:
            return 0.0  # every request at one level: nothing to compare with
        if share >= 1.0:
            return math.inf  # all the requests sent at several levels refused: a limit
        rise = sum(k * lv for lv, k in refused.items()) - share * weight
        return rise / math.sqrt(share * (1 - share) * spread)

    def held_back(self) -> str | None:
        """For the progress line: the pace when the provider's stated limits bound the run, else the window when a rate
        limit holds it below the configured concurrency, else None."""
        if self.pace is not None and self.pace.binds(self.limit):
            return f"paced to the provider's stated {self.pace.said()}"
        size = int(self.limit)
        return f"window {size} of {self.concurrency}: a rate limit" if self.cuts and size < self.concurrency else None

    def figures(self) -> dict[str, Any]:
        """For a summary: the configured concurrency, the window at the end and its smallest size, its cuts, and the
        refusals (429) it saw and of those the ones it took as noise."""
        return {
            "configured": self.concurrency,
            "final_limit": round(self.limit, 2),
            "min_limit": round(self.min_limit, 2),
            "cuts": self.cuts,
            "rate_limited": self.refusals,
            "taken_as_noise": self.noise,
            **(self.pace.figures() if self.pace is not None else {}),
        }

    def _judge(self, level: int, sent: float, now: float) -> None:
        """A request a rate limit refused: the window cut when refusals rise with the level up to its own."""
        self.refusals += 1
        self.refused[level] = self.refused.get(level, 0.0) + 1
        if sent < self.cut_at or self.since_cut < MIN_ANSWERS:
            return  # sent before the last cut: it met the limit that cut found
        span = FIRST_SPAN if not self.cuts else 1.0
        sure = STRONG_Z if self.since_cut < int(min(self.limit, level) * span) else Z  # within a burst: only if plain
        if self.trend(level) > sure:
            self._cut(level, now)
        else:
            self.noise += 1

    def _grow(self, slots: int) -> None:
        old, step = self.limit, slots / self.limit
        if self.ceiling is not None and self.limit + step > self.ceiling - 1:
            step /= PROBE  # near where the last cut found the limit: probe it slowly
        self.limit = min(float(self.concurrency), self.limit + step)
        self._moved(old, "grew")

    def _cut(self, level: int, now: float) -> None:
        """Cut to `CUT` of the work in flight at which requests met the limit: `level` requests, in slots of work (work
        spends part of its time off the wire: its slots over its requests there now)."""
        old = self.limit
        work = self.in_flight() if self.in_flight is not None else level
        at_wire = self.wire.in_flight if self.wire is not None else work
        found = max(1.0, work * level / max(1, at_wire))
        self.cut_at = now
        self.ceiling = found
        self.limit = max(1.0, min(self.limit, found) * CUT)
        self.min_limit = min(self.min_limit, self.limit)
        self.since_cut = 0
        self.cuts += 1
        self._moved(old, "rate_limited")

    def _moved(self, old: float, why: str) -> None:
        if self.on_move is not None and int(self.limit) != int(old):
            self.on_move(old, self.limit, why)

    def _fade(self) -> None:
        self.counted += 1
        if self.counted < HALF_LIFE:
            return
        self.counted = 0
        for counts in (self.started, self.refused):
            for level in counts:
                counts[level] /= 2


class Pace:
    """When work may start so that a run keeps under the per-minute limits its provider states (`wire`): pieces of
    work start at most at the rate the tightest limit allows (`PACE_SHARE` of it: its requests a second, or its tokens a
    second over a request's), over the requests and tokens a piece of work takes (moving means over the work that
    succeeded). No pace until a reply states a limit."""

    def __init__(self, wire: RateLimits):
        self.wire = wire
        self.requests = 0.0  # moving means over the work that succeeded: its requests,
        self.slot_seconds = 0.0  # its slots times its seconds,
        self.tokens = {"tokens": 0.0, "input-tokens": 0.0, "output-tokens": 0.0}  # and its tokens
        self.per_s = math.inf  # the pieces of work a second the tightest limit allows
        self.bound_by: str | None = None  # that limit
        self.next_at = float("-inf")  # when the next piece of work may start

    def wait_s(self, now: float) -> float | None:
        """Seconds until the next piece of work may start (None: it may start now)."""
        return self.next_at - now if self.next_at > now else None

    def start(self, now: float) -> None:
        """A piece of work starts at `now`."""
        if self.per_s == math.inf and self.wire.per_minute:  # a limit stated before any work succeeded: reckoned
            self._reckon()  # at a request a piece
        if self.per_s < math.inf:
            self.next_at = max(self.next_at, now) + 1.0 / self.per_s

    def answer(self, slots: int, seconds: float, calls: Iterable[Any]) -> None:
        """Work of `slots` succeeded after `seconds`, its `calls` (CallInfo) made."""
        sent = [call for call in calls if not call.cache_hit]
        if not sent or seconds <= 0:
            return
        prompt = sum(call.prompt_tokens for call in sent)
        completion = sum(call.completion_tokens for call in sent)
        weight = PACE_MEMORY if self.requests else 1.0
        self.requests += weight * (len(sent) - self.requests)
        self.slot_seconds += weight * (slots * seconds - self.slot_seconds)
        for unit, used in (("tokens", prompt + completion), ("input-tokens", prompt), ("output-tokens", completion)):
            self.tokens[unit] += weight * (used - self.tokens[unit])
        self._reckon()

    def _reckon(self) -> None:
        """The pieces of work a second the tightest stated limit allows, from the moving means (before any work
        succeeded: a request a piece, and no limit on tokens)."""
        requests = self.requests or 1.0
        per_request = {"requests": 1.0, **{unit: used / requests for unit, used in self.tokens.items()}}
        allowed = {
            unit: limit / 60.0 / per_request[unit]
            for unit, limit in self.wire.stated().items()
            if limit > 0 and per_request.get(unit, 0) > 0
        }
        if allowed:
            self.bound_by = min(allowed, key=allowed.__getitem__)
            self.per_s = PACE_SHARE * allowed[self.bound_by] / requests

    def binds(self, slots: float) -> bool:
        """Whether the pace, not a window of `slots`, bounds how fast work starts."""
        return self.per_s < math.inf and self.slot_seconds > 0 and self.per_s < slots / self.slot_seconds

    def said(self) -> str:
        """The limit it keeps to, in words ('3,000 requests a minute')."""
        unit = self.bound_by or "requests"
        return f"{self.wire.stated().get(unit, 0):,.0f} {unit.replace('-', ' ')} a minute"

    def figures(self) -> dict[str, Any]:
        """For a summary: the limits stated, per minute, the one the run kept to, and the requests a minute it kept to."""
        stated = self.wire.stated()
        if not stated:
            return {}
        aimed = round(self.per_s * self.requests * 60) if self.per_s < math.inf else None
        return {"stated_per_minute": stated, "paced_by": self.bound_by, "paced_to_requests_per_minute": aimed}


def rate_limit_line(figures: dict[str, Any]) -> str | None:
    """What a summary says of the rate limits a run met (None when it met none), from its window's `figures`: the
    provider's stated limit it kept under, the window cut for a provider's limit, or the refusals taken as noise with
    the window kept."""
    said = []
    unit = figures.get("paced_by")
    if unit:
        limit = (figures.get("stated_per_minute") or {}).get(unit, 0)
        said.append(f"kept under the provider's stated {limit:,.0f} {unit.replace('-', ' ')} a minute")
    refused = figures.get("rate_limited") or 0
    if refused:
        said.append(f"{refused} requests refused (429) and sent again after their Retry-After")
    if figures.get("cuts"):
        said.append(
            f"the provider's limit cut the window {figures['cuts']} times, to {int(figures['min_limit'])} of "
            f"{figures['configured']} in flight at least ({int(figures['final_limit'])} at the end): the run went "
            "slower than its concurrency for it"
        )
    elif refused:
        said.append("the same share was refused at every load, so the window kept its size (noise, no limit)")
    return "; ".join(said) or None
