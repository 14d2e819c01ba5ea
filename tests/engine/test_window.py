"""The window of calls in flight tells a provider's limit from noise (issue 67), on a simulated server and clock: work
of one request each, 100 ms a request, a refusal answered at once and sent again after its Retry-After (not holding a
slot), as the engine does; each request counted at the requests in flight when it was sent. Figures are ratios of
simulated time; nothing here waits."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from refed_dspy.engine import window
from refed_dspy.engine.window import Window, rate_limit_line

Refuse = Callable[[int, random.Random], bool]  # (calls in flight at the server with this one, rng) -> a 429?


def simulate(tasks: int, concurrency: int, refuse: Refuse, retry_after: float = 1.0, latency: float = 0.1):
    """Run `tasks` pieces of work through a Window; returns (seconds, requests, refused, window)."""
    rng, win = random.Random(1), Window(concurrency)
    now, todo, in_flight, done, requests, refused, seq = 0.0, tasks, 0, 0, 0, 0, 0
    answers: list[tuple[float, int, int, bool, float]] = []
    waiting: list[float] = []  # when each refused piece may go again
    while done < tasks:
        while in_flight < int(win.limit) and (todo or (waiting and waiting[0] <= now)):
            if waiting and waiting[0] <= now:
                heapq.heappop(waiting)
            else:
                todo -= 1
            in_flight += 1
            win.sent(in_flight)
            requests += 1
            no = refuse(in_flight, rng)
            refused += no
            seq += 1
            heapq.heappush(answers, (now + (0.01 if no else latency), seq, in_flight, no, now))
        if waiting and in_flight < int(win.limit) and (not answers or waiting[0] < answers[0][0]):
            now = waiting[0]
            continue
        now, _, level, no, started = heapq.heappop(answers)
        in_flight -= 1
        win.answered(level, no, started, now)
        win.answer(1, not no)
        if no:
            heapq.heappush(waiting, now + retry_after)
        else:
            done += 1
    return now, requests, refused, win


def at_random(share: float) -> Refuse:
    return lambda n, rng: rng.random() < share


def above(cap: int) -> Refuse:
    return lambda n, rng: n > cap


def test_a_steady_share_of_random_refusals_keeps_the_window():
    """20% of requests refused at random with Retry-After 1 s: the window stays at 40 and the run keeps well over 0.6
    of the clean run's speed (halving on every window that saw a 429, as before, kept it near 0.05)."""
    clean = simulate(3000, 40, at_random(0.0))[0]
    seconds, requests, refused, win = simulate(3000, 40, at_random(0.2))
    assert clean / seconds > 0.6
    assert win.cuts == 0 and win.limit == 40 and win.noise > 0.9 * refused
    assert refused == requests - 3000


def test_a_cap_on_requests_in_flight_is_found_and_held():
    """A server that admits 10 in flight and refuses above: at least 0.85 of a clean run at 10, and 429s at most 10%
    of the requests (the window settles just under the cap, probing it slowly)."""
    clean = simulate(3000, 10, at_random(0.0), retry_after=0.05)[0]
    seconds, requests, refused, win = simulate(3000, 40, above(10), retry_after=0.05)
    assert clean / seconds >= 0.85
    assert refused / requests <= 0.10
    assert win.min_limit >= 7 and win.limit <= 12 and win.cuts > 0


def test_a_cap_with_noise_on_top_is_still_a_cap():
    clean = simulate(3000, 10, at_random(0.0), retry_after=0.05)[0]
    seconds, _, _, win = simulate(3000, 40, lambda n, rng: n > 10 or rng.random() < 0.1, retry_after=0.05)
    assert clean / seconds >= 0.85 and win.min_limit >= 6


def test_the_checks_can_fail(monkeypatch):
    """Cutting on every judged refusal collapses the noisy run; waiting for a window's worth of answers when a cap is
    plain from the first refusals pays more 429s than the cap allows."""
    clean = simulate(3000, 40, at_random(0.0))[0]
    with monkeypatch.context() as patched:
        patched.setattr(window, "Z", -1e9)
        assert clean / simulate(3000, 40, at_random(0.2))[0] < 0.6
    monkeypatch.setattr(window, "STRONG_Z", 1e9)
    _, requests, refused, _ = simulate(3000, 40, above(10), retry_after=0.05)
    assert refused / requests > 0.10


def test_a_burst_is_judged_once():
    """The refusals of requests sent before a cut met the limit that cut found: they do not cut again."""
    win = Window(40)
    for level in range(1, 41):
        win.sent(level)
    for level in range(11, 41):  # a cap at 10: every request sent above it refused at once
        win.answered(level, True, sent=0.0, now=0.01)
    assert win.cuts == 1 and win.limit < 30  # to 3/4 of the work in flight where the rise was plain
    for level in range(11, 41):  # the same burst's work sent again before the cut answered: no second cut
        win.sent(level)
        win.answered(level, True, sent=0.005, now=0.02)
    assert win.cuts == 1
    first = win.limit
    for level in range(11, int(first) + 1):  # requests sent after the cut, still above the cap
        win.sent(level)
        win.answered(level, True, sent=0.02, now=0.03)
    assert win.cuts == 2 and win.limit <= first * 0.75


def test_what_the_summary_says():
    assert rate_limit_line({"rate_limited": 0}) is None
    noise = rate_limit_line({"rate_limited": 12, "cuts": 0, "configured": 40, "min_limit": 40, "final_limit": 40})
    assert noise is not None and "kept its size" in noise
    cut = rate_limit_line({"rate_limited": 30, "cuts": 3, "configured": 40, "min_limit": 9.2, "final_limit": 10.4})
    assert cut is not None and "to 9 of 40 in flight" in cut and "slower than its concurrency" in cut
    paced = rate_limit_line({"rate_limited": 0, "paced_by": "requests", "stated_per_minute": {"requests": 3000.0}})
    assert paced == "kept under the provider's stated 3,000 requests a minute"
