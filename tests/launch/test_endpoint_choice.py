"""How the driver chooses each task's endpoint over the cluster, and how a worker's spread takes it (no Ray here)."""

from __future__ import annotations

from types import SimpleNamespace

from refed_dspy.clients.boundary import _begin, _end
from refed_dspy.clients.lm import EndpointSpread
from refed_dspy.launch.ray.pool import _Load


def test_each_task_goes_to_the_endpoint_with_the_fewest_calls_in_flight_over_the_cluster():
    spread = EndpointSpread(["http://a/v1", "http://b/v1", "http://c/v1"])
    first = _Load(spread)
    assert first.index == 0
    first.follow(2)  # its two calls open (a reference's feedback asks two things at once)
    second, third = _Load(spread), _Load(spread)
    assert (second.index, third.index) == (1, 2)  # each has one coming
    fourth = _Load(spread)
    assert fourth.index == 1  # a carries 2; b and c one each, and one task sent each: the first of them
    first.follow(0, done=True)
    assert [s.in_flight for s in spread.states] == [0, 2, 1]
    assert _Load(spread).index == 0
    assert [s.calls for s in spread.states] == [2, 2, 1]  # tasks sent to each


def test_a_worker_takes_the_drivers_choice_while_that_endpoint_is_healthy():
    now = [100.0]
    spread = EndpointSpread(["http://a/v1", "http://b/v1"], clock=lambda: now[0])
    spread.states[0].in_flight = 5  # busy here: a spread of its own would choose b
    _, token = _begin(SimpleNamespace(preferred_endpoint=0), {}, False, None)  # a call of the task's LM under way
    try:
        assert spread.pick() is spread.states[0]
        spread.failed(spread.states[0])
        spread.failed(spread.states[0])  # taken out in this worker's view
        assert spread.pick() is spread.states[1]
    finally:
        _end(token)
    assert spread.pick() is spread.states[1]
