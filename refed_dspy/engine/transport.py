"""Where a stage's parts run: the one seam between an LM-bound stage and the place its calls are made.

A stage (synthesis, judging) says what to run; its transport says where: here, in this process's event loop
(LocalTransport, below), on the workers of a Ray cluster (refed_dspy.launch.ray.pool.WorkerPool), or here with each
call waiting on its answer in a provider's batch (refed_dspy.launch.batch.transport.BatchTransport). The launch
module (refed_dspy.launch) picks one for a command and hands it to the stage; the stage and its engine never ask which
they got.
The run transport is where a stage's parts run, not the HTTP layer where requests leave (refed_dspy.clients).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.clients.calls import collect_calls, stage
from refed_dspy.clients.lm_routing import LedgerScope, routing, within
from refed_dspy.config.lm import LMSpec, price_of
from refed_dspy.engine.failures import Failure, classify
from refed_dspy.providers.prices import Price


class Transport:
    """What a stage asks of the place its parts run, and the defaults of a place whose calls go out one HTTP request at
    a time from this process (LocalTransport) or from Ray workers (refed_dspy.launch.ray.pool.WorkerPool). Provider
    batches (refed_dspy.launch.batch) differ in what the defaults say: where the calls' record is, how long the work
    waits, what it costs; the engine and the stage call the same methods whatever they got.

    Running parts: `attach`, `run`, `in_flight_limit`, `tasks_in_flight`, the run's life (`begin`, `attempt`, `news`,
    `end`) and `close`. The money its own records hold (`price`, `charge`, `settle`, `usage`). Reporting, apart: `mode`,
    `doing`, `figures`, `progress`, `note`, `batches`.
    """

    # its calls are made where the run's write-ahead log is not (another process): the engine writes each task
    # to the log whole, before it sends it, instead of each request
    logs_tasks = False
    # its work waits on answers kept outside this process (a provider's batches, in the run dir): their store is the
    # calls' record (none is opened at the call boundary), the first calls are not held back one at a time (a batch
    # waits for all), and a stop lets none of it finish (the next invocation collects it)
    waits_outside = False
    mode = "online"  # what a summary calls it: online | batch
    doing = "running"  # what the progress line says of work under way

    # ---- running parts -----------------------------------------------------------------------------
    async def run(self, kind: str, stage_name: str | None, inputs: dict[str, Any], calls: list) -> tuple[Any, Any]:
        """Run the stage's part for `kind` on `inputs`: (prediction, None) or (None, Failure); each LM call it makes
        joins `calls` (its CallInfo), a call cut off in flight as paid. `stage_name`: the tag of its calls (None: the
        part tags its own)."""
        raise NotImplementedError

    def attach(self, lm: Any, adapter: Any, scope: Any) -> None:
        """The stage's LM, adapter and ledger scope, for parts run here (Ray workers build their own)."""

    def in_flight_limit(self, per_worker: int) -> int:
        """The calls the stage keeps in flight when the config asks for `per_worker` (on Ray: for each worker)."""
        return per_worker

    def tasks_in_flight(self, window: int) -> int:
        """The pieces of work the engine keeps under way for a window of `window` calls (batches: [batch]
        max_in_flight, each waiting on its answer)."""
        return window

    def begin(self, tasks_running: Callable[[], int], wake: Callable[[], None]) -> None:
        """The engine's run begins: `tasks_running()` counts its tasks, `wake()` lets its loop look again."""

    def attempt(self, key: str, work: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
        """`work`, one start of the piece of work `key`, as it is to run."""
        return work

    def news(self) -> Failure | str | None:
        """Asked after each look of the engine's loop: a Failure that stops the run, 'detached' (every piece of work
        waits on answers a later invocation collects), or None."""
        return None

    async def end(self) -> None:
        """The engine's run has ended (what runs cancelled and accounted)."""

    def close(self) -> None:
        """Let go of what it holds (threads, workers)."""

    # ---- the money its own records hold ------------------------------------------------------------
    def price(self, spec: LMSpec) -> Price | None:
        """What a call of `spec` is priced at here."""
        return price_of(spec)

    def charge(self, engine: Any) -> None:
        """With the run's log open: what its own records say was paid, or may yet be billed, that no record of the
        stage holds, charged to `engine`'s budget (online: nothing)."""

    async def settle(self, engine: Any) -> bool:
        """Before new work is reserved: what an earlier invocation left open collected; False when a signal stopped
        it (the run is then interrupted, nothing started)."""
        return True

    def usage(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """The usage of the whole run, from what the stage's records hold (`recorded`)."""
        return recorded

    # ---- reporting ---------------------------------------------------------------------------------
    def figures(self, usage: dict[str, Any]) -> dict[str, Any]:
        """What a summary says of where the calls ran ({} here; on Ray its workers and endpoints; batches: theirs and
        what the batch price saved of `usage`)."""
        return {}

    def progress(self) -> str:
        """What the progress line adds ('' here; on Ray the workers alive)."""
        return ""

    def note(self, final: bool = False) -> None:
        """Keep the run dir's note of the workers up to date for `refed status`."""

    def batches(self) -> list[Any]:
        """The provider batches of the run (their store's entries), for its figures and events; [] online."""
        return []


def has_aforward(module: Any) -> bool:
    """True when `module` has its own async entry point (DSPy's Module defines none)."""
    return callable(getattr(module, "aforward", None))


async def acall_part(module: dspy.Module, executor: Executor | None = None, **kwargs: Any) -> dspy.Prediction:
    """Await one part: its `acall`, or, for a module with only `forward`, that forward in a worker thread
    (with this task's context variables: the LM, adapter, stage and call collection all carry over)."""
    if has_aforward(module):
        return await module.acall(**kwargs)
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(ctx.run, _forward, module, kwargs)
    )


def _forward(module: dspy.Module, kwargs: dict[str, Any]) -> dspy.Prediction:
    """`module` run in a worker thread, its LMs' calls routed until it returns (the piece's task may end first)."""
    with routing():
        return module(**kwargs)


async def guarded_call(
    lm: Any,
    adapter: Any,
    scope: LedgerScope,
    calls: list,
    call: Callable[[], Awaitable[Any]],
    stage_name: str | None = None,
) -> tuple[Any, Failure | None]:
    """Await `call()` with `lm` and `adapter` in DSPy's context and `scope` as its ledger scope, its LM calls collected
    into `calls` (tagged `stage_name` unless its part tags them itself); any exception becomes a classified Failure.
    What a stage does around each piece of work, here or on a Ray worker."""
    with collect_calls(calls), within(scope), dspy.context(lm=lm, adapter=adapter, trace=None):
        try:
            if stage_name is None:
                return await call(), None
            with stage(stage_name):
                return await call(), None
        except Exception as err:  # noqa: BLE001 - every failure becomes a reject
            return None, classify(err)


class LocalTransport(Transport):
    """A Transport (refed_dspy.engine.transport) in this process. `parts`: the module run for each kind of task;
    `threads`: the threads kept for parts with only `forward` (0: none has); `note_path`: where an earlier invocation
    on Ray noted its workers (removed: this one runs here). The stage attaches its LM, adapter and ledger scope."""

    logs_tasks = False  # each request is written to the run's log by the call boundary, here

    def __init__(self, parts: dict[str, Any], threads: int = 0, note_path: Path | None = None):
        self.parts, self.note_path = parts, note_path
        self.lm = self.adapter = self.scope = None
        self.executor = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refed-part") if threads > 0 else None
        )

    def attach(self, lm: Any, adapter: Any, scope: Any) -> None:
        self.lm, self.adapter, self.scope = lm, adapter, scope

    async def run(self, kind: str, stage_name: str | None, inputs: dict[str, Any], calls: list) -> tuple[Any, Any]:
        part = self.parts[kind]
        return await guarded_call(
            self.lm, self.adapter, self.scope, calls, lambda: acall_part(part, self.executor, **inputs), stage_name
        )

    def note(self, final: bool = False) -> None:
        if self.note_path is not None:
            self.note_path.unlink(missing_ok=True)  # an earlier invocation's, on Ray: not this one's

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False)
