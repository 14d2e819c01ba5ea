"""Provider batches as a run transport: a stage's parts run here, each LM call waiting on its answer in a batch.

The parts run as they do online (LocalTransport: the same DSPy modules, adapter, messages and cache key); the stage's
LM is the one `batch_lm` built, whose HTTP layer hands each request to the broker (refed_dspy.launch.batch.broker).
What differs is what the engine and its stage ask of every transport (refed_dspy.engine.transport):

- each start of a piece of work is an attempt of its own, its calls numbered under its key and attempt (their
  custom_ids), so a stored error answer is never handed back to the attempt that follows it;
- the broker runs beside the engine's loop (`begin`, `end`): told how many tasks run, it wakes the loop when it has
  news, and the loop stops when the broker has detached (every task waits on a submitted batch) or its provider refused;
- the tasks wait outside this process: the window is `[batch] max_in_flight` tasks, no first call is held back, a stop
  lets none finish, and the batch store is the calls' record;
- the money: calls are priced at the batch price; what the batches paid, or may yet bill, that no record holds is
  charged to the budget (BatchLedger), and batches an earlier invocation left open are collected before new work is
  reserved; the run's usage adds what the provider answered that no record holds, and the requests still open.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from refed_dspy.config.lm import LMSpec, price_of
from refed_dspy.engine.failures import Failure
from refed_dspy.engine.transport import LocalTransport
from refed_dspy.launch.batch.broker import BatchBroker, batch_figures, in_slot, settle_earlier
from refed_dspy.launch.batch.store import (
    BatchLedger,
    answered_costs,
    answered_usage,
    open_requests,
    request_bound,
    with_open,
)
from refed_dspy.ledger.usage import with_unrecorded
from refed_dspy.providers.prices import Price


def batch_api_failure(message: str, status: int | None) -> Failure:
    """The Failure a provider's batch API error stops the run with: a refused key or no such endpoint are the
    endpoint's (as online), anything else `batch_api`."""
    reason = "auth" if status in (401, 403) else "not_found" if status in (404, 405) else "batch_api"
    return Failure(reason, f"HTTP {status}: {message}" if reason != "batch_api" else message, final=False, fatal=True)


class BatchTransport(LocalTransport):
    """A run transport whose calls, made with `spec`, go to a provider's batch API through `broker` (see the module
    docstring). `max_in_flight`: the tasks kept waiting on batches."""

    waits_outside = True
    mode = "batch"
    doing = "waiting on batches"

    def __init__(
        self,
        parts: dict[str, Any],
        broker: BatchBroker,
        spec: LMSpec,
        max_in_flight: int,
        threads: int = 0,
        note_path: Path | None = None,
    ):
        super().__init__(parts, threads, note_path)
        self.broker = broker
        self.max_in_flight = max_in_flight
        self.price_factor = spec.batch_price_factor  # the batch price against online
        self.batch_price = price_of(spec, batch=True)
        self.starts: Counter = Counter()  # times each piece of work was started (its custom_ids' attempt)

    # ---- running parts -----------------------------------------------------------------------------
    def tasks_in_flight(self, window: int) -> int:
        return self.max_in_flight

    def begin(self, tasks_running: Callable[[], int], wake: Callable[[], None]) -> None:
        self.broker.tasks_running = tasks_running
        self.broker.on_wake = wake
        self.broker.start()

    def attempt(self, key: str, work: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
        slot = in_slot(work, key, self.starts[key])
        self.starts[key] += 1
        return slot

    def news(self) -> Failure | str | None:
        error = self.broker.error
        if error is not None:
            return batch_api_failure(str(error), error.status)
        return "detached" if self.broker.detached else None

    async def end(self) -> None:
        await self.broker.close()

    # ---- money ---------------------------------------------------------------------------------------
    def price(self, spec: LMSpec) -> Price | None:
        return self.batch_price  # its spec's, at the batch price (a batch request asks for no tier)

    def charge(self, engine: Any) -> None:
        """Each request's bound written with its batch's plan, and what the batches paid (or may yet bill) that no
        record holds and no work of this invocation asked for charged to the budget (BatchLedger), weighed against
        what the records hold now; work is reserved at what the batches' answers cost."""
        broker = self.broker
        broker.bound_of = request_bound(self.batch_price, engine.limits.max_tokens)
        ledger = BatchLedger(broker.store, engine.totals.as_dict(), self.batch_price, broker.settings.max_resubmits)
        broker.ledger = ledger
        engine.budget.apart = ledger.figures
        engine.budget.learn_paid(engine.limits.role, answered_costs(broker.store, self.batch_price))

    async def settle(self, engine: Any) -> bool:
        """The batches an earlier invocation left open collected before new work is reserved (their requests are
        charged at their bound until then; refed_dspy.launch.batch.broker.settle_earlier)."""
        broker = self.broker
        if broker.ledger is None or not broker.ledger.open:
            return True
        try:
            await settle_earlier(broker)
        except asyncio.CancelledError:
            engine.interrupted = engine.stopping = True
            await broker.close()
            return False
        return True

    def usage(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """What the records hold, with what the provider answered that no record holds (calls whose work a kill cut
        off: billed, though a resume replays them from the cache), and the requests of batches still open (counted as
        paid at their bound, their tokens unknown)."""
        store = self.broker.store
        return with_open(with_unrecorded(recorded, answered_usage(store), self.batch_price), open_requests(store))

    # ---- reporting -----------------------------------------------------------------------------------
    def figures(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {"batch": batch_figures(self.broker, usage, self.price_factor)}

    def batches(self) -> list[Any]:
        return list(self.broker.store.batches.values())
