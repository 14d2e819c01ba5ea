"""A Ray worker's task events (refed_dspy.launch.ray.worker.PartWorker, plain Python: no Ray here): each call's start
reaches the driver while the call is in flight (what counts a lost worker's calls as paid), and a task's events
travel in a few batches, not one object each (the driver's CPU per sample; a part run in a thread wakes the worker's
loop once per event, so its batches are smaller)."""

from __future__ import annotations

import asyncio
import copy

import dspy
import pytest
from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.engine.transport import Piece
from refed_dspy.launch.ray.cache_server import CachePlan
from refed_dspy.launch.ray.worker import PartWorker


class TwoSteps(dspy.Module):
    """A user's part with only `forward`: the worker runs it in a thread."""

    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> answer")
        self.polish = dspy.Predict("question, answer -> better_answer")

    def forward(self, question):
        return self.polish(question=question, answer=self.draft(question=question).answer)


class TwoStepsAsync(TwoSteps):
    async def aforward(self, question):
        draft = await self.draft.acall(question=question)
        return await self.polish.acall(question=question, answer=draft.answer)


@pytest.mark.parametrize("part", [TwoSteps, TwoStepsAsync], ids=["forward-in-a-thread", "aforward"])
def test_a_call_s_start_is_sent_while_it_is_in_flight_and_events_go_in_batches(part, server_factory, tmp_path):
    srv = server_factory(latency_s=0.5)
    spec = load_config(None, run_overrides(srv, tmp_path / "run", 1)).teacher
    worker = PartWorker(spec, "teacher", {"sample": part()}, max_connections=4, prices=None)
    worker.load(CachePlan(None, "", str(tmp_path / "cache"), client=False), direct=True)

    async def task() -> list[list[tuple]]:
        return [batch async for batch in worker.run("sample", "respond", {"question": "Why is the sky blue?"})]

    batches = asyncio.run(task())
    events = [event[0] for batch in batches for event in batch]
    assert events == ["start", "call", "end", "start", "call", "end", "result"], batches
    # the first call's start alone, sent before its answer came (a thread's event that did not wake the loop would
    # wait for the task's end, and a worker lost meanwhile would leave the call uncounted)
    assert batches[0] == [("start",)], batches
    if part is TwoStepsAsync:  # the built-in parts: a call's answer and end and the next call's start go as one
        assert len(batches) == 3, [[e[0] for e in b] for b in batches]  # one object per event: 7
    value, failure = batches[-1][-1][1:]
    assert failure is None and value.better_answer


class Looks(dspy.Module):
    """A part that keeps the LM each task runs with, and calls none."""

    def __init__(self):
        super().__init__()
        self.seen = []

    async def aforward(self, question):
        self.seen.append(dspy.settings.lm)
        return dspy.Prediction(answer=question)


def test_each_task_runs_with_an_lm_of_its_own_that_prefers_the_driver_s_endpoint(server_factory, tmp_path):
    """The driver's choice of endpoint and the task's events travel on the task's own LM (a shallow copy of the
    worker's): the worker's LM is left as it was, and what an LM learns once is shared by the copies."""
    spec = load_config(None, run_overrides(server_factory(), tmp_path / "run", 1)).teacher
    looks = Looks()
    worker = PartWorker(spec, "teacher", {"sample": looks}, max_connections=4, prices=None)
    worker.load(CachePlan(None, "", str(tmp_path / "cache"), client=False), direct=True)

    async def task(endpoint):
        return [batch async for batch in worker.run("sample", "respond", {"question": "q"}, endpoint)]

    asyncio.run(task(1))
    asyncio.run(task(None))
    first, second = looks.seen
    assert (first.preferred_endpoint, second.preferred_endpoint, worker.lm.preferred_endpoint) == (1, None, None)
    assert first.budget is not second.budget and worker.lm.budget is None
    assert first.notes() is second.notes() is worker.lm.notes()
    assert copy.deepcopy(first.budget) is first.budget  # a part that deep-copies its LM keeps its task's events


def test_a_worker_that_dies_before_it_starts_is_one_line_not_a_traceback():
    """A cluster that will not run our actor (it died, or was cancelled before it ran: another cluster's token
    authentication) is the cluster's state, said in one line (RunAborted: exit 3); it was Ray's traceback, exit 1.
    What the cluster cannot give as asked (no node fits a worker) is the config's (ConfigError: exit 2)."""
    import types

    ray = pytest.importorskip("ray")
    from refed_dspy.errors import ConfigError, RunAborted
    from refed_dspy.launch.ray.pool import get as _get

    def dies(refs, timeout):
        raise ray.exceptions.ActorDiedError()

    stub = types.SimpleNamespace(get=dies, exceptions=ray.exceptions)
    with pytest.raises(RunAborted, match=r"could not start the workers: The actor died unexpectedly .*ray status"):
        _get(stub, [], "start the workers")

    def unschedulable(refs, timeout):
        raise ray.exceptions.ActorUnschedulableError("no node has 4 CPUs")

    with pytest.raises(ConfigError, match="could not start the workers"):
        _get(types.SimpleNamespace(get=unschedulable, exceptions=ray.exceptions), [], "start the workers")


def test_each_worker_answers_on_its_own():
    """While workers start or load, one lost (its process died) is handed back in its place for the pool to leave out;
    one that never ran (its creation failed: the same for every worker) and a worker's own error still stop the wait,
    each as its one line."""
    import types

    ray = pytest.importorskip("ray")
    from refed_dspy.errors import MissingKeyError, RunAborted
    from refed_dspy.launch.ray.pool import Waiting, answers

    lost = ray.exceptions.ActorDiedError()
    never_ran = ray.exceptions.RayActorError(error_msg="its creation failed", actor_init_failed=True)
    no_key = ray.exceptions.RayTaskError("info", "", MissingKeyError("MY_KEY is not set"))

    def stub(outcomes: dict) -> types.SimpleNamespace:
        def wait(refs, num_returns, timeout):
            return refs[:num_returns], refs[num_returns:]

        def get(ref):
            if isinstance(outcomes[ref], BaseException):
                raise outcomes[ref]
            return outcomes[ref]

        return types.SimpleNamespace(wait=wait, get=get, exceptions=ray.exceptions)

    waiting = Waiting(3, None)
    waiting.now("started")
    out = answers(stub({"a": 1, "b": lost, "c": 3}), ["a", "b", "c"], "start its workers", waiting)
    assert out == [1, lost, 3] and (waiting.done, waiting.lost) == (2, 1)
    assert "2 of 3 workers started, 1 lost, waiting" in waiting.line()
    with pytest.raises(RunAborted, match="could not start its workers: its creation failed"):
        answers(stub({"a": 1, "b": never_ran}), ["a", "b"], "start its workers")
    with pytest.raises(MissingKeyError, match="MY_KEY is not set"):
        answers(stub({"a": no_key, "b": 2}), ["a", "b"], "start its workers")


class _Stream:
    """A task's stream from a worker killed as it sends a request: the batches it got out, then the worker's death."""

    def __init__(self, batches: list[list[tuple]], death: BaseException):
        self.batches, self.death = list(batches), death

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.batches:
            raise self.death
        batch = self.batches.pop(0)

        async def ref():
            return batch

        return ref()


@pytest.mark.parametrize(
    "batches, charged",
    [
        ([], 3),  # its first request went out, its start never reached the driver
        ([[("start",)], [("call", "answered"), ("end",)]], 2),  # one answered, the next sent unseen
        ([[("start",)], [("call", "answered"), ("end",), ("start",)]], 2),  # one answered, one seen under way
    ],
)
def test_a_lost_worker_s_task_is_charged_up_to_its_reservation(batches, charged):
    """A call's start travels to the driver while its request goes out: a worker killed meanwhile (a CI run: the server
    answered 59 calls, the summary counted 57) leaves a paid call the driver never heard of. The task that ends so is
    charged what its reservation allowed beyond what it reported, as calls lost with the worker."""
    import types

    ray = pytest.importorskip("ray")
    from refed_dspy.clients.calls import CallInfo, TaskCalls
    from refed_dspy.launch.ray.pool import Worker, WorkerPool
    from refed_dspy.launch.ray.worker import WorkerInfo

    answered = CallInfo(stage="respond", model="m", prompt_tokens=5, completion_tokens=5)
    batches = [[(e[0], answered) if e[0] == "call" else e for e in b] for b in batches]
    stream = _Stream(batches, ray.exceptions.ActorDiedError())
    run = types.SimpleNamespace(options=lambda **_: types.SimpleNamespace(remote=lambda *a: stream))
    actor = types.SimpleNamespace(run=run)
    stub = types.SimpleNamespace(exceptions=ray.exceptions, kill=lambda *a, **k: None)
    pool = WorkerPool(
        stub, [Worker(actor, WorkerInfo("here", 1, None)), Worker(actor, WorkerInfo("there", 2, None))], "m", None
    )
    calls = TaskCalls(3)
    value, failure = asyncio.run(pool.run(Piece("sample", "respond", {}, calls)))
    assert value is None and failure.reason == "worker_lost" and failure.retryable
    lost = [c for c in calls if c.interrupted]
    assert len(lost) == charged and all(c.lost_with and "node here" in c.lost_with for c in lost)
    assert len(calls) - len(lost) == sum(1 for b in batches for e in b if e[0] == "call")
