"""A run under rate limits (issue 67): a 429 waits for its Retry-After and goes again without using up the work's
retries; a steady share of random 429s keeps the window, a cap on requests in flight cuts it, a limit the replies state
paces the run under it; a limit that never lets a request through stops the run after `rate_limit_patience_s` with one
line, resumable. How the window tells a limit from noise, on a simulated clock: test_window.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from cli_helpers import lines, run_refed, sets
from conftest import PROVIDER_LATENCY_S, run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.engine.window import rate_limit_line
from refed_dspy.store.jsonl import read_json
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.summary import format_summary


def test_429s_use_no_retries(server_factory, tmp_path):
    """20% of requests refused at random, with no retries allowed for other failures: every sample written once, no
    reject (each 429 used to spend one of `num_retries`: at 0, a reject each), each refusal heard, and the ledger's
    paid calls equal to the server's answered requests."""
    srv = server_factory(rate_429=0.2, retry_after_s=0.2, enforce_retry_after=True)
    run = tmp_path / "run"
    summary = synthesize(
        load_config(None, run_overrides(srv, run, 40, **{"synthesis.concurrency": 16, "teacher.num_retries": 0}))
    )
    samples = lines(run / "samples.jsonl")
    assert summary["status"] == "complete" and len(samples) == 40 == len({r["meta"]["id"] for r in samples})
    assert not [r for r in lines(run / "rejects.jsonl") if r["reason"] == "rate_limited"]
    log = read_log(srv.cfg.log_path)
    refused = sum(1 for e in log if e.get("status") == 429)
    assert summary["concurrency"]["rate_limited"] == refused > 0  # each refusal heard at the wire
    # a piece of work is retried once for its refusals: a feedback task's two requests may both be refused
    assert 0 < summary["retries"]["this_invocation"]["rate_limited"] <= refused
    assert summary["usage"]["calls"] == sum(1 for e in log if e.get("status") == 200)
    assert "early_retry" not in {e.get("fault") for e in log}  # each waited for its Retry-After


def test_a_limit_that_lets_nothing_through_stops_the_run_and_the_same_command_resumes(server_factory, tmp_path):
    refusing = server_factory(rate_429=1.0, retry_after_s=0.1)
    run = tmp_path / "run"
    over = run_overrides(refusing, run, 12, **{"teacher.rate_limit_patience_s": 1})
    code, _, err = run_refed("synthesize", *sets(over), timeout=120)
    said = [line for line in err.splitlines() if "rate limited for 1s" in line]
    assert code == 3 and len(said) == 1 and "Traceback" not in err, err[-2000:]
    assert "run the same command again" in said[0]
    healed = server_factory()
    code, _, err = run_refed("synthesize", *sets(run_overrides(healed, run, 12)), timeout=300)
    assert code == 0, err[-2000:]
    assert len({r["meta"]["id"] for r in lines(run / "samples.jsonl")}) == 12


def test_the_retry_queue_takes_a_429_whatever_the_retries_left():
    from refed_dspy.engine.execution import Retries
    from refed_dspy.engine.failures import Failure

    queue = Retries(max_retries=1, seed=0)
    limited = Failure("rate_limited", "429", retryable=True, retry_after=0.5)
    assert all(queue.schedule("a", limited, ("sample", "a", 1), now=0.0) for _ in range(20))
    assert queue.waiting[-1].due == 0.5  # each after its Retry-After
    failed = Failure("api_error", "500", retryable=True)
    assert queue.schedule("a", failed, ("sample", "a", 1), now=0.0)  # its one retry is still there
    assert not queue.schedule("a", failed, ("sample", "a", 1), now=0.0)


def _complete_run(srv, tmp_path, size: int, concurrency: int) -> tuple[dict, list[dict], int]:
    """A run of `size` samples at `concurrency` against `srv`, checked complete: its summary, the server's log and the
    requests it refused (429)."""
    summary = synthesize(
        load_config(None, run_overrides(srv, tmp_path / "run", size, **{"synthesis.concurrency": concurrency}))
    )
    assert summary["status"] == "complete" and summary["samples"] == size
    log = read_log(srv.cfg.log_path)
    return summary, log, sum(1 for e in log if e.get("status") == 429)


def test_random_429s_keep_the_window(server_factory, tmp_path):
    """20% of requests refused at random: every sample written once, the window kept (a chance cut at most; halving on
    each window that met a 429 took it to 1 or 2), the refusals taken as noise, and the summary says so."""
    srv = server_factory(rate_429=0.2, retry_after_s=0.2, latency_s=PROVIDER_LATENCY_S)
    summary, _, _ = _complete_run(srv, tmp_path, 60, 16)
    window = summary["concurrency"]
    assert window["rate_limited"] > 10 and window["taken_as_noise"] >= window["rate_limited"] - 16
    assert window["cuts"] <= 1 and window["min_limit"] >= 12, window
    assert "kept its size" in format_summary(summary)


def test_a_cap_on_requests_in_flight_is_found(server_factory, tmp_path):
    """A server that admits 6 requests in flight and refuses above, run at 40: the window is cut to the cap and kept
    near it, so that few requests are refused (without the cut most were: every free slot above the cap refused at
    once, again and again)."""
    srv = server_factory(max_concurrency=6, retry_after_s=0.2, latency_s=PROVIDER_LATENCY_S)
    summary, log, refused = _complete_run(srv, tmp_path, 80, 40)
    window = summary["concurrency"]
    assert window["cuts"] >= 1 and window["final_limit"] <= 16, window
    assert refused <= 0.25 * len(log), (refused, len(log), window)
    assert "the provider's limit cut the window" in format_summary(summary)


def test_a_cap_at_one_endpoint_of_two_is_that_endpoints_alone(server_factory, tmp_path):
    """Two endpoints of one model, the first admitting 4 requests in flight, the other any: the first's window is cut
    to its cap, the run's is not, and the other takes the requests the first cannot (at 24 in flight it held up to
    21-22 here and the capped one 5; with one window for both it was cut to 7-9 and the other held 11-12, and the run
    took 2.5 times as long at 400 samples)."""
    capped = server_factory(max_concurrency=4, retry_after_s=0.2, latency_s=PROVIDER_LATENCY_S)
    free = server_factory(latency_s=PROVIDER_LATENCY_S)
    over = run_overrides(capped, tmp_path / "run", 120, **{"synthesis.concurrency": 24})
    both = [o for o in over if not o.startswith("teacher.api_base")]
    summary = synthesize(load_config(None, [*both, f"teacher.api_base=['{capped.api_base}', '{free.api_base}']"]))
    assert summary["status"] == "complete" and summary["samples"] == 120
    window = summary["concurrency"]
    ends = window["endpoints"]
    assert ends[capped.api_base]["cuts"] >= 1 and ends[capped.api_base]["final_limit"] <= 8, window
    assert ends[free.api_base]["cuts"] == 0 and window["min_limit"] == 24, window
    # the capped endpoint's window ends at most 8 (above); the server counts a refused request until its answer is
    # written, and a loaded client that has read the 429 may send its next one first (5 here; 7 once under CI's load)
    assert free.state.max_in_flight >= 15 and capped.state.max_in_flight <= 8, (free.state.max_in_flight, window)
    logs = read_log(capped.cfg.log_path) + read_log(free.cfg.log_path)
    refused = sum(1 for e in logs if e.get("status") == 429)
    assert refused <= 0.1 * len(logs) and summary["usage"]["calls"] == len(logs) - refused, (refused, len(logs))
    said = format_summary(summary)
    assert f"the limit of {capped.api_base} cut its window" in said and "met no limit took the rest" in said, said
    # and in the metrics: each endpoint's window beside the run's
    series = read_json(tmp_path / "run" / "metrics.json")["series"]
    windows = {s["attributes"].get("refed.endpoint"): s["value"] for s in series if s["name"] == "refed.window"}
    assert windows[None] == 24 and windows[free.api_base] == 24 and windows[capped.api_base] <= 8, windows


def test_the_judge_finds_a_cap_too(server_factory, tmp_path):
    """The judge's calls go through the same engine and window: judged at 40 in flight against a judge endpoint that
    admits 6, the window is cut and, once it is, few requests are refused (measured over four runs: 0 to 6 of the
    later half's ~117, the window probing just above the cap), and `refed judge run` says so."""
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(server_factory(), run, 60, **{"synthesis.concurrency": 16})))
    capped = server_factory(max_concurrency=6, retry_after_s=0.2, latency_s=PROVIDER_LATENCY_S)
    judge = {"judge.api_base": f"'{capped.api_base}'", "judge.api_key_env": "''", "judging.concurrency": 40}
    code, out, err = run_refed("judge", "run", str(run), *sets(run_overrides(capped, run, 60, **judge)), timeout=300)
    assert code == 0, err[-2000:]
    summary = json.loads((run / "judge_summary.json").read_text())
    window, log = summary["concurrency"], read_log(capped.cfg.log_path)
    later = log[len(log) // 2 :]  # the first 40 went out before any reply: the burst's refusals are the cap's finding
    refused_later = sum(1 for e in later if e.get("status") == 429)
    assert window["cuts"] >= 1 and window["final_limit"] <= 16 and refused_later <= 0.1 * len(later), (window, later)
    assert "rate limits: " in out and "the provider's limit cut the window" in out


def test_a_stated_requests_per_minute_limit_paces_the_run(server_factory, tmp_path):
    """A server that admits 600 requests a minute (2 s of them at once) and says so in its replies' headers, run at
    16 in flight: the run keeps under it from the replies' word (no more than the limit in any 2 s after the first
    three, once a piece of work has shown how many requests one makes), with almost no request refused, and the
    summary names the limit."""
    srv = server_factory(requests_per_minute=600, rpm_burst_s=2, latency_s=0.02)
    summary, log, refused = _complete_run(srv, tmp_path, 40, 16)
    assert refused <= 0.05 * len(log), (refused, len(log))
    times = sorted(e["t"] for e in log)
    late = [t for t in times if t > times[0] + 3.0]
    busiest = max(sum(1 for u in late if t <= u < t + 2.0) for t in late)
    assert busiest <= 2 * 10 * 1.1, busiest  # 10 a second, over any 2 s
    window = summary["concurrency"]
    assert window["stated_per_minute"] == {"requests": 600.0} and window["paced_by"] == "requests", window
    assert "kept under the provider's stated 600 requests a minute" in format_summary(summary)


def test_two_endpoints_stating_their_limits_pace_the_run_to_their_sum(server_factory, tmp_path):
    """Two endpoints of one model, each admitting 300 requests a minute and saying so: the run keeps under their 600
    together (the last one stated, 300, paced it to half of that before), with almost no request refused, and the
    summary says each endpoint's and their sum."""
    ends = [server_factory(requests_per_minute=300, rpm_burst_s=2, latency_s=0.02) for _ in range(2)]
    over = run_overrides(ends[0], tmp_path / "run", 60, **{"synthesis.concurrency": 16})
    both = [o for o in over if not o.startswith("teacher.api_base")]
    summary = synthesize(load_config(None, [*both, f"teacher.api_base=['{ends[0].api_base}', '{ends[1].api_base}']"]))
    assert summary["status"] == "complete" and summary["samples"] == 60
    log = sorted(read_log(ends[0].cfg.log_path) + read_log(ends[1].cfg.log_path), key=lambda e: e["t"])
    refused = sum(1 for e in log if e.get("status") == 429)
    assert refused <= 0.05 * len(log), (refused, len(log))
    late = [e["t"] for e in log if e["t"] > log[0]["t"] + 3.0 and e.get("status") != 429]
    assert len(late) / (late[-1] - late[0]) > 0.7 * 10, len(late) / (late[-1] - late[0])  # above one endpoint's 5/s
    window = summary["concurrency"]
    assert window["stated_per_minute"] == {"requests": 600.0} and window["paced_by"] == "requests", window
    assert all(e["stated_per_minute"] == {"requests": 300.0} for e in window["endpoints"].values()), window
    assert "kept under its endpoints' stated 600 requests a minute" in format_summary(summary)


def test_a_requests_per_minute_limit_no_header_states_is_held(server_factory, tmp_path):
    """The same kind of limit unstated (no headers, a second of it at once, as a gateway sends it), run at 16 in
    flight: its rate times the latency is 2.5 requests. Before issue 67's checks the window was cut at 2-3 again and
    again, refusing 13-33% of the requests there (41-46% at 40 in flight, bench/rate_limits.py). Now either the
    refusals show a rate and the run is paced to it, or the window, probing ever more slowly where it keeps being cut,
    holds it (a limit of a request or two in flight is much like a cap; 2 of 4 runs here found it): after the first
    8 s few requests are refused, the run keeps to the limit, and the summary says the limit slowed it."""
    srv = server_factory(
        requests_per_minute=600, rpm_burst_s=1, rate_limit_headers=False, retry_after_s=1, latency_s=PROVIDER_LATENCY_S
    )
    summary, log, _ = _complete_run(srv, tmp_path, 90, 16)
    start = min(e["t"] for e in log)
    late = [e for e in log if e["t"] > start + 8.0]
    refused_late = sum(1 for e in late if e.get("status") == 429)
    assert refused_late <= 0.1 * len(late), (refused_late, len(late), summary["concurrency"])
    admitted = sorted(e["t"] for e in late if e.get("status") != 429)
    assert len(admitted) / (admitted[-1] - admitted[0]) > 0.8 * 10  # the limit's 10 a second, kept to
    window = summary["concurrency"]
    assert (window.get("limits_found") or window["cuts"]) and not window.get("stated_per_minute"), window
    said = format_summary(summary)
    assert "a per-minute limit the provider does not state" in said or "the provider's limit cut the window" in said


def test_the_limits_a_reply_states_are_read():
    from refed_dspy.clients.rate_limits import RateLimits

    stated = RateLimits()
    stated.read([("X-RateLimit-Limit-Requests", "3000"), ("x-ratelimit-limit-tokens", "250000"), ("a", "1")])
    stated.read([("x-ratelimit-remaining-requests", "2999"), ("x-ratelimit-limit-tokens", "not a number")])
    assert stated.stated() == {"requests": 3000.0, "tokens": 250000.0}  # what remains is not a limit
    anthropic = RateLimits()
    anthropic.read([("anthropic-ratelimit-input-tokens-limit", "400000"), ("anthropic-ratelimit-requests-limit", "50")])
    assert anthropic.stated() == {"input-tokens": 400000.0, "requests": 50.0}
    # spread over endpoints: each states its own, and the LM's are their sum where every one states that limit
    spread = RateLimits({"a": stated, "b": anthropic})
    assert spread.stated() == {"requests": 3050.0}
    assert RateLimits({"a": stated, "c": RateLimits()}).stated() == {}  # one states none: it may take any number


def test_the_window_hears_each_request_at_the_wire():
    """The LM's transport tells the window each request as it leaves (with the requests at the provider then, its own
    included) and as its reply's headers come: a 429 or not; a request that failed without a reply is heard leaving
    only."""
    from refed_dspy.clients.rate_limits import RateLimitReader, RateLimits

    heard: list[tuple] = []

    class Listener:
        def sent(self, level, now):
            heard.append(("sent", level))

        def answered(self, level, refused, sent, now):
            heard.append(("answered", level, refused))

    class Reply:
        def __init__(self, status):
            self.status, self.headers = status, [("x-ratelimit-limit-requests", "60")]

        async def __aenter__(self):
            await asyncio.sleep(0.01 if self.status == 200 else 0.02)  # the provider holds it a while
            if self.status is None:
                raise ConnectionResetError("reset")
            return self

        async def __aexit__(self, *exc):
            return None

    class Inner:
        def stream(self, request):
            return Reply(request)

    limits = RateLimits()
    limits.listener = Listener()
    reader = RateLimitReader(Inner(), limits)

    async def one(status):
        async with reader.stream(status):
            pass

    async def go():
        await asyncio.gather(one(200), one(429))  # two at once: the second leaves at level 2
        with pytest.raises(ConnectionResetError):
            async with reader.stream(None):
                pass

    asyncio.run(go())
    assert heard == [("sent", 1), ("sent", 2), ("answered", 1, False), ("answered", 2, True), ("sent", 1)]
    assert limits.in_flight == 0 and limits.stated() == {"requests": 60.0}


class _Pool:
    """A stage of `size` samples from a pool of instructions, two refused once by a 429 (Retry-After 2 s): `free`
    before any call was paid, `paid` after its first call was. It stands in for what waits (`engine.waiting`) and takes
    back what it no longer needs, as synthesis does (refed_dspy.synthesis.next_work)."""

    size = 3

    def __init__(self, pool: list[str]):
        from collections import Counter, deque

        self.pool, self.done, self.attempts, self.engine = deque(pool), [], Counter(), None

    def running(self) -> int:
        return self.engine.pending["x"] - self.engine.waiting["x"]

    def fill(self, engine) -> None:
        self.engine = engine
        while self.pool and engine.slots_free() > 0 and len(self.done) + self.running() < self.size:
            if not engine.start("x", self.pool[0], 1):
                return
            self.pool.popleft()

    async def work(self, kind, payload, calls):
        from refed_dspy.clients.calls import CallInfo
        from refed_dspy.engine.failures import Failure

        self.attempts[payload] += 1
        if payload == "paid":
            calls.append(CallInfo("generate", "m", prompt_tokens=10, completion_tokens=5))
        await asyncio.sleep(0.01)
        if payload in ("free", "paid") and self.attempts[payload] == 1:
            return None, Failure("rate_limited", "429", final=False, retryable=True, retry_after=2.0)
        return payload, None

    def handle(self, kind, payload, result, failure, usage) -> None:
        self.done.append(payload)

    def take_back(self, kind, payload) -> bool:
        if len(self.done) + self.running() < self.size:
            return False
        self.pool.appendleft(payload)
        return True

    def wants_more(self) -> bool:
        return len(self.done) < self.size

    def key(self, kind, payload) -> str:
        return payload

    def note_attempt(self, key, outcome, usage) -> None:
        pass


@pytest.mark.parametrize(
    ("pool", "done"),
    [
        (["free", "a", "b", "c"], ["a", "b", "c"]),  # stood in for, taken back, never sent again
        (["paid", "a", "b", "c"], ["a", "b", "paid"]),  # its paid call is not thrown away: it waits and goes again
    ],
)
def test_work_refused_before_it_paid_is_stood_in_for_and_not_waited_for(pool, done):
    """A sample refused by a 429 before any of its calls was paid waits for its Retry-After, but the run does not: other
    work of the pool stands in for it, and once the run has what it needs it is taken back (not sent again). One refused
    after it paid a call goes again after its Retry-After (a stand-in would pay for that call twice)."""
    from refed_dspy.engine.execution import Engine, Limits

    async def main() -> _Pool:
        stage = _Pool(pool)
        engine = Engine(stage, Limits(concurrency=2, max_retries=2, worst_calls={"x": 1}))
        engine.first.answered = True
        await engine.run()
        return stage

    stage = asyncio.run(main())
    assert sorted(stage.done) == sorted(done)
    assert stage.attempts[pool[0]] == (1 if pool[0] == "free" else 2)
    assert not stage.engine.retrying.waiting and stage.engine.waiting["x"] == 0
    stood = 1 if pool[0] == "free" else 0
    assert stage.engine.figures()["concurrency"].get("stood_in", 0) == stood
    said = rate_limit_line({**stage.engine.figures()["concurrency"], "rate_limited": 1})
    assert ("but for 1 whose work other work stood in for" in said) == bool(stood), said


def test_work_stood_in_for_is_never_sent_before_its_retry_after(server_factory, tmp_path):
    """Half the requests refused (Retry-After 0.7 s, the server answering one sent early 429 `early_retry`), a few
    answered 500, and a third of replies unusable (samples and units rejected for good, so the run needs more than it
    planned): work stood in for and taken back is started again only once its time has come. The attacker's run had 79
    requests sent early when work was taken back before its time and started at once; each sample is written once."""
    srv = server_factory(
        rate_429=0.5, rate_500=0.05, retry_after_s=0.7, enforce_retry_after=True, sticky_malformed=0.3, seed=11
    )
    run = tmp_path / "run"
    over = run_overrides(srv, run, 60, **{"synthesis.concurrency": 40, "synthesis.instructions_per_feature": 3})
    summary = synthesize(load_config(None, over))
    samples = lines(run / "samples.jsonl")
    assert summary["status"] == "complete" and len(samples) == 60 == len({r["meta"]["id"] for r in samples})
    log = read_log(srv.cfg.log_path)
    assert not [(e.get("outputs"), e.get("turns"), e["sha"]) for e in log if e.get("fault") == "early_retry"]
    assert summary["usage"]["calls"] == sum(1 for e in log if e.get("status") == 200)
