"""A stage's books: the price its calls are reserved and recorded at, and what records the stage does not write add to
its money (provider batches: what the batches paid, or may yet bill, that no record holds;
refed_dspy.launch.batch.books).

The stage asks its books, never its transport, what a call costs and what the run has paid: the transport only runs
work (refed_dspy.engine.transport). Online and on Ray every call is in the stage's own records, so the books add
nothing to them.
"""

from __future__ import annotations

from typing import Any

from refed_dspy.config.lm import LMSpec, price_of
from refed_dspy.providers.prices import Price


class Books:
    """The books of a stage whose calls all reach its own records (online, on Ray): its spec's price, nothing charged
    or collected apart, its usage what its records hold.

    Args:
        spec: the stage's LM section; its price is the call's price ([prices], else LiteLLM's map).
    """

    def __init__(self, spec: LMSpec):
        self.price: Price | None = price_of(spec)

    def charge(self, engine: Any) -> None:
        """With the run's log open: charge `engine`'s budget with what was paid, or may yet be billed, that no record
        of the stage holds (here: nothing)."""

    async def settle(self, engine: Any) -> bool:
        """Before new work is reserved: collect what an earlier invocation left open (here: nothing); False when a
        signal stopped it (the run is then interrupted, nothing started)."""
        return True

    def usage(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """The usage of the whole run, from what the stage's records hold (`recorded`)."""
        return recorded
