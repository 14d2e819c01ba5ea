"""How a run's Ray workers are started and checked, before anything is paid or written (WorkerPool.load then
readies them, once the run dir is there)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from refed_dspy.clients.endpoints import EndpointSpread
from refed_dspy.config import RayConfig
from refed_dspy.config.lm import LMSpec
from refed_dspy.config.prices import PriceBook
from refed_dspy.errors import ConfigError
from refed_dspy.launch.ray.connect import connect, joins
from refed_dspy.launch.ray.pool import Worker, WorkerPool
from refed_dspy.launch.ray.ready import Waiting, answers
from refed_dspy.launch.ray.worker import PartWorker, WorkerInfo
from refed_dspy.providers.registry import provider_for

log = logging.getLogger(__name__)


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
