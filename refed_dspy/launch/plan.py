"""An LM-bound command's launch: what it runs with, resolved once, and the one transport its parts run on.

In three steps, so that each mistake is said before what costs more:
1. `launch(...)`, before anything else is read: the tracking store, a cost budget's price; on Ray, what a run there cannot take (an LM
   object, batch mode, a key for another provider's host); here, the LM (the one handed in, behind the call boundary,
   or one built from the config) with its key checked, or in batch mode the provider's batch API and key. What the
   stage runs with is then in the Launch: nothing after it reads the config for it.
   `Launch.serve()` then starts the local model the role's section reaches (`[local] serve = true`), once what it
   would serve is checked; the servers stop when the launch is closed, after its transport.
2. `Launch.workers(...)`, once the inputs are read and before the run dir is touched: on Ray the workers started and
   checked (their keys on their own nodes), and the Ray processes a killed invocation left in the run dir ended.
3. `Launch.start(rundir)`, with the run dir held: its cache, then the stage's LM and what it runs with (`Started`):
   the Ray workers loaded with the run's cache, or a LocalTransport; in batch mode the LM's calls go to the provider's
   batches through its broker, and the stage's answers, books and report are the batches'.
`close()` (or leaving the `with` block) lets the workers go and stops the local servers.

Online or batch: online, a stage calls its role's LM (one given from Python, else one built from the config). In batch
mode the LM is built from the config and its calls go to the provider's batch API through a broker whose records live
in the run dir, so it and its transport can only be made once the run dir is held; before that, `launch` checks that the
section's provider has a batch API it can take (refed_dspy.providers.registry.batch_provider) and that its key is set.

A command with no run dir (`refed judge meta-eval`: a few hundred labelled items, its results kept in memory) takes
step 1 with `here=True` and `Launch.start_here`: it runs online in this process, whatever [ray] and the section's mode
say, with the LM resolved as every other command's is.

The commands that hold their LMs (`refed optimize`, `refed experiment`) run no stage: a teleprompter, a metric and a
program call them, in DSPy's threads. Their LMs come from here too, before any call: `served` starts the local model
their sections reach, `held_lm` builds the teacher and judge (or puts those handed in behind the call boundary),
`check_role` and `check_held` refuse a key bound for another provider's hosts and, under a cost budget, an LM with no
price, and `held_calls` opens the ledger scope through which every LM they call (their own, a teleprompter's, a user's
metric's) is counted, budgeted and journaled (refed_dspy.clients.lm_routing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from refed_dspy.clients.destination import check_lm_key, endpoint_of
from refed_dspy.clients.lm import bounded, build_lm, price_of_lm, stage_lm
from refed_dspy.clients.lm_routing import LedgerScope, ledger_scope, scope_in_settings, within
from refed_dspy.clients.local_server import LocalServer, listening, served_roles, start
from refed_dspy.config import BatchConfig, Config, LMSpec, LocalServing, PriceBook, RayConfig
from refed_dspy.config.lm import price_note, require_price
from refed_dspy.engine.metrics import Endpoint, open_endpoint
from refed_dspy.engine.stage import Started
from refed_dspy.engine.transport import LocalTransport, Transport
from refed_dspy.engine.watch import Report, Watch
from refed_dspy.errors import ConfigError
from refed_dspy.launch.batch.answers import BatchAnswers, BatchReport
from refed_dspy.launch.batch.books import BatchBooks
from refed_dspy.launch.batch.broker import batch_lm
from refed_dspy.launch.ray.connect import end_left_behind, preflight, refuse_on_ray
from refed_dspy.launch.ray.pool import WorkerPool, WorkersReport, start_pool
from refed_dspy.providers.keys import check_key, check_key_goes_to_its_provider
from refed_dspy.providers.registry import batch_provider
from refed_dspy.store.cache import use_run_cache
from refed_dspy.store.lock import refuse_if_held
from refed_dspy.store.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class Launch:
    """The plan of one LM-bound command's stage of `role` (teacher: the synthesis; judge: the judging), made by
    `launch`: see the module docstring. A context manager: the workers are let go when it is left."""

    role: str
    spec: LMSpec  # the role's LM section
    mode: str  # online | batch
    lm: Any  # online here: the stage's LM, behind the call boundary; None on Ray and in batch mode
    ray: RayConfig | None  # where the workers run; None: here
    batch: BatchConfig  # how a batch-mode stage's batches are made and watched
    prices: PriceBook
    progress_every_s: float  # between the lines a start on Ray says while it waits
    local: LocalServing | None = None  # the [local] model to serve for the role; None: its LM was handed in
    pool: WorkerPool | None = None
    transport: Transport | None = None
    served: ExitStack = field(default_factory=ExitStack)  # the local servers started by `serve`
    metrics: Endpoint | None = None  # [metrics]: the Prometheus endpoint (its port bound) and the OTLP exporter

    def serve(self) -> list[LocalServer]:
        """Once the launch is resolved: with `[local] serve = true`, the local model the role's section reaches started
        where nothing serves it yet (refed_dspy.clients.local_server); the servers started here, stopped when the
        launch is closed, after its transport."""
        if self.local is None:
            return []
        return self.served.enter_context(served(self.local, {self.role: self.spec}))

    def workers(self, parts: dict[str, Any], concurrency: int, run_dir: Path, show_progress: bool) -> None:
        """Before the run dir is touched: the Ray processes a killed invocation left in `run_dir` ended; on Ray the
        workers that run `parts` started and checked (`concurrency` calls in flight each), unless another command
        holds the run dir (RunDirError, before Ray starts)."""
        end_left_behind(run_dir)
        if self.ray is None:
            return
        refuse_if_held(run_dir)
        self.pool = start_pool(
            self.ray,
            self.spec,
            self.role,
            parts,
            concurrency=concurrency,
            prices=self.prices,
            progress_every_s=self.progress_every_s if show_progress else None,
            run_dir=run_dir,
        )

    def start(
        self,
        rundir: RunDir,
        parts: dict[str, Any],
        note_path: Path,
        *,
        threads: int = 0,
        detach: bool = False,
        store_name: str = "batches",
        earlier: tuple[Path, ...] = (),
    ) -> Started:
        """With the run dir held: its cache in use, then the stage's LM and transport. `note_path`: where the workers
        are noted for `refed status`; `threads`: the threads for parts with only `forward`, here; `detach` and
        `store_name`: batch mode's (stop once every task waits on a submitted batch; its store in the run dir);
        `earlier`: the caches of work the run builds on (store.cache.use_run_cache)."""
        cache = use_run_cache(rundir, earlier)
        watch = Watch(rundir.path, self.role, rundir.metrics if self.role == "teacher" else rundir.judge_metrics)
        if self.metrics is not None:
            self.metrics.follow(watch.snapshot)
        if self.pool is not None:
            self.pool.load(str(cache))
            return Started(None, self.pool, watch, report=WorkersReport(self.pool, note_path))
        if self.mode == "batch":
            lm, broker = batch_lm(self.spec, self.role, rundir.path, self.batch, detach=detach, store_name=store_name)
            self.transport = LocalTransport(parts, threads)
            books, report = BatchBooks(self.spec, broker), BatchReport(broker, self.spec, note_path)
            return Started(lm, self.transport, watch, books, report, BatchAnswers(broker, self.batch.max_in_flight))
        self.transport = LocalTransport(parts, threads)
        return Started(self.lm, self.transport, watch, report=Report(note_path))

    def start_here(self, parts: dict[str, Any]) -> Started:
        """For a command with no run dir (`launch(..., here=True)`): the LM and a LocalTransport running `parts`."""
        self.transport = LocalTransport(parts)
        return Started(self.lm, self.transport)

    def close(self, linger: bool = True) -> None:
        """Let the transport go (its threads here, or the Ray workers), then stop the local servers `serve` started,
        then the metrics endpoint (`linger`: after metrics.linger_s, for a scraper to read the final values)."""
        try:
            for transport in (self.transport, self.pool):
                if transport is not None:
                    transport.close()
        finally:
            try:
                self.served.close()
            finally:
                if self.metrics is not None:
                    self.metrics.close(linger)

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, kind: type | None, *exc: Any) -> None:
        self.close(linger=kind is None or not issubclass(kind, KeyboardInterrupt))  # a stop ends at once


def _role(config: Config, role: str) -> tuple[LMSpec, str, Any]:
    """(its LM section, the name of its stage's section, that section) of `role`, "teacher" or "judge"."""
    if role == "teacher":
        return config.teacher, "synthesis", config.synthesis
    return config.judge, "judging", config.judging


def launch(config: Config, role: str, lm: Any, here: bool = False) -> Launch:
    """Step 1 (see the module docstring) for the stage of `role`, "teacher" or "judge": a cost budget's price, then the
    one transport the stage runs on, picked here and checked for what it needs: provider batch (a batch API for the
    section's provider, and its key), local online (the stage's LM: `lm`, a user's LM behind the call boundary, or one
    built from the config, with its key checked) or Ray (what a run there cannot take). `here`: a command with no run
    dir, run online in this process (then `Launch.start_here`)."""
    spec, section, stage = _role(config, role)
    if config.tracking.store_problem:  # a store MLflow will refuse, said before any call (a config read from a run
        # dir, as `refed judge run` reads it, is not checked as it is read)
        raise ConfigError(f"tracking: {config.tracking.store_problem}")
    local = config.local if lm is None else None  # the local model to serve: none for an LM handed in
    for note in spec.start_notes(role) if lm is None else ():  # said once, as the run starts
        log.info(note)
    if stage.max_cost_usd is not None:  # a cost budget needs a price: a model without one is refused at once
        require_price(spec, role, f"{section}.max_cost_usd", handed_in=lm is not None)
    # no budget needs a price: a likely typo of a priced model is said (once the LM is checked) and the run goes on
    unpriced = price_note(spec, role) if lm is None and stage.max_cost_usd is None else None
    mode = "online" if here else stage.mode
    ray = config.ray if config.ray.enabled and not here else None
    # one transport of three: provider batch, local online, or Ray
    if ray is None and mode == "batch":  # the provider's batch API and the key to it; the LM is made in the run dir
        if spec.service_tier != "default":  # a batch request is priced at the batch price: it asks for no tier
            raise ConfigError(
                f'{role}.service_tier = "{spec.service_tier}" is for online calls; batch mode has a price of its own '
                f'({role}.batch_price_factor): set {role}.service_tier = "default", or run online'
            )
        batch_provider(spec, role)
        check_key(spec, role)
        lm = None
    elif ray is None:  # the LM handed in, behind the call boundary (counted, budgeted and checked like a built one),
        # else one built from the section, `concurrency` calls wide; the engine retries a failed piece of work itself,
        # so the LM retries nothing
        lm = (
            bounded(lm, role, fresh=True).take_retries(engine_retries=True)
            if lm is not None
            else stage_lm(spec, role, stage.concurrency)
        )
    else:  # on Ray: what a run there cannot take, then the key (each worker reads its own: it must suit the
        # section's endpoints as a local run's does) and whether the cluster answers
        refuse_on_ray(lm, mode, role, section)
        check_key_goes_to_its_provider(spec, role)
        preflight(ray.address)
    if unpriced:
        log.warning(unpriced)
    return Launch(
        role=role,
        spec=spec,
        mode=mode,
        lm=lm,
        ray=ray,
        batch=config.batch,
        prices=config.price_book,
        progress_every_s=config.run.progress_every_s,
        local=local,
        metrics=None if here else open_endpoint(config.metrics, role),  # last: its port bound, before any call
    )


# The commands that hold their LMs (optimize, experiment) run no stage: their program, metric and teleprompter call the
# LMs resolved here, before any call, and every LM they hold passes the call boundary on the ledger `held_calls` opens.


@contextmanager
def served(local: LocalServing, specs: dict[str, LMSpec]) -> Iterator[list[LocalServer]]:
    """For the block, with `[local] serve = true`: the local model the sections of `specs` (role -> section) reach,
    started where nothing listens yet (refed_dspy.clients.local_server); yields the servers started here (none when
    every endpoint was served already) and stops them on the way out. ConfigError when one cannot start (the [local]
    extra missing, the port taken)."""
    started: list[LocalServer] = []
    try:
        for url, roles in served_roles(local, specs).items():
            who = " and ".join(roles)
            if listening(url):  # nothing to do, and nothing said but in debug logs
                log.debug("local model: %s is served already: used there by the %s, nothing started", url, who)
                continue
            log.info(f"local model: nothing listens at {url}; starting {local.model_name} there for the {who}")
            server = start(
                local.gguf,
                port=urlsplit(url).port or 0,
                slots=local.slots,
                ctx_per_slot=local.ctx_per_slot,
                threads=local.threads,
            )
            started.append(server)
            log.info(
                f"local model: serving {server.name} ({server.model_path.name}, {server.slots} slots) at "
                f"{server.api_base}; it stops when this command ends"
            )
        yield started
    finally:
        for server in started:
            server.stop()
            log.info(f"local model: stopped the server at {server.api_base}")


def held_lm(spec: LMSpec, role: str, lm: Any = None) -> Any:
    """The LM a command that holds its LMs calls for `role`: a copy of `lm` (one handed in; the caller's object is left
    as it was) behind the call boundary, else one built from `spec`, its key checked. No engine retries its work: it
    makes DSPy's retries itself, each one counted."""
    return bounded(lm, role, fresh=True) if lm is not None else build_lm(spec, role)


def check_role(spec: LMSpec, role: str, budget_field: str | None, key: bool = True, handed_in: bool = False) -> None:
    """Before any call: the key of the section of `role` goes only to its provider's hosts (KeyProviderError; `key`
    False for an LM checked as it is built or put behind the boundary), and under the cost budget `budget_field`
    names, the section's model has a price (ConfigError; `handed_in`: `spec` describes an LM handed in)."""
    if key:
        check_key_goes_to_its_provider(spec, role)
    if budget_field is not None:
        require_price(spec, role, budget_field, handed_in)


@dataclass(frozen=True)
class HeldLM:
    """One LM an object of the command holds (a teleprompter, a metric, a program): where (for a message), the role
    its calls are counted under, the LM."""

    where: str
    role: str
    lm: Any


def check_held(held: list[HeldLM], prices: PriceBook, budget_field: str | None) -> None:
    """Before any call: each held LM's key goes only to its provider's hosts (KeyProviderError); a cost budget needs
    a price for every LM that will spend it (ConfigError naming the first without one)."""
    for one in held:
        check_lm_key(one.lm, one.where)
    if budget_field is None:
        return
    for one in held:
        model = str(getattr(one.lm, "model", "?"))
        if price_of_lm(one.lm, prices) is None:
            raise ConfigError(
                f"{budget_field} needs a price for the LM '{model}' ({one.where}, counted as {one.role}), which is "
                f'not in the price table: price it in the config ([prices."{model}"] input_usd_per_mtok and '
                f"output_usd_per_mtok), give it a priced model, or leave {budget_field} unset"
            )


@contextmanager
def own_run() -> Iterator[None]:
    """For the block, where no run of ours is under way in this context (a user's own call of compile_program), a
    run of its own: every LM called here and in the threads DSPy starts passes the call boundary, on no ledger, and
    shares the run's requests in flight (refed_dspy.clients.flights); inside a run, nothing changes."""
    if scope_in_settings() is not None:
        yield
        return
    with within(LedgerScope()):
        yield


@contextmanager
def held_calls(budget: Any, prices: PriceBook, claims: tuple[tuple[Any, str, Any], ...]) -> Iterator[LedgerScope]:
    """For the block: every LM called (here, in tasks started here and in the threads DSPy starts) passes the call
    boundary on `budget`'s ledger, priced by `prices`: each of `claims` (LM, role, the twin its calls go to or None)
    under its role, any other as refed_dspy.clients.lm_routing says; a straggler DSPy sends again waits for the
    first's answer (refed_dspy.clients.flights)."""
    scope = LedgerScope(budget, prices)
    for lm, role, twin in claims:
        scope.claim(lm, role, twin)
    with ledger_scope(scope):
        yield scope


def endpoints_of(spec: LMSpec, lm: Any = None) -> Any:
    """Where the requests of a role go: those of `lm` (one handed in) where it names them, else its section's."""
    return (endpoint_of(lm) if lm is not None else None) or spec.endpoints
