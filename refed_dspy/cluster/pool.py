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
from refed_dspy.clients.pricing import PriceBook
from refed_dspy.clients.spec import LMSpec
from refed_dspy.cluster.connect import connect
from refed_dspy.cluster.worker import PartWorker, WorkerInfo
from refed_dspy.config import RayConfig
from refed_dspy.engine.failures import Failure
from refed_dspy.errors import ConfigError, MissingKeyError, first_line

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
        ray, started = connect(settings.address, settings.workers)
        actor_class = ray.remote(PartWorker)
        actors = [
            actor_class.options(
                max_concurrency=concurrency + 8, max_restarts=0, num_cpus=1, scheduling_strategy="SPREAD"
            ).remote(spec, role, parts, concurrency, prices)
            for _ in range(settings.workers)
        ]
        pool = cls(ray, [], spec.model, settings.address, started)
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

    def load(self, cache_dir: str, fallback_cache_dir: str) -> None:
        """Build each worker's LM and point its DSPy cache at `cache_dir` (the run's, where its node sees the driver's
        disk) or `fallback_cache_dir` (a directory of its node, `~` its home)."""
        try:
            refs = [w.actor.load.remote(cache_dir, fallback_cache_dir) for w in self.workers]
            caches = _get(self.ray, refs, "ready its workers (their LMs, their caches)")
        except BaseException:
            self.close()
            raise
        shared = sum(1 for c in caches if c == cache_dir)
        if shared < len(caches):
            log.info(
                "%d of %d Ray workers cache on their own node (they do not see %s)",
                len(caches) - shared,
                len(caches),
                cache_dir,
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
        open_calls = 0
        stream = worker.actor.run.options(num_returns="streaming").remote(kind, stage_name, inputs)
        try:
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
            return None, Failure("worker_error", "the Ray worker ended the task without a result", final=False)
        except asyncio.CancelledError:
            self._paid_in_flight(calls, open_calls, stage_name)
            with contextlib.suppress(Exception):
                self.ray.cancel(stream)
            raise
        except self.ray.exceptions.RayActorError as err:
            self._paid_in_flight(calls, open_calls, stage_name)
            return None, self._lost(worker, err)
        except self.ray.exceptions.RayError as err:
            return None, Failure("worker_error", f"Ray worker on {worker.info.node}: {first_line(err)}", final=False)
        finally:
            worker.in_flight -= 1

    def _paid_in_flight(self, calls: list, n: int, stage_name: str | None) -> None:
        """Calls sent and never answered to us: perhaps answered and billed; counted as paid."""
        calls.extend(CallInfo(stage=stage_name or "unknown", model=self.model, interrupted=True) for _ in range(n))

    def _lost(self, worker: _Worker, err: BaseException) -> Failure:
        if worker.lost is None:
            worker.lost = first_line(err, 120)
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
        }

    def close(self) -> None:
        """End the workers (and the local Ray this pool started)."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                self.ray.kill(w.actor)
        if self.started_ray:
            with contextlib.suppress(Exception):
                self.ray.shutdown()


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
        if isinstance(cause, ConfigError | MissingKeyError):
            raise type(cause)(str(cause)) from None
        raise ConfigError(f"the Ray cluster could not {doing}: {first_line(cause or err)}") from None


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
