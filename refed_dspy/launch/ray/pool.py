"""The workers of one run on Ray: started and checked before the first paid call, each task sent to the least busy
one, every call it makes counted on the driver as it happens, a worker lost (as it starts, as it loads, or later) said
in one line and worked around.

The workers are noted in the run dir for `refed status` (`WorkersReport`): written when the run starts, when a worker
is lost, and when it ends (synthesis: workers.json; judging: judge_workers.json).

`start_pool` starts the run's Ray workers and checks them, before anything is paid or written (WorkerPool.load then
readies them, once the run dir is there).

Its wait on the workers while they start and load (`answers`, `Waiting`): each worker's answer taken on its own (a
worker lost on the way is the pool's to leave out, not the end of the run), a progress line every interval while the
wait lasts, and what the cluster reports as the one line a user can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from refed_dspy.clients.calls import CallInfo, TaskCalls
from refed_dspy.clients.lm import EndpointSpread, EndpointState
from refed_dspy.config import RayConfig
from refed_dspy.config.lm import LMSpec, PriceBook
from refed_dspy.engine.failures import Failure
from refed_dspy.engine.progress import Heartbeat, rough_duration
from refed_dspy.engine.transport import Piece, Transport
from refed_dspy.engine.watch import Report
from refed_dspy.errors import ConfigError, KeyProviderError, MissingKeyError, RunAborted
from refed_dspy.launch.ray.cache_server import CachePlan, start_cache_server
from refed_dspy.launch.ray.connect import connect, disconnect, forget, joins, record
from refed_dspy.launch.ray.worker import PartWorker, WorkerInfo
from refed_dspy.providers.registry import provider_for
from refed_dspy.secrets import first_line
from refed_dspy.store.jsonl import write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class Worker:
    actor: Any
    info: WorkerInfo
    in_flight: int = 0
    tasks: int = 0
    calls: int = 0
    lost: str | None = None  # why it is gone

    def where(self) -> str:
        return f"node {self.info.node} (pid {self.info.pid})"

    def figures(self) -> dict[str, Any]:
        return {
            "node": self.info.node,
            "pid": self.info.pid,
            "tasks": self.tasks,
            "calls": self.calls,
            "alive": self.lost is None,
            **({"lost": self.lost} if self.lost else {}),
        }


@dataclass
class WorkerPool(Transport):
    """`ray.workers` PartWorkers of one run (see refed_dspy.launch.ray.worker): a run transport."""

    ray: Any
    workers: list[Worker]
    model: str
    address: str | None
    started_ray: bool = False
    # several endpoints: each task's, chosen by what is in flight on each over the whole cluster (a spread used only
    # to choose: its in_flight is the calls of the tasks it was chosen for, from their events)
    spread: EndpointSpread | None = None
    cache: CachePlan | None = None
    cache_server: str = "auto"
    waiting: Waiting | None = None  # how long the workers took to start and load, said while it lasts
    ready: int = 0  # the workers that loaded: the run's parallelism
    run_dir: Path | None = None  # where the processes of a local Ray it starts are written down (cluster.leftovers)
    recorded_in: Path | None = None  # ... once they are
    # the calls are made by the workers, where the run's log is not
    logs_tasks: ClassVar[bool] = True

    def check_started(self, actors: list, infos: list) -> None:
        """The workers as they answered (one lost while starting is left out, named by what Ray says of it); then
        MissingKeyError for the first that lacks the key."""
        lost = self.ray.exceptions.RayActorError
        self.workers = [
            Worker(a, WorkerInfo(*where_lost(info), None) if isinstance(info, lost) else info)
            for a, info in zip(actors, infos, strict=True)
        ]
        gone = [(w, info) for w, info in zip(self.workers, infos, strict=True) if isinstance(info, lost)]
        self._leave_out(gone, "start its workers", "while it started")
        lacking = next((w.info for w in self.workers if w.lost is None and w.info.missing_key), None)
        if lacking is not None:
            raise MissingKeyError(
                f"{lacking.missing_key} is not set on the Ray worker on node {lacking.node}: set it in that node's "
                "environment or in a Ray runtime_env (its value never goes into the run dir or a log)"
            )

    def load(self, run_cache: str) -> None:
        """Start the run's CacheServer (refed_dspy.launch.ray.cache_server), then build each worker's LM with the run's
        cache: opened by the workers on the driver's node, reached through the server by the others (by every worker
        with ray.cache_server = "always"). A worker lost while it loads is left out (one warning line); RunAborted
        when every one is."""
        client = (self.address or "").startswith("ray://")
        waiting = self.waiting or Waiting(len(self.workers), None)
        try:
            server, node = start_cache_server(self.ray, run_cache, client)
            self.cache = CachePlan(server, node, "", client)  # closed with the pool from here on
            (directory,) = get(self.ray, [server.where.remote()], "start the run's cache server")
            self.cache = CachePlan(server, node, directory, client)
            forced = self.cache_server == "always"
            live = [w for w in self.workers if w.lost is None]
            doing = "ready its workers (their LMs, their caches)"
            waiting.now("loaded (their LMs, their caches)")
            with waiting:
                refs = [w.actor.load.remote(self.cache, self.cache.direct(w.info.node_id, forced)) for w in live]
                done = answers(self.ray, refs, doing, waiting)
            lost = self.ray.exceptions.RayActorError
            gone = [(w, d) for w, d in zip(live, done, strict=True) if isinstance(d, lost)]
            self._leave_out(gone, doing, "while it loaded")
        except BaseException:
            self.close()
            raise
        self.ready = self.alive
        log.info("%d of %d Ray workers ready after %s", self.ready, len(self.workers), waiting.waited())
        remote = sum(1 for w in self.workers if w.lost is None and not self.cache.direct(w.info.node_id, forced))
        if remote:
            log.info(
                "%d of %d Ray workers reach the run's cache through its server (%s)",
                remote,
                self.ready,
                self.cache.directory,
            )
        self.write_down()

    def write_down(self) -> None:
        """The processes of the local Ray this pool started, written down in the run dir once it exists."""
        if self.started_ray and self.address is None and self.run_dir is not None and self.run_dir.is_dir():
            record(self.run_dir, _ray_dir(self.ray))
            self.recorded_in = self.run_dir

    def _leave_out(self, lost: list[tuple[Worker, BaseException]], doing: str, when: str) -> None:
        """The workers lost before the run began, left out, each said in one line; RunAborted (exit 3, nothing paid,
        its one line alone) when no worker is left."""
        for worker, err in lost:
            self._mark_lost(worker, err)
        if not self.alive:
            raise RunAborted(
                f"the Ray cluster could not {doing}: every worker was lost {when} ({self.workers[0].lost}); `ray "
                "status` and the cluster's logs say why; nothing was paid: run the same command again once the cluster "
                "is well"
            )
        for worker, _ in lost:
            self._say_lost(worker, when)

    # ---- what the stage calls ---------------------------------------------------------------------
    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.lost is None)

    def in_flight_limit(self, per_worker: int) -> int:
        """The calls the driver keeps in flight over the cluster: `per_worker` for each worker that loaded (the share of
        one lost later goes to the others, whose actors queue what they cannot start)."""
        return per_worker * max(1, self.ready or len(self.workers))

    async def run(self, piece: Piece) -> tuple[Any, Any]:
        """One task on the least busy worker: (result, None) or (None, Failure). Each call it makes joins the piece's
        calls as it is answered (the piece's LM, adapter and scope stay here: the worker builds its own). A task that
        ends without its result (its worker lost, the task cancelled or failed there) may have sent a request whose
        start had not reached us: its calls under way, and every other call its reservation allowed (`calls.most`, a
        TaskCalls), join as paid."""
        kind, stage_name, inputs, calls = piece.kind, piece.stage, piece.inputs, piece.calls
        worker = min((w for w in self.workers if w.lost is None), key=lambda w: w.in_flight, default=None)
        if worker is None:
            return None, Failure("workers_lost", "every Ray worker of the run is lost", fatal=True)
        worker.in_flight += 1
        worker.tasks += 1
        open_calls, reported, stream = 0, 0, None
        endpoint = _Load(self.spread)
        try:
            stream = worker.actor.run.options(num_returns="streaming").remote(
                kind, stage_name, inputs, endpoint.index, getattr(calls, "held", None)
            )
            async for ref in stream:
                for event in await ref:
                    if event[0] == "start":
                        open_calls += 1
                    elif event[0] == "end":
                        open_calls -= 1
                    elif event[0] == "call":
                        calls.append(event[1])
                        reported += 1
                        worker.calls += 1
                    else:
                        return event[1], event[2]
                endpoint.follow(open_calls)
            return None, Failure("worker_error", "the Ray worker ended the task without a result", final=False)
        except asyncio.CancelledError:
            self._paid_in_flight(calls, reported, open_calls, stage_name)
            self._cancel(stream)
            raise
        except self.ray.exceptions.RayActorError as err:
            self._paid_in_flight(calls, reported, open_calls, stage_name, f"its Ray worker on {worker.where()}")
            return None, self._lost(worker, err)
        except self.ray.exceptions.RayError as err:  # the task failed on the worker: what it had sent may be billed
            self._paid_in_flight(calls, reported, open_calls, stage_name)
            self._cancel(stream)
            return None, Failure("worker_error", f"Ray worker on {worker.info.node}: {first_line(err)}", final=False)
        finally:
            worker.in_flight -= 1
            endpoint.follow(0, done=True)

    def _cancel(self, stream: Any) -> None:
        if stream is not None:
            with contextlib.suppress(Exception):
                self.ray.cancel(stream)

    def _paid_in_flight(
        self, calls: list, reported: int, open_calls: int, stage_name: str | None, lost_with: str | None = None
    ) -> None:
        """Calls that may have been sent and were never answered to us: perhaps answered and billed; counted as paid
        (`lost_with`: the worker they were lost with, when that is why). A call's start travels to us while its request
        goes out, so a worker killed meanwhile leaves a paid call we never heard of: up to the task's reservation."""
        unseen = calls.unseen(reported, open_calls) if isinstance(calls, TaskCalls) else open_calls
        calls.extend(
            CallInfo(stage=stage_name or "unknown", model=self.model, interrupted=True, lost_with=lost_with)
            for _ in range(unseen)
        )

    def _lost(self, worker: Worker, err: BaseException) -> Failure:
        if worker.lost is None:
            self._mark_lost(worker, err)
            self._say_lost(worker)
        if not self.alive:
            return Failure("workers_lost", "every Ray worker of the run is lost", fatal=True)
        return Failure("worker_lost", f"lost with its Ray worker on {worker.where()}", final=False, retryable=True)

    def _mark_lost(self, worker: Worker, err: BaseException) -> None:
        """`worker` is gone for good."""
        worker.lost = first_line(err, 120)
        # unreachable may not mean dead: ended for good, so that it makes no call the ledger would not see
        with contextlib.suppress(Exception):
            self.ray.kill(worker.actor, no_restart=True)

    def _say_lost(self, worker: Worker, when: str = "") -> None:
        """One line for a worker lost (`when`: 'while it loaded', ...) and how many go on."""
        log.warning(
            "warning: the Ray worker on %s was lost%s; the run goes on with %d of %d workers",
            worker.where(),
            f" {when}" if when else "",
            self.alive,
            len(self.workers),
        )

    def cluster_figures(self) -> dict[str, Any]:
        """Where the run's calls ran: the address, and each worker's node, tasks, calls and state."""
        return {
            "address": self.address or "local",
            "workers_alive": self.alive,
            "workers": [w.figures() for w in self.workers],
            **({"cache": self.cache.directory} if self.cache is not None else {}),
        }

    def close(self) -> None:
        """End the workers and the cache server (and the local Ray this pool started)."""
        actors = [w.actor for w in self.workers] + ([self.cache.server] if self.cache is not None else [])
        for actor in actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        if self.started_ray:
            disconnect(self.ray)
        if self.recorded_in is not None:  # its local Ray is gone with it: nothing is left for the next start to end
            forget(self.recorded_in)


class _Load:
    """What one task puts on the endpoint the driver chose for it: a call for each call it has open, one while it has
    none (it is about to make one)."""

    def __init__(self, spread: EndpointSpread | None):
        self.state: EndpointState | None = spread.pick() if spread is not None else None
        self.index = next(i for i, s in enumerate(spread.states) if s is self.state) if spread is not None else None
        self.weight = 0
        if self.state is not None:
            self.state.calls += 1  # tasks sent: the tie-break
            self.follow(0)

    def follow(self, open_calls: int, done: bool = False) -> None:
        if self.state is None:
            return
        weight = 0 if done else max(1, open_calls)
        self.state.in_flight += weight - self.weight
        self.weight = weight


def _ray_dir(ray: Any) -> str:
    """Where Ray is installed: its programs and scripts run from there (refed_dspy.launch.ray.connect)."""
    return str(Path(ray.__file__).resolve().parent)


def endpoint_rows(pool: WorkerPool) -> dict[str, dict[str, Any]] | None:
    """With several endpoints: by URL, the tasks the driver sent to each and the calls, failures and times taken
    out its live workers saw (a lost worker's are lost with it). None with one endpoint."""
    if pool.spread is None:
        return None
    out = {s.url: {"tasks": s.calls, "calls": 0, "failures": 0, "taken_out": 0} for s in pool.spread.states}
    live = [w.actor.endpoints.remote() for w in pool.workers if w.lost is None]
    try:
        seen = pool.ray.get(live, timeout=30)
    except pool.ray.exceptions.RayError as err:
        log.debug("cannot read the workers' endpoint figures: %s", err)
        seen = []
    for figures in seen:
        for url, row in figures.items():
            for name in ("calls", "failures", "taken_out"):
                out.setdefault(url, {"tasks": 0, "calls": 0, "failures": 0, "taken_out": 0})[name] += row[name]
    return out


class WorkersReport(Report):
    """What a run on Ray says of itself (refed_dspy.engine.watch.Report): `pool`'s workers, their cluster and
    endpoint figures, the workers alive on the progress line, and the note of them in `path` for `refed status`
    (workers.json, judge_workers.json), rewritten only when the number of live workers changed (or, with
    `final=True`, always)."""

    def __init__(self, pool: WorkerPool, path: Path | None = None):
        super().__init__()
        self.pool, self.path = pool, path
        self._alive: int | None = None

    @property
    def workers(self) -> list[Any]:
        return self.pool.workers

    def figures(self, usage: dict[str, Any]) -> dict[str, Any]:
        """For a summary: where the calls ran, and with several endpoints the calls of each over the cluster."""
        endpoints = endpoint_rows(self.pool)
        return {"ray": self.pool.cluster_figures(), **({"endpoints": endpoints} if endpoints is not None else {})}

    def progress(self) -> str:
        return f"; Ray workers alive {self.pool.alive} of {len(self.pool.workers)}"

    def note(self, final: bool = False) -> None:
        if self.path is None or (self.pool.alive == self._alive and not final):
            return
        self._alive = self.pool.alive
        try:
            write_json_atomic(self.path, self.pool.cluster_figures())
        except OSError as err:  # the summary says the same at the end
            log.warning("cannot write %s: %s", self.path, err.strerror or err)


def start_pool(
    settings: RayConfig,
    spec: LMSpec,
    role: str,
    parts: dict[str, Any],
    *,
    concurrency: int,
    prices: PriceBook | None = None,
    progress_every_s: float | None = None,
    run_dir: Path | None = None,
) -> WorkerPool:
    """Connect, start the workers and check them before anything is paid or written (where `spec`'s key may go was
    checked before, by the launch: refed_dspy.launch.plan.launch): ConfigError when the extra is
    missing, the address cannot be reached or the cluster cannot place them; MissingKeyError naming the variable
    and the node of a worker that lacks the key. A worker lost while it starts is left out (one warning line);
    RunAborted when every one is. `load` then readies them, once the run dir is there. One line says the start
    begins, and one every `progress_every_s` seconds while it waits (None: none). With a local Ray this pool
    starts, its processes are written down in `run_dir` (once it exists: here for a run resumed, at `load` for a
    new one), so that the next command there ends those a kill of this one leaves behind (cluster.leftovers)."""
    no_lm_of_their_own(parts)
    log.info("starting %d Ray workers on %s", settings.workers, joins(settings.address))
    waiting = Waiting(settings.workers, progress_every_s)
    with waiting:
        ray, started = connect(settings.address, settings.workers)
        actor_class = ray.remote(PartWorker)
        actors = [
            actor_class.options(
                max_concurrency=concurrency + 8, max_restarts=0, num_cpus=1, scheduling_strategy="SPREAD"
            ).remote(spec, role, parts, concurrency, prices)
            for _ in range(settings.workers)
        ]
        # the endpoints as the workers' spreads hold them (an Anthropic host gets /v1), so their rows meet
        spread = (
            EndpointSpread([provider_for(spec.model).native_base(u) for u in spec.endpoints])
            if len(spec.endpoints) > 1
            else None
        )
        pool = WorkerPool(
            ray, [], spec.model, settings.address, started, spread=spread, cache_server=settings.cache_server
        )
        pool.waiting, pool.run_dir = waiting, run_dir
        try:
            waiting.now("started")
            infos = answers(ray, [a.info.remote() for a in actors], "start its workers", waiting)
            pool.write_down()  # Ray's agents are up once a worker has answered
            pool.check_started(actors, infos)
        except BaseException:
            pool.workers = pool.workers or [Worker(a, WorkerInfo("?", 0, None)) for a in actors]
            pool.close()
            raise
    return pool


def no_lm_of_their_own(parts: dict[str, Any]) -> None:
    """A part with an LM pinned to a predictor would carry that LM (and its key) to every worker: refused."""
    for kind, part in parts.items():
        for name, predictor in part.named_predictors() if part is not None else ():
            if getattr(predictor, "lm", None) is not None:
                raise ConfigError(
                    f"the program's {kind} part has an LM set on its predictor {name}: on Ray each worker builds its "
                    "LMs from the config (a pinned LM object would carry its key to the workers); unset it, or run "
                    "without ray"
                )


START_TIMEOUT_S = 300.0  # a cluster that cannot place the workers in this long will not


class Waiting:
    """What the pool waits on (connecting, starting, loading) and how far it got, said every `every_s` seconds on the
    progress stream while it waits (None: progress is off, nothing said): 'ray: 1 of 2 workers loaded (their LMs,
    their caches), waiting 1m'."""

    def __init__(self, workers: int, every_s: float | None):
        self.workers, self.every_s = workers, every_s
        self.began = time.monotonic()
        self.doing, self.done, self.lost = "connecting", 0, 0
        self._beat: Heartbeat | None = None

    def now(self, doing: str) -> None:
        """From here on the wait is for `doing` ('started', 'loaded (...)'), counted from none done."""
        self.doing, self.done = doing, 0

    def line(self) -> str:
        waited = rough_duration(time.monotonic() - self.began)
        if self.doing == "connecting":
            return f"connecting to Ray to start {self.workers} workers, waiting {waited}"
        lost = f", {self.lost} lost" if self.lost else ""
        return f"{self.done} of {self.workers} workers {self.doing}{lost}, waiting {waited}"

    def waited(self) -> str:
        return rough_duration(time.monotonic() - self.began)

    def __enter__(self) -> Waiting:
        if self.every_s is not None:
            self._beat = Heartbeat("ray", self.line, self.every_s).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._beat is not None:
            self._beat.stop()


def answers(ray: Any, refs: list, doing: str, waiting: Waiting | None = None) -> list[Any]:
    """Each ref's value as it comes, in the order of `refs`; in place of a value, the RayActorError of a worker lost
    before it answered (its process died, its node went). Anything else stops the wait as `raise_for` says; so does
    START_TIMEOUT_S passing with a worker still unanswered."""
    out: list[Any] = [None] * len(refs)
    pending = {ref: i for i, ref in enumerate(refs)}
    deadline = time.monotonic() + START_TIMEOUT_S
    while pending:
        left = deadline - time.monotonic()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, left))
        if not ready:
            _timed_out(doing)
        for ref in ready:
            i = pending.pop(ref)
            try:
                out[i] = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                if err.actor_init_failed:  # it never ran: the same for every worker, not a loss
                    raise_for(ray, err, doing)
                out[i] = err
                if waiting is not None:
                    waiting.lost += 1
                continue
            except ray.exceptions.RayError as err:
                raise_for(ray, err, doing)
            if waiting is not None:
                waiting.done += 1
    return out


def get(ray: Any, refs: list, doing: str) -> list:
    """ray.get, with what the cluster reports as `raise_for` says (a worker lost is an error here)."""
    try:
        return ray.get(refs, timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        _timed_out(doing)
    except ray.exceptions.RayError as err:
        raise_for(ray, err, doing)


def _timed_out(doing: str) -> NoReturn:
    raise ConfigError(
        f"the Ray cluster could not {doing} in {START_TIMEOUT_S:.0f} s: does it have a CPU free for each of "
        "ray.workers?"
    ) from None


def raise_for(ray: Any, err: BaseException, doing: str) -> NoReturn:
    """A worker's own error (a key it lacks, a program it cannot load) as the one line it is; what the cluster cannot
    give the workers as asked (ray.workers, the runtime_env) as the config's; anything else as the cluster's state
    (RunAborted, exit 3: nothing was paid)."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, ConfigError | MissingKeyError | KeyProviderError):
            raise type(cause)(str(cause)) from None
        raise ConfigError(f"the Ray cluster could not {doing}: {first_line(cause or err)}") from None
    if isinstance(err, ray.exceptions.ActorUnschedulableError | ray.exceptions.RuntimeEnvSetupError):
        raise ConfigError(f"the Ray cluster could not {doing}: {first_line(err)}") from None
    raise RunAborted(
        f"the Ray cluster could not {doing}: {first_line(err)} (`ray status` and the cluster's logs say why; "
        "nothing was paid: run the same command again once the cluster is well)"
    ) from None


def where_lost(err: BaseException) -> tuple[str, int]:
    """The node (its address) and process id Ray names in the error of an actor that died, '?' and 0 when it names
    none: what is known of a worker lost before it said where it runs."""
    text = str(err)
    ip, pid = re.search(r"\bip: ?(\S+)", text), re.search(r"\bpid: ?(\d+)", text)
    return (ip.group(1) if ip else "?"), (int(pid.group(1)) if pid else 0)
