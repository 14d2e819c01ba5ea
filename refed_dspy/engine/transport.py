"""Where a stage's parts run: the one seam between an LM-bound stage and the place its calls are made.

A stage (synthesis, judging) says what to run; its transport says where: here, in this process's event loop
(LocalTransport, below), or on the workers of a Ray cluster (refed_dspy.launch.ray.pool.WorkerPool). In provider batch
mode the parts run here, each call waiting on its answer in a batch: those answers are the engine's to wait on
(refed_dspy.launch.batch.answers.BatchAnswers), not a transport of their own. The launch module (refed_dspy.launch)
picks one for a command and hands it to the stage; the stage and its engine never ask which they got.
The run transport is where a stage's parts run, not the HTTP layer where requests leave (refed_dspy.clients).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.clients.calls import collect_calls, stage
from refed_dspy.clients.lm_routing import LedgerScope, routing, within
from refed_dspy.engine.failures import Failure, classify


@dataclass(frozen=True)
class Piece:
    """One piece of a stage's work as its transport runs it: the part for `kind` on `inputs`, each LM call it makes
    joining `calls` (its CallInfo) tagged `stage` (None: the part tags its own), with the stage's `lm`, `adapter` and
    ledger `scope` (Ray workers build their own)."""

    kind: str
    stage: str | None
    inputs: dict[str, Any]
    calls: list
    lm: Any = None
    adapter: Any = None
    scope: LedgerScope | None = None


class Transport:
    """Where a stage's parts run: in this process (LocalTransport) or on Ray workers
    (refed_dspy.launch.ray.pool.WorkerPool). It only runs work: the money is the stage's books'
    (refed_dspy.ledger.books), where the answers come from the engine's (refed_dspy.engine.execution.Answers: provider
    batches wait outside this process) and what the place says of itself its report's (refed_dspy.engine.watch.Report).
    """

    # its calls are made where the run's write-ahead log is not (another process): the engine writes each task
    # to the log whole, before it sends it, instead of each request
    logs_tasks = False

    async def run(self, piece: Piece) -> tuple[Any, Any]:
        """Run `piece`: (prediction, None) or (None, Failure); a call cut off in flight joins its calls as paid."""
        raise NotImplementedError

    def in_flight_limit(self, per_worker: int) -> int:
        """The calls the stage keeps in flight when the config asks for `per_worker` (on Ray: for each worker)."""
        return per_worker

    def close(self) -> None:
        """Let go of what it holds (threads, workers)."""


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
    `threads`: the threads kept for parts with only `forward` (0: none has)."""

    def __init__(self, parts: dict[str, Any], threads: int = 0):
        self.parts = parts
        self.executor = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refed-part") if threads > 0 else None
        )

    async def run(self, piece: Piece) -> tuple[Any, Any]:
        part = self.parts[piece.kind]
        return await guarded_call(
            piece.lm,
            piece.adapter,
            piece.scope,
            piece.calls,
            lambda: acall_part(part, self.executor, **piece.inputs),
            piece.stage,
        )

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False)
