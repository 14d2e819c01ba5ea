"""The workers of one run on Ray: started and checked before the first paid call, each task sent to the least busy
one, every call it makes counted on the driver as it happens, a lost worker said in one line and worked around."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from refed_dspy.clients.calls import CallInfo
from refed_dspy.clients.endpoints import EndpointSpread, EndpointState
from refed_dspy.clients.keys import check_key_goes_to_its_provider
from refed_dspy.clients.pricing import PriceBook
from refed_dspy.clients.spec import LMSpec
from refed_dspy.clients.wire import native_base
from refed_dspy.cluster.cache_server import CachePlan, start_cache_server
from refed_dspy.cluster.connect import connect
from refed_dspy.cluster.worker import PartWorker, WorkerInfo
from refed_dspy.config import RayConfig
from refed_dspy.engine.failures import Failure
from refed_dspy.errors import ConfigError, KeyProviderError, MissingKeyError, RunAborted, first_line

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # a cluster that cannot place the workers in this long will not


@dataclass
class _Worker:
    actor: Any
    info: WorkerInfo
    in_flight: int = 0
    tasks: int = 0
    calls: int = 0
    lost: str | None = None  # why it is gone

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
class WorkerPool:
    """`ray.workers` PartWorkers of one run (see refed_dspy.cluster.worker)."""

    ray: Any
    workers: list[_Worker]
    model: str
    address: str | None
    started_ray: bool = False
    started_at: float = field(default_factory=time.monotonic)
    # several endpoints: each task's, chosen by what is in flight on each over the whole cluster (a spread used only
    # to choose: its in_flight is the calls of the tasks it was chosen for, from their events)
    spread: EndpointSpread | None = None
    cache: CachePlan | None = None
    cache_server: str = "auto"

    @classmethod
    def start(
        cls,
        settings: RayConfig,
        spec: LMSpec,
        role: str,
        parts: dict[str, Any],
        *,
        concurrency: int,
        prices: PriceBook | None = None,
    ) -> WorkerPool:
        """Connect, start the workers and check them before anything is paid or written: ConfigError when the extra is
        missing, the address cannot be reached or the cluster cannot place them; MissingKeyError naming the variable
        and the node of a worker that lacks the key. `load` then readies them, once the run dir is there."""
        _no_lm_of_their_own(parts)
        check_key_goes_to_its_provider(spec, role)  # reads no key: said here, before Ray starts, as a local run does
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
            EndpointSpread([native_base(spec.model, u) for u in spec.endpoints]) if len(spec.endpoints) > 1 else None
        )
        pool = cls(ray, [], spec.model, settings.address, started, spread=spread, cache_server=settings.cache_server)
        try:
            infos = _get(ray, [a.info.remote() for a in actors], "start its workers")
            pool.workers = [_Worker(a, info) for a, info in zip(actors, infos, strict=True)]
            lacking = next((w.info for w in pool.workers if w.info.missing_key), None)
            if lacking is not None:
                raise MissingKeyError(
                    f"{lacking.missing_key} is not set on the Ray worker on node {lacking.node}: set it in that node's "
                    "environment or in a Ray runtime_env (its value never goes into the run dir or a log)"
                )
        except BaseException:
            pool.workers = [_Worker(a, WorkerInfo("?", 0, None)) for a in actors]
            pool.close()
            raise
        return pool

    def load(self, run_cache: str) -> None:
        """Start the run's CacheServer (refed_dspy.cluster.cache_server), then build each worker's LM with the run's
        cache: opened by the workers on the driver's node, reached through the server by the others (by every worker
        with ray.cache_server = "always")."""
        client = (self.address or "").startswith("ray://")
        try:
            server, node = start_cache_server(self.ray, run_cache, client)
            self.cache = CachePlan(server, node, "", client)  # closed with the pool from here on
            (directory,) = _get(self.ray, [server.where.remote()], "start the run's cache server")
            self.cache = CachePlan(server, node, directory, client)
            forced = self.cache_server == "always"
            refs = [w.actor.load.remote(self.cache, self.cache.direct(w.info.node_id, forced)) for w in self.workers]
            _get(self.ray, refs, "ready its workers (their LMs, their caches)")
        except BaseException:
            self.close()
            raise
        remote = sum(1 for w in self.workers if not self.cache.direct(w.info.node_id, forced))
        if remote:
            log.info(
                "%d of %d Ray workers reach the run's cache through its server (%s)",
                remote,
                len(self.workers),
                self.cache.directory,
            )

    # ---- what the stage calls ---------------------------------------------------------------------
    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.lost is None)

    def in_flight_limit(self, per_worker: int) -> int:
        """The calls the driver keeps in flight over the cluster: `per_worker` for each worker started (a lost
        worker's share goes to the others, whose actors queue what they cannot start)."""
        return per_worker * max(1, len(self.workers))

    async def run(self, kind: str, stage_name: str | None, inputs: dict[str, Any], calls: list) -> tuple[Any, Any]:
        """One task on the least busy worker: (result, None) or (None, Failure). Each call it makes joins `calls` as
        it is answered; calls in flight when the worker is lost, or when this task is cancelled, join as paid."""
        worker = min((w for w in self.workers if w.lost is None), key=lambda w: w.in_flight, default=None)
        if worker is None:
            return None, Failure("workers_lost", "every Ray worker of the run is lost", fatal=True)
        worker.in_flight += 1
        worker.tasks += 1
        open_calls, stream = 0, None
        endpoint = _Load(self.spread)
        try:
            stream = worker.actor.run.options(num_returns="streaming").remote(kind, stage_name, inputs, endpoint.index)
            async for ref in stream:
                for event in await ref:
                    if event[0] == "start":
                        open_calls += 1
                    elif event[0] == "end":
                        open_calls -= 1
                    elif event[0] == "call":
                        calls.append(event[1])
                        worker.calls += 1
                    else:
                        return event[1], event[2]
                endpoint.follow(open_calls)
            return None, Failure("worker_error", "the Ray worker ended the task without a result", final=False)
        except asyncio.CancelledError:
            self._paid_in_flight(calls, open_calls, stage_name)
            self._cancel(stream)
            raise
        except self.ray.exceptions.RayActorError as err:
            self._paid_in_flight(calls, open_calls, stage_name)
            return None, self._lost(worker, err)
        except self.ray.exceptions.RayError as err:  # the task failed on the worker: what it had sent may be billed
            self._paid_in_flight(calls, open_calls, stage_name)
            self._cancel(stream)
            return None, Failure("worker_error", f"Ray worker on {worker.info.node}: {first_line(err)}", final=False)
        finally:
            worker.in_flight -= 1
            endpoint.follow(0, done=True)

    def _cancel(self, stream: Any) -> None:
        if stream is not None:
            with contextlib.suppress(Exception):
                self.ray.cancel(stream)

    def _paid_in_flight(self, calls: list, n: int, stage_name: str | None) -> None:
        """Calls sent and never answered to us: perhaps answered and billed; counted as paid."""
        calls.extend(CallInfo(stage=stage_name or "unknown", model=self.model, interrupted=True) for _ in range(n))

    def _lost(self, worker: _Worker, err: BaseException) -> Failure:
        if worker.lost is None:
            worker.lost = first_line(err, 120)
            # unreachable may not mean dead: ended for good, so that it makes no call the ledger would not see
            with contextlib.suppress(Exception):
                self.ray.kill(worker.actor, no_restart=True)
            log.warning(
                "warning: the Ray worker on node %s (pid %s) is lost; the run goes on with %d of %d workers",
                worker.info.node,
                worker.info.pid,
                self.alive,
                len(self.workers),
            )
        if not self.alive:
            return Failure("workers_lost", "every Ray worker of the run is lost", fatal=True)
        return Failure("worker_lost", f"its Ray worker on {worker.info.node} was lost", final=False, retryable=True)

    def figures(self) -> dict[str, Any]:
        """For the summary: where the run's calls ran."""
        return {
            "address": self.address or "local",
            "workers_alive": self.alive,
            "workers": [w.figures() for w in self.workers],
            **({"cache": self.cache.directory} if self.cache is not None else {}),
        }

    def endpoint_figures(self) -> dict[str, dict[str, Any]] | None:
        """With several endpoints: by URL, the tasks the driver sent to each and the calls, failures and times taken
        out its live workers saw (a lost worker's are lost with it). None with one endpoint."""
        if self.spread is None:
            return None
        out = {s.url: {"tasks": s.calls, "calls": 0, "failures": 0, "taken_out": 0} for s in self.spread.states}
        live = [w.actor.endpoints.remote() for w in self.workers if w.lost is None]
        try:
            seen = self.ray.get(live, timeout=30)
        except self.ray.exceptions.RayError as err:
            log.debug("cannot read the workers' endpoint figures: %s", err)
            seen = []
        for figures in seen:
            for url, row in figures.items():
                for name in ("calls", "failures", "taken_out"):
                    out.setdefault(url, {"tasks": 0, "calls": 0, "failures": 0, "taken_out": 0})[name] += row[name]
        return out

    def close(self) -> None:
        """End the workers and the cache server (and the local Ray this pool started)."""
        actors = [w.actor for w in self.workers] + ([self.cache.server] if self.cache is not None else [])
        for actor in actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        if self.started_ray:
            with contextlib.suppress(Exception):
                self.ray.shutdown()


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


def _get(ray: Any, refs: list, doing: str) -> list:
    """ray.get, with a worker's own error (a key it lacks, a program it cannot load) as the one line it is."""
    try:
        return ray.get(refs, timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ConfigError(
            f"the Ray cluster could not {doing} in {START_TIMEOUT_S:.0f} s: does it have a CPU free for each of "
            "ray.workers?"
        ) from None
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, ConfigError | MissingKeyError | KeyProviderError):
            raise type(cause)(str(cause)) from None
        raise ConfigError(f"the Ray cluster could not {doing}: {first_line(cause or err)}") from None
    except (ray.exceptions.ActorUnschedulableError, ray.exceptions.RuntimeEnvSetupError) as err:
        # what the cluster cannot give the workers as asked: the config's (ray.workers, the runtime_env)
        raise ConfigError(f"the Ray cluster could not {doing}: {first_line(err)}") from None
    except ray.exceptions.RayError as err:  # a worker that died, or never ran: the cluster's state, not the config
        raise RunAborted(
            f"the Ray cluster could not {doing}: {first_line(err)} (`ray status` and the cluster's logs say why; "
            "nothing was paid: run the same command again once the cluster is well)"
        ) from None


def _no_lm_of_their_own(parts: dict[str, Any]) -> None:
    """A part with an LM pinned to a predictor would carry that LM (and its key) to every worker: refused."""
    for kind, part in parts.items():
        for name, predictor in part.named_predictors() if part is not None else ():
            if getattr(predictor, "lm", None) is not None:
                raise ConfigError(
                    f"the program's {kind} part has an LM set on its predictor {name}: on Ray each worker builds its "
                    "LMs from the config (a pinned LM object would carry its key to the workers); unset it, or run "
                    "without ray"
                )
