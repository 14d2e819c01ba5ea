"""The books of a stage whose calls wait in provider batches: calls priced at the batch price; what the batches paid,
or may yet bill, that no record holds charged to the budget (BatchLedger); batches an earlier invocation left open
collected before new work is reserved; the run's usage with what the provider answered that no record holds, and the
requests still open."""

from __future__ import annotations

import asyncio
from typing import Any

from refed_dspy.clients.prompt_cache import counts_as_we_do
from refed_dspy.config.lm import LMSpec, price_of
from refed_dspy.launch.batch.broker import BatchBroker, settle_earlier
from refed_dspy.launch.batch.store import (
    BatchLedger,
    answered_costs,
    answered_usage,
    open_requests,
    request_bound,
    with_open,
)
from refed_dspy.ledger.books import Books
from refed_dspy.ledger.usage import with_unrecorded


class BatchBooks(Books):
    """Books (refed_dspy.ledger.books) kept with `broker`'s batch store, for calls made with `spec` at its batch price
    (a batch request asks for no tier)."""

    def __init__(self, spec: LMSpec, broker: BatchBroker):
        super().__init__(spec)
        self.price = price_of(spec, batch=True)
        self.ours = counts_as_we_do(spec.model)  # its provider counts a prompt as refed does
        self.broker = broker

    def charge(self, engine: Any) -> None:
        """Each request's bound written with its batch's plan, and what the batches paid (or may yet bill) that no
        record holds and no work of this invocation asked for charged to the budget (BatchLedger), weighed against
        what the records hold now; work is reserved at what the batches' answers cost."""
        broker, role, ours = self.broker, engine.limits.role, self.ours

        def weigh(counted: int, most: int) -> int:  # a first wave goes before any answer says the provider's count
            return engine.budget.weighed_prompt(role, counted, None if ours else most)

        broker.bound_of = request_bound(self.price, engine.limits.max_tokens, weigh)
        broker.heard = lambda counted, reported: engine.budget.heard_prompt(role, counted, reported)
        ledger = BatchLedger(broker.store, engine.totals.as_dict(), self.price, broker.settings.max_resubmits)
        broker.ledger = ledger
        engine.budget.apart = ledger.figures
        engine.budget.learn_paid(role, answered_costs(broker.store, self.price))

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
        return with_open(with_unrecorded(recorded, answered_usage(store), self.price), open_requests(store))
