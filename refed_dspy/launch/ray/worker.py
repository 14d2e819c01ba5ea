"""A Ray worker of a run: the program's parts loaded once, an LM built on its node, one task at a time streamed back.

Plain Python (the pool makes it a Ray actor): what it is sent is the config (key variables by name, never a key), the
parts of the program (modules with no LM of their own) and where its cache lives. Each task runs under the same
guard as a local one (refed_dspy.engine.stage.guarded_call); its events are the calls as they start, finish and
end, so that the driver counts a call a lost worker had in flight as paid.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.clients.calls import CallInfo, HeldShort
from refed_dspy.clients.lm import stage_lm
from refed_dspy.clients.lm_routing import LedgerScope
from refed_dspy.config.lm import LMSpec, PriceBook, price_of
from refed_dspy.engine.transport import acall_part, guarded_call, has_aforward
from refed_dspy.launch.ray.cache_server import CachePlan, RemoteRunCache
from refed_dspy.launch.ray.connect import import_ray
from refed_dspy.ledger.tickets import Ticket, at_tier
from refed_dspy.store.cache import use_cache_dir

_DONE = object()


@dataclass(frozen=True)
class WorkerInfo:
    """Where a worker runs (its host, its Ray node, its process), and the key variable it lacks (None: it has what the
    config names)."""

    node: str
    pid: int
    missing_key: str | None
    node_id: str = ""


class CallEvents:
    """The ledger the LM of one task on a worker reports to: it grants every call (the driver reserved the task's
    worst case against the run's one budget) and turns each call's start, record and end into the task's events, in
    order: ("start",) as a call is sent, ("call", CallInfo) as one is answered or fails, ("end",) as a call is over
    (answered, failed or never sent), and last ("result", value, failure); sent in batches on the task's `queue` (on
    `loop`: a part with only `forward` calls its LM in a thread of the worker). Under a cost budget (`held`: what the
    driver held the task at, its calls priced at `price`) each call's prompt is counted, and a call that could take
    the task's calls past that is refused before it is sent (HeldShort: the driver starts the task again, held at
    what that call needs)."""

    max_cost_usd = None

    def __init__(
        self, queue: asyncio.Queue, loop: asyncio.AbstractEventLoop, held: float | None = None, price: Any = None
    ):
        self.queue, self.loop = queue, loop
        self.held = held if price is not None else None
        self.price = price
        self.asked = 0.0  # the bounds of the calls it let go
        self._lock = threading.Lock()

    @property
    def counts_prompts(self) -> bool:
        """Its calls' prompts are counted: the task is held at a cost (else the driver's reservation covers it
        whole)."""
        return self.held is not None

    def __deepcopy__(self, memo: dict) -> CallEvents:
        return self  # one task's events, whatever copies its LM (a part that deep-copies its modules)

    def open_call(
        self,
        role: str,
        model: str,
        stage: str,
        price: Any,
        max_tokens: int,
        prompt_tokens: int | None,
        tier: str | None = None,
        most: int | None = None,  # its prompt's bytes: weighed at refed's count here (docs/guides/budgets.md)
    ) -> Ticket:
        if self.held is not None and prompt_tokens is not None:
            self._within_held(at_tier(self.price, tier)[0].bound(prompt_tokens, max_tokens), prompt_tokens)
        self._put(("start",))
        return Ticket(role, 0.0, 1)

    def _within_held(self, bound: float, prompt_tokens: int) -> None:
        with self._lock:
            if self.asked + bound > self.held + 1e-12:
                raise HeldShort(
                    f"a call of {prompt_tokens:,} prompt tokens may cost up to ${bound:.4f}, more than its piece of "
                    f"work was held at (${self.held:.4f}, ${self.asked:.4f} of it taken): started again, held at that",
                    bound,
                )
            self.asked += bound

    def settle(self, ticket: Ticket, info: CallInfo, price: Any) -> None:
        """Nothing to write here: the call's record is its event."""

    def release_call(self, ticket: Ticket) -> None:
        self._put(("end",))

    def record(self, infos: list[CallInfo], price: Any, role: str) -> dict[str, Any]:
        for info in infos:
            self._put(("call", info))
        return {}

    def refuse(self, message: str) -> None:  # pragma: no cover - the worker's ledger has no cost budget
        raise AssertionError(message)

    def _put(self, event: tuple) -> None:
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:  # a thread of a part with only `forward`
            here = False
        if here:
            self.queue.put_nowait(event)
        else:  # an asyncio queue is not thread-safe, and the loop must wake to send the event on at once
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class PartWorker:
    """One worker: `info()` says where it is and what it lacks, `load()` builds its LM (raising MissingKeyError when the
    key is not set on its node), `run(kind, stage, inputs)` streams one task's events."""

    def __init__(self, spec: LMSpec, role: str, parts: dict[str, Any], max_connections: int, prices: PriceBook | None):
        self.spec, self.role, self.parts = spec, role, parts
        self.max_connections = max_connections
        self.prices = prices
        self.lm: Any = None
        self.price: Any = None
        self.executor: ThreadPoolExecutor | None = None

    def info(self) -> WorkerInfo:
        name = self.spec.key_variable()
        node_id = import_ray().get_runtime_context().get_node_id()
        lacking = name if name and not os.environ.get(name) else None
        return WorkerInfo(socket.gethostname(), os.getpid(), lacking, node_id)

    def load(self, cache: CachePlan, direct: bool) -> None:
        """Build the LM and point DSPy's cache at the run's: opened here (`direct`: this worker is on the node whose
        disk holds it) or reached through its CacheServer."""
        if direct:
            use_cache_dir(cache.directory)
        else:
            dspy.cache = RemoteRunCache(cache.server, import_ray())
        self.lm = stage_lm(self.spec, self.role, self.max_connections)  # a RefedLM: behind the call boundary
        self.price = price_of(self.spec)  # its calls' bounds, as the driver prices them, under a cost budget
        self.lm.notes()  # made now: the LM of each task (a shallow copy) shares what it learns and warns of once
        self.adapter = build_adapter(self.spec)
        self.scope = LedgerScope(None, self.prices)
        if any(part is not None and not has_aforward(part) for part in self.parts.values()):
            self.executor = ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="refed-part")

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Calls, failures and times taken out by endpoint URL, of this worker's LM (empty with one endpoint)."""
        spread = getattr(self.lm, "endpoint_spread", None)
        return spread.figures() if spread is not None else {}

    async def run(
        self,
        kind: str,
        stage_name: str | None,
        inputs: dict[str, Any],
        endpoint: int | None = None,
        held: float | None = None,
    ):
        """One task through its part of the program: its events as they happen, in batches (every event queued when
        the stream wakes: one call's answer and end and the next call's start travel as one), the last batch ending
        with ("result", value, failure). Each batch is one object the driver receives: fewer means less of its CPU.
        `endpoint`: the index of the endpoint the driver chose for the task (several endpoints), while it is healthy.
        `held`: under a cost budget, what the driver held the task at (CallEvents)."""
        queue: asyncio.Queue = asyncio.Queue()
        events = CallEvents(queue, asyncio.get_running_loop(), held, self.price)
        lm = copy.copy(self.lm).attach_budget(events, self.role, None)
        lm.preferred_endpoint = endpoint  # this task's LM: its calls' events on its queue, to the driver's endpoint
        task = asyncio.ensure_future(self._run(lm, kind, stage_name, inputs, queue))
        try:
            while True:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                if batch[-1] is _DONE:
                    yield [*batch[:-1], ("result", *task.result())]
                    return
                yield batch
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _run(
        self, lm: Any, kind: str, stage_name: str | None, inputs: dict[str, Any], queue: asyncio.Queue
    ) -> tuple:
        part = self.parts[kind]
        try:
            return await guarded_call(
                lm, self.adapter, self.scope, [], lambda: acall_part(part, self.executor, **inputs), stage_name
            )
        finally:
            queue.put_nowait(_DONE)
