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
with the level up to the refused request's (a one-sided trend test at `Z`, `FIRST_Z` before the first cut, that
request left out).

Requests sent before the last cut do not judge it again (cascade dampening: the burst of refusals one window meets is
one signal, not many). It judges once per window's worth of answers since its last cut (the refusals of a window
below a limit are as rare as its noise; the first time after `FIRST_SPAN` windows' worth, as at a run's start each
level has an answer or two), sooner only when the rise is plain (`STRONG_Z`: a cap met at once). It grows back by about
one piece of work per window of successes up to the configured concurrency, `PROBE` times slower within one of the
work in flight where its last cut found the limit (probing: the limit may have moved, and a window that meets it again
at once pays a 429 each time), and twice as slow again each time a cut finds the limit there again, up to `PROBE_MOST`
times (a probe of a cap of two is half as many again: a run held there would otherwise pay a 429 every few
requests). The counts are halved every `HALF_LIFE` requests, so what a provider did long ago fades.

Where the provider states its per-minute limits in its replies' headers, the run keeps under them before they are hit
(`Pace`): work starts no faster than the tightest allows.

A per-minute limit the provider does not state is told from a cap after a cut: a cap refuses nothing at the levels
the requests it admits are sent at (noise aside), however far above it the cut left the window; a per-minute limit
refuses there as much as anywhere, since it counts requests over time, not in flight. When the requests sent since the
cut at or under the median level of those admitted are refused more plainly than noise (`above`, at `Z`: more than
`RATE_SHARE` and more than the share refused at the lower levels before the first cut), the limit is a rate: the run
is paced (`Pace.found_limit`) to `PACE_SHARE` of the rate its requests sent since the cut were admitted at (the limit's
bucket is empty then: what it admits is what it allows), the window goes back to its size before the cut (a window of
whole requests cannot hold a rate), and the pace grows by `PACE_GROWTH` a second (the limit may be higher). A
per-minute limit whose level (its rate times the latency) is a request or two is much like a cap: the window, cut at
one level again and again and probing it ever more slowly, holds it as it holds a cap.
Whenever the last `PACED_ANSWERS` requests under the pace are refused more plainly than `PACED_SHARE` and that noise,
the pace grew past the limit: the run is paced again to the rate admitted since the pace began. Once paced so, the
refusals are the pace's to answer: they cut the window no more. Each pace is on trial (`Trial`): a limit refuses far
fewer under it, noise as many at any pace, so one that does not halve the share refused within `TRIAL_ANSWERS` is set
once more to the rate admitted under it, then taken back, and that share counts as noise from then on.

Each refused request waits for its own Retry-After (the engine's retry queue); the others go on. The window's moves
and the refusals it took as noise are its figures: the summary's `concurrency`, the progress line, the metrics.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from refed_dspy.clients.rate_limits import RateLimits

CUT = 0.75  # the window after a cut, against before
Z = 3.0  # how sure the controller is that refusals rise with the requests in flight before it cuts
FIRST_Z = 3.5  # ... before its first cut (judged at each refusal, many looks a run: at Z, a steady 20% refused at
# random cut one run of 3,000 requests in 8; after a cut, a limit met again is found at Z, with fewer refusals)
MIN_ANSWERS = 8  # requests, at least, before the controller judges them
HALF_LIFE = 4000  # requests after which every count is halved
FIRST_SPAN = 2.0  # windows' worth of answers before the first judgement (the counts are thin before)
STRONG_Z = 4.0  # ... unless the refusals rise so plainly (a cap met at once): then after MIN_ANSWERS
PROBE = 8  # near the level of its last cut, the window grows this many times slower
PROBE_MOST = 16  # ... twice as slow at each cut again at that level, up to this
PACE_SHARE = 0.95  # of a limit the provider states, what the window keeps to
PACE_MEMORY = 0.1  # the weight of each piece of work that succeeded in the moving means the pace is reckoned from
RATE_SHARE = 0.2  # refused more than this (and than noise) where the requests admitted since a cut went: a rate
AFTER_ANSWERS = 10  # windows' worth of requests since a cut, at most, that the finding of a rate is judged on
PACED_ANSWERS = 100  # the last requests answered under a pace, the share refused is judged on
PACED_LEAST = 10  # ... judged once this many are in
PACED_SHARE = 0.01  # ... refused more than this (and than the noise found): the pace grew past the limit
TRIAL_ANSWERS = 40  # requests answered under a pace just set: refused half as often as before it, or it is taken back
KEPT_S = 30.0  # seconds of sends and refusals kept: the most a rate admitted is reckoned over
PACE_GROWTH = 0.01  # a pace to a limit found grows by this share a second
GROWTH_S = 600.0  # ... for at most this many seconds (far past any limit by then: refusals pace it again)


class Window:
    """The window of work in flight (see the module docstring); `limit` is its size now, in slots of the engine's
    work. `on_move(old, new, why)` hears each move to another whole number ("rate_limited", "grew"): a run's events.

    An LM spread over several endpoints (`wire.endpoints`) has a window for each (`endpoints`, by URL), in requests
    at that endpoint: each hears its endpoint's requests, cuts for its limit and grows back with its successes, and
    the spread sends a request only where a window has room (refed_dspy.clients.lm.EndpointSpread). This one then
    hears none: one endpoint's limit leaves the others' requests, and the work in flight, as they were.

    Args:
        concurrency: the most slots of work in flight, as configured.
        wire: the role's LM's requests at the wire and the limits its replies state (None: not heard there; the
            engine tells the window of each piece of work as one request instead).
        in_flight: the slots of work in flight now (what a cut cuts from).
        endpoint: the URL of the endpoint whose requests alone it hears (one of another window's `endpoints`).
    """

    def __init__(
        self,
        concurrency: int,
        wire: RateLimits | None = None,
        in_flight: Callable[[], int] | None = None,
        endpoint: str | None = None,
    ):
        self.concurrency = concurrency
        self.wire = wire
        self.in_flight = in_flight
        self.endpoint = endpoint
        self.pace = Pace(wire if endpoint is None else None)  # the run is paced, not an endpoint
        ends = wire.endpoints if wire is not None and endpoint is None else {}
        self.endpoints = {url: Window(concurrency, ew, _count_of(ew), url) for url, ew in ends.items()}
        self.sends: list[float] = []  # when each request of the last KEPT_S seconds was sent, in order
        self.refused_sends: list[float] = []  # ... and when each refused one was
        self.after: AfterCut | None = None  # the requests sent since a cut, until it is told a cap or a rate
        # the share refused under the first cut before it (or under a pace taken back): noise, not a limit
        self.floor: float | None = None
        self.paced: tuple[float, float] | None = None  # a pace found: since when, and the noise found before it
        self.trial: Trial | None = None  # a pace just set, until its first TRIAL_ANSWERS show whether refusals fell
        self.last_answers: deque[bool] = deque()  # the last PACED_ANSWERS requests answered under it: refused?
        self.last_refused = 0
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
        self.probe = PROBE  # how many times slower the window grows near it
        self.cut_at = float("-inf")  # when (the engine's clock)

    def hear(self, on: bool) -> None:
        """Hear the role's requests at the wire (while a run uses its LM), or stop: each endpoint's window its own
        requests where the LM spreads over several, else this one them all."""
        if self.wire is None:
            return
        for window in list(self.endpoints.values()) or [self]:
            wire = window.wire
            assert wire is not None
            if on:
                wire.listener = window
            elif wire.listener is window:
                wire.listener = None

    def sent(self, level: int, now: float) -> None:
        """A request is sent at `now` with `level` requests of its role in flight, its own included (any thread)."""
        level = max(1, level)
        with self._lock:
            self.started[level] = self.started.get(level, 0.0) + 1
            bisect.insort(self.sends, now)

    def answered(self, level: int, refused: bool, sent: float, now: float) -> None:
        """The request sent at `sent` with `level` requests in flight (told to `sent` then) was answered at `now`:
        refused by a rate limit (429) or not (any thread)."""
        level = max(1, level)
        with self._lock:
            self.since_cut += 1
            self._fade()
            if refused:
                bisect.insort(self.refused_sends, sent)
                self._judge(level, sent, now)
            elif self.endpoint is not None and level >= self.limit - 1:
                self._grow(1)  # an endpoint's window is of its requests: each answered where it was full grows it
            self._after_cut(level, refused, sent, now)
            self._under_pace(refused, sent, now)
            self._forget(now)

    def answer(self, slots: int, succeeded: bool, seconds: float = 0.0, calls: Iterable[Any] = ()) -> None:
        """Work of `slots` ended after `seconds`: succeeded (the window grows; its `calls`, CallInfo, tell the pace
        what a piece of work asks of the provider) or not."""
        if succeeded:
            with self._lock:
                self._grow(slots)
            self.pace.answer(slots, seconds, calls)

    def trend(self, level: int) -> float:
        """How surely refusals rise with the level up to `level`, where a request was just refused (Cochran-Armitage's
        test for a trend in the share refused across the levels up to it, as a z score), that request left out: the
        test is asked because of it, so it would always put a refusal at the top level (with few requests there, a
        steady share refused at random then reads as a rise). 0 when nothing says so: too few requests, no other
        refused, or all of them sent at one level; infinite when all those sent at several levels were refused."""
        if not self.refused.get(level):
            return 0.0
        sent = {lv: max(0.0, k - (lv == level)) for lv, k in self.started.items() if lv <= level}  # does it rise?
        # never more refused than sent at a level (a halving between a request's send and its refusal halved the send)
        refused = {
            lv: min(max(0.0, k - (lv == level)), sent.get(lv, 0.0)) for lv, k in self.refused.items() if lv <= level
        }
        n = sum(sent.values())
        r = sum(refused.values())
        if n < MIN_ANSWERS or r <= 0:
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
        if self.pace.binds(self.limit):
            return f"paced to {self.pace.said()}"
        if self.endpoints:  # the run is held back only when its endpoints' windows together are
            sizes = [int(window.limit) for window in self.endpoints.values()]
            if sum(sizes) >= self.concurrency:
                return None
            return f"windows {' + '.join(map(str, sizes))} of {self.concurrency} at its endpoints: rate limits"
        size = int(self.limit)
        return f"window {size} of {self.concurrency}: a rate limit" if self.cuts and size < self.concurrency else None

    def figures(self) -> dict[str, Any]:
        """For a summary: the configured concurrency, the window at the end and its smallest size, its cuts, and the
        refusals (429) it saw and of those the ones it took as noise; with a window for each endpoint, those of each
        (`endpoints`, by URL) and their sums."""
        ends = {url: window.figures() for url, window in self.endpoints.items()}
        stated = self.wire.stated() if self.endpoint is not None and self.wire is not None else {}
        return {
            "configured": self.concurrency,
            "final_limit": round(self.limit, 2),
            "min_limit": round(self.min_limit, 2),
            "cuts": self.cuts + sum(e["cuts"] for e in ends.values()),
            "rate_limited": self.refusals + sum(e["rate_limited"] for e in ends.values()),
            "taken_as_noise": self.noise + sum(e["taken_as_noise"] for e in ends.values()),
            **({"endpoints": ends} if ends else {}),
            **self.pace.figures(),
            **({"stated_per_minute": stated} if stated else {}),  # an endpoint's own, where it states some
        }

    def _judge(self, level: int, sent: float, now: float) -> None:
        """A request a rate limit refused: the window cut when refusals rise with the level up to its own."""
        self.refusals += 1
        self.refused[level] = self.refused.get(level, 0.0) + 1
        if sent < self.cut_at or self.since_cut < MIN_ANSWERS:
            return  # sent before the last cut: it met the limit that cut found
        if self.paced is not None:
            return  # a rate limit found: the pace answers for its refusals (`_under_pace`), not the window
        span = FIRST_SPAN if not self.cuts else 1.0
        sure = Z if self.cuts else FIRST_Z
        if self.since_cut < int(min(self.limit, level) * span):
            sure = STRONG_Z  # within a burst: only if plain
        if self.trend(level) > sure:
            self._cut(level, now)
        else:
            self.noise += 1

    def _after_cut(self, level: int, refused: bool, sent: float, now: float) -> None:
        """A request sent since the last cut: a limit on requests in flight refuses none of those sent at the levels its
        admitted requests were sent at (noise aside), a per-minute limit refuses there as much as anywhere: then the
        run is paced to the rate its requests were admitted at, and the window, which cannot hold a rate, goes back to
        its size before the cut."""
        after = self.after
        if after is None or sent <= self.cut_at:
            return
        after.heard.append((level, refused))
        heard = len(after.heard)
        if heard < 2 * MIN_ANSWERS or heard & (heard - 1):
            return  # judged when the requests heard are 16, 32, 64, ...: a few looks, not one at each answer
        low, low_refused = after.low()
        if low >= MIN_ANSWERS and above(low_refused, low, after.floor, RATE_SHARE) > Z:
            self.after = None
            self.limit = max(self.limit, after.before)
            self.ceiling, self.probe = None, PROBE  # a rate, not a cap: nothing to probe
            self._pace_to_admitted(now, self.cut_at, after.floor, low_refused / low)
        elif heard >= AFTER_ANSWERS * max(after.window, MIN_ANSWERS):
            self.after = None  # heard enough: a cap (or noise)

    def _under_pace(self, refused: bool, sent: float, now: float) -> None:
        """Under a pace found so: when the last PACED_ANSWERS requests show more refused than its noise (the pace grew
        past the limit), paced again to the rate the requests since the pace began were admitted at."""
        if self.paced is None or sent <= self.paced[0]:
            return
        since, floor = self.paced
        last = self.last_answers
        last.append(refused)
        self.last_refused += refused
        if len(last) > PACED_ANSWERS:
            self.last_refused -= last.popleft()
        if self.trial is not None:
            if len(last) >= TRIAL_ANSWERS:
                self._end_trial(now)
        elif len(last) >= PACED_LEAST and above(self.last_refused, len(last), floor, PACED_SHARE) > Z:
            self._pace_to_admitted(now, since, floor, self.last_refused / len(last))

    def _pace_to_admitted(
        self, now: float, since: float, floor: float, share: float, trial: Trial | None = None
    ) -> None:
        """Pace the run to the rate requests sent since `since` (within the last KEPT_S) were admitted at (a limit's
        bucket is empty then: what it admits is what it allows), `share` of them refused; on trial until the first
        TRIAL_ANSWERS under it are in (`trial`: its second, after a first that did not lower the refusals)."""
        pace = self.pace
        self.trial = trial or Trial(share, pace.unstated_per_s, pace.unstated_at, pace.found, self.paced)
        since = max(since, now - KEPT_S)
        sent = len(self.sends) - bisect.bisect_left(self.sends, since)
        refused = len(self.refused_sends) - bisect.bisect_left(self.refused_sends, since)
        self.pace.found_limit(max(1, sent - refused) / (now - since), now)
        self.paced = (now, floor)
        self.last_answers.clear()
        self.last_refused = 0

    def _end_trial(self, now: float) -> None:
        """A pace's first TRIAL_ANSWERS are in: a limit refuses far fewer under it (kept); noise refuses as many at any
        pace. One that did not halve the share refused is set again to the rate admitted under it (it may have been
        reckoned over a limit's first burst); when that does not either, it is taken back, and that share is noise
        from then on."""
        trial, self.trial = self.trial, None
        share = self.last_refused / len(self.last_answers)
        if trial is None or share <= trial.share / 2 or self.paced is None:
            return
        if not trial.again:
            trial.again = True
            self._pace_to_admitted(now, self.paced[0], self.paced[1], share, trial)
            return
        self.pace.unstated_per_s, self.pace.unstated_at, self.pace.found = trial.per_s, trial.at, trial.found
        self.floor = max(self.floor or 0.0, share)
        self.paced = None if trial.paced is None else (trial.paced[0], max(trial.paced[1], share))
        self.last_answers.clear()
        self.last_refused = 0

    def _forget(self, now: float) -> None:
        """Drop the sends and refusals older than KEPT_S (in batches, not at every request)."""
        for times in (self.sends, self.refused_sends):
            if len(times) > 256 and times[0] < now - 2 * KEPT_S:
                del times[: bisect.bisect_left(times, now - KEPT_S)]

    def _grow(self, slots: int) -> None:
        old, step = self.limit, slots / self.limit
        if self.ceiling is not None and self.limit < self.ceiling + 1 and self.limit + step > self.ceiling - 1:
            step /= self.probe  # near where the last cut found the limit: probe it slowly
        self.limit = min(float(self.concurrency), self.limit + step)
        self._moved(old, "grew")

    def _cut(self, level: int, now: float) -> None:
        """Cut to `CUT` of the work in flight at which requests met the limit: `level` requests, in slots of work (work
        spends part of its time off the wire: its slots over its requests there now), no more than the window. A limit
        met again within one of where the last cut found it is probed twice as slowly as before (`_grow`)."""
        old = self.limit
        work = self.in_flight() if self.in_flight is not None else level
        at_wire = self.wire.in_flight if self.wire is not None else work
        found = min(old, max(1.0, work * level / max(1, at_wire)))  # the window met the limit: it is no higher
        self.cut_at = now
        again = self.ceiling is not None and abs(found - self.ceiling) < 1  # the same limit met again: probe slower
        self.probe = min(PROBE_MOST, 2 * self.probe) if again else PROBE
        self.ceiling = found
        self.limit = max(1.0, found * CUT)
        self.min_limit = min(self.min_limit, self.limit)
        self.since_cut = 0
        self.cuts += 1
        if self.floor is None:  # the first cut: what the levels under it were refused before any limit was met
            low = [lv for lv in self.started if lv <= max(1.0, self.limit / 2)]
            sent = sum(self.started[lv] for lv in low)
            self.floor = sum(self.refused.get(lv, 0.0) for lv in low) / sent if sent else 0.0
        # a pace found holds the rate: the cuts after it are caps' (an endpoint's window holds a rate as a cap: the run
        # is paced, not an endpoint)
        if self.paced is None and self.after is None and self.endpoint is None:
            self.after = AfterCut(self.limit, old, self.floor)
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


def _count_of(wire: RateLimits) -> Callable[[], int]:
    """An endpoint's requests in flight, read as its window cuts (its window is of its requests)."""
    return lambda: wire.in_flight


@dataclass
class AfterCut:
    """The requests sent since a cut of the window to `window` (from `before`), each (its level, refused?), and the
    share refused before the first cut at the levels under it (`floor`: their noise)."""

    window: float
    before: float
    floor: float
    heard: list[tuple[int, bool]] = field(default_factory=list)

    def low(self) -> tuple[int, int]:
        """The requests heard at or under the median level the admitted ones were sent at, and of those the refused:
        under a cap none are refused there however far above it the cut left the window; under a per-minute limit as
        many as anywhere. None until MIN_ANSWERS // 2 are admitted (a refusal comes back before an answer)."""
        admitted = sorted(level for level, refused in self.heard if not refused)
        if len(admitted) < MIN_ANSWERS // 2:
            return 0, 0
        median = admitted[(len(admitted) - 1) // 2]
        low = [refused for level, refused in self.heard if level <= median]
        return len(low), sum(low)


@dataclass
class Trial:
    """A pace on trial: the `share` refused that set it, and the pace (`per_s`, set `at`, the limits `found`) and the
    `paced` state before it (`again`: set a second time)."""

    share: float
    per_s: float
    at: float
    found: int
    paced: tuple[float, float] | None
    again: bool = False  # its second pace


def above(refused: float, sent: float, floor: float, least: float) -> float:
    """How surely `refused` of `sent` is more than the share `floor` (its noise) and than `least`: a one-sided
    binomial z score (0 with nothing sent, or against a share of all)."""
    share = max(floor, least)
    if sent <= 0 or share >= 1.0:
        return 0.0
    return (refused - sent * share) / math.sqrt(sent * share * (1 - share))


class Pace:
    """When work may start so that a run keeps under a per-minute limit: the tightest its provider states (`wire`; at
    `PACE_SHARE` of it: its requests a second, or its tokens a second over a request's, over the requests and tokens
    a piece of work takes, moving means over the work that succeeded), or the one the window found where none is stated
    (`found_limit`: `PACE_SHARE` of the requests a second it admitted, growing by `PACE_GROWTH` a second). No pace until
    a reply states a limit or the window finds one."""

    def __init__(self, wire: RateLimits | None):
        self.wire = wire
        self.requests = 0.0  # moving means over the work that succeeded: its requests,
        self.slot_seconds = 0.0  # its slots times its seconds,
        self.tokens = {"tokens": 0.0, "input-tokens": 0.0, "output-tokens": 0.0}  # and its tokens
        self.stated_per_s = math.inf  # the pieces of work a second the tightest stated limit allows
        self.bound_by: str | None = None  # that limit
        self.found = 0  # limits found where none is stated
        self.unstated_per_s = math.inf  # requests a second the last one found admitted, times PACE_SHARE
        self.unstated_at = 0.0  # ... when (it grows by PACE_GROWTH a second since)
        self.per_s = math.inf  # the pieces of work a second the run is paced to now
        self.next_at = float("-inf")  # when the next piece of work may start

    def wait_s(self, now: float) -> float | None:
        """Seconds until the next piece of work may start (None: it may start now)."""
        return self.next_at - now if self.next_at > now else None

    def start(self, now: float) -> None:
        """A piece of work starts at `now`."""
        if self.stated_per_s == math.inf and self.wire is not None and self.wire.stated():
            self._reckon()  # a limit stated before any work succeeded: reckoned at a request a piece
        unstated = self.unstated_per_s
        if unstated < math.inf:  # grown since it was found (capped: a float power of a clock's seconds overflows)
            unstated *= (1 + PACE_GROWTH) ** min(now - self.unstated_at, GROWTH_S)
        per_piece = (self.requests or 1.0) if self.wire is not None else 1.0  # unheard: a piece is one request
        self.per_s = min(self.stated_per_s, unstated / per_piece)
        if self.per_s < math.inf:
            self.next_at = max(self.next_at, now) + 1.0 / self.per_s

    def found_limit(self, admitted_per_s: float, now: float) -> None:
        """A per-minute limit its provider does not state admitted `admitted_per_s` requests a second."""
        self.found += 1
        self.unstated_per_s, self.unstated_at = PACE_SHARE * admitted_per_s, now

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

    def stated(self) -> dict[str, float]:
        """The limits the provider states, per minute."""
        return self.wire.stated() if self.wire is not None else {}

    def _reckon(self) -> None:
        """The pieces of work a second the tightest stated limit allows, from the moving means (before any work
        succeeded: a request a piece, and no limit on tokens)."""
        requests = self.requests or 1.0
        per_request = {"requests": 1.0, **{unit: used / requests for unit, used in self.tokens.items()}}
        allowed = {
            unit: limit / 60.0 / per_request[unit]
            for unit, limit in self.stated().items()
            if limit > 0 and per_request.get(unit, 0) > 0
        }
        if allowed:
            self.bound_by = min(allowed, key=allowed.__getitem__)
            self.stated_per_s = PACE_SHARE * allowed[self.bound_by] / requests

    def binds(self, slots: float) -> bool:
        """Whether the pace, not a window of `slots`, bounds how fast work starts."""
        return self.per_s < math.inf and self.slot_seconds > 0 and self.per_s < slots / self.slot_seconds

    def said(self) -> str:
        """The limit it keeps to, in words ("the provider's stated 3,000 requests a minute")."""
        if self.per_s < self.stated_per_s:
            return f"{self._aimed():,} requests a minute, under a limit the provider does not state"
        unit = self.bound_by or "requests"
        whose = "its endpoints' stated" if self.wire is not None and self.wire.endpoints else "the provider's stated"
        return f"{whose} {self.stated().get(unit, 0):,.0f} {unit.replace('-', ' ')} a minute"

    def _aimed(self) -> int | None:
        """The requests a minute the pace keeps to now (None: none)."""
        return round(self.per_s * (self.requests or 1.0) * 60) if self.per_s < math.inf else None

    def figures(self) -> dict[str, Any]:
        """For a summary: the limits stated, per minute, the one the run kept to, the limits found where none is
        stated, and the requests a minute it kept to."""
        stated = self.stated()
        if not stated and not self.found:
            return {}
        found = {"limits_found": self.found} if self.found else {}
        aimed = {"paced_to_requests_per_minute": self._aimed()}
        return {"stated_per_minute": stated, "paced_by": self.bound_by, **aimed, **found}


def rate_limit_line(figures: dict[str, Any]) -> str | None:
    """What a summary says of the rate limits a run met (None when it met none), from its window's `figures`: the
    provider's stated limit it kept under, the per-minute limit it found unstated, the window cut for a provider's
    limit, or the refusals taken as noise with the window kept."""
    said = []
    unit = figures.get("paced_by")
    if unit:
        limit = (figures.get("stated_per_minute") or {}).get(unit, 0)
        whose = "its endpoints' stated" if figures.get("endpoints") else "the provider's stated"
        said.append(f"kept under {whose} {limit:,.0f} {unit.replace('-', ' ')} a minute")
    elif figures.get("limits_found"):
        aimed = figures.get("paced_to_requests_per_minute")
        said.append(
            "a per-minute limit the provider does not state refused requests at any load: the run was paced under it"
            + (f" (about {aimed:,} requests a minute at the end)" if aimed else "")
        )
    refused = figures.get("rate_limited") or 0
    if refused:
        stood = figures.get("stood_in") or 0
        said.append(
            f"{refused} requests refused (429) and sent again after their Retry-After"
            + (f", but for {stood} whose work other work stood in for" if stood else "")
        )
    ends = figures.get("endpoints") or {}
    if ends and figures.get("cuts"):
        cut = {url: e for url, e in ends.items() if e["cuts"]}
        said.extend(
            f"the limit of {url} cut its window {e['cuts']} times, to {int(e['min_limit'])} of {e['configured']} "
            f"in flight at least ({int(e['final_limit'])} at the end)"
            for url, e in cut.items()
        )
        if len(cut) < len(ends):
            said.append("the endpoints that met no limit took the rest")
    elif figures.get("cuts"):
        said.append(
            f"the provider's limit cut the window {figures['cuts']} times, to {int(figures['min_limit'])} of "
            f"{figures['configured']} in flight at least ({int(figures['final_limit'])} at the end): the run went "
            "slower than its concurrency for it"
        )
    elif refused and not figures.get("limits_found"):
        said.append("the same share was refused at every load, so the window kept its size (noise, no limit)")
    return "; ".join(said) or None
