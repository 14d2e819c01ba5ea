"""Several endpoints of one model: calls spread over replicas; a dead or failing one is taken out."""

from __future__ import annotations

import asyncio
import socket

from conftest import run_overrides
from loopback_server import LoopbackServer, ServerConfig

from refed_dspy.clients.lm import EndpointSpread
from refed_dspy.config import load_config
from refed_dspy.synthesis.api import synthesize


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: every connection is refused
    return f"http://127.0.0.1:{port}/v1"


def test_calls_spread_over_replicas_and_a_dead_one_is_taken_out(tmp_path):
    dead = _dead_url()
    with LoopbackServer(ServerConfig(latency_s=0.01)) as a, LoopbackServer(ServerConfig(latency_s=0.01)) as b:
        urls = [a.api_base, dead, b.api_base]
        over = run_overrides(
            a,
            tmp_path / "run",
            24,
            **{
                "seeds.limit": 4,
                "synthesis.instructions_per_feature": 3,
                "synthesis.concurrency": 8,
                "teacher.api_base": str(urls).replace('"', "'"),
            },
        )
        s = synthesize(load_config(None, over))
        served = {a.api_base: a.state.count, b.api_base: b.state.count}
    assert s["status"] == "complete" and s["samples"] == 24
    ends = s["endpoints"]
    assert set(ends) == set(urls)
    # each replica took a fair share, and the summary counts what each server answered
    for url, n in served.items():
        assert ends[url]["calls"] == n and n > 0.3 * s["usage"]["calls"]
    assert ends[dead]["failures"] == ends[dead]["calls"] >= 2 and ends[dead]["taken_out"] >= 1
    assert ends[dead]["calls"] < 0.2 * s["usage"]["calls"]
    assert s["usage"]["calls"] == sum(served.values())


def test_a_replica_failing_with_5xx_is_taken_out_and_probed_back():
    t = [0.0]
    spread = EndpointSpread(["http://a/v1", "http://b/v1"], clock=lambda: t[0])
    a, b = spread.states
    spread.failed(a)
    assert spread.pick() is a or a.in_flight == 0  # one failure does not take it out
    spread.failed(a)
    assert a.down_until > 0 and spread.pick() is b and a.taken_out == 1
    t[0] = a.down_until + 0.01  # its cool-down is over: it is tried again
    b.in_flight = 3
    assert spread.pick() is a
    spread.succeeded(a)
    assert a.fails_in_row == 0 and a.down_until == 0.0
    assert spread.route("http://a/v1/chat/completions", b) == "http://b/v1/chat/completions"


class _Window:
    """What an endpoint's window tells the spread: the requests it lets be in flight there."""

    def __init__(self, limit: float):
        self.limit = limit


def test_a_request_goes_where_a_window_has_room_and_waits_while_none_has():
    spread = EndpointSpread(["http://a/v1", "http://b/v1"])
    a, b = spread.states
    a.limits.listener, b.limits.listener = _Window(4), _Window(24)
    a.limits.in_flight, b.limits.in_flight = 3, 10
    assert spread.pick() is b  # more in flight than a, but far more room
    a.limits.in_flight, b.limits.in_flight = 4, 24

    async def full_then_freed() -> None:
        taking = asyncio.create_task(spread.take())
        await asyncio.sleep(0.05)
        assert not taking.done()  # every window full: it waits
        a.limits.in_flight = 3
        spread.freed()  # one of a's came back
        assert await asyncio.wait_for(taking, 1) is a

    asyncio.run(full_then_freed())
    a.limits.listener = b.limits.listener = None
    assert asyncio.run(spread.take()) in (a, b)  # no window heard: never waits


def test_batch_mode_takes_one_endpoint(tmp_path):
    import pytest

    from refed_dspy.errors import ConfigError

    cfg = load_config(
        None,
        [
            "teacher.api_base=['http://a/v1', 'http://b/v1']",
            "synthesis.mode='batch'",
            "teacher.api_key_env=''",
            f"run.dir='{tmp_path / 'run'}'",
        ],
    )
    with pytest.raises(ConfigError, match="batch mode sends to one provider endpoint"):
        synthesize(cfg)


def test_adding_a_replica_is_the_same_config():
    from refed_dspy.config import fingerprint

    one = load_config(None, ["teacher.api_base='http://a/v1'"])
    two = load_config(None, ["teacher.api_base=['http://a/v1', 'http://b/v1']"])
    other = load_config(None, ["teacher.api_base=['http://c/v1', 'http://a/v1']"])
    assert fingerprint(one) == fingerprint(two) != fingerprint(other)
