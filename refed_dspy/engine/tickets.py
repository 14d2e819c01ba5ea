"""How a single LM call is opened on a ledger at the call boundary: reserved at what it can cost (under a cost budget,
its prompt counted before it is sent), written to the run's write-ahead log, settled with what it paid, and given back.

Two ledgers open calls: a CallBudget itself (an LM with a budget of its own: optimize, experiments, a user's), one call
reserved each (`OpensCalls`, which CallBudget takes in); and an engine task's `TaskLedger`, whose task reserved its
calls' worst case already: each of its calls takes what it can cost from that, and what the task lacks is reserved
on top.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from refed_dspy.clients.calls import CallInfo
from refed_dspy.providers.prices import Price
from refed_dspy.store.call_log import CallLog


class BudgetExceeded(Exception):
    """An LM call was refused because it could take the run past its call or cost budget."""


@dataclass
class Ticket:
    """One request opened on a ledger (`open_call`): its line in the write-ahead log (None: no log), and what was
    reserved for it: `calls` and `cost` (in the engine, only what its prompt needs beyond its task's reservation)."""

    role: str
    cost: float  # the most the request can cost: its bound as a call cut off in flight
    reserved_calls: int = 0
    reserved_cost: float = 0.0
    log_id: int | None = None
    prompt_tokens: int | None = None  # as counted before sending (None: not counted)
    in_flight: bool = False  # reserved as a single call of the boundary's (counted as paid by `close`)
    settled: bool = False  # its request is over and its log line settled


class OpensCalls:
    """What a CallBudget does for the call boundary (see the module docstring). Uses the budget's `call_cost`,
    `reserve`, `release`, `log`, `prompt_ratio`, `max_cost_usd` and lock."""

    def prompt_cost(self, price: Price | None, max_tokens: int, role: str, prompt_tokens: int) -> float:
        """The most one call can cost once its prompt is counted (`prompt_tokens`, as counted here): that prompt, raised
        by the most a provider has counted over ours for `role` (tokenizers differ), written whole to the provider's
        prompt cache where that costs more than reading it (Price.bound), that fills `max_tokens`."""
        if price is None:
            return 0.0
        ratio = self.prompt_ratio.get(role, 1.0)
        return price.bound(int(prompt_tokens * ratio) + 1, max_tokens)

    @property
    def counts_prompts(self) -> bool:
        """A call's prompt is counted before it is sent: a cost budget is kept."""
        return self.max_cost_usd is not None

    def open_call(
        self, role: str, model: str, stage: str, price: Price | None, max_tokens: int, prompt_tokens: int | None
    ) -> Ticket:
        """Reserve one call the call boundary is about to make (BudgetExceeded when it could break the budget) at the
        most it can cost (its counted prompt, when counted, and `max_tokens` of output), and write it to the log."""
        cost = self.call_cost(price, max_tokens, role)
        if prompt_tokens is not None:
            cost = self.prompt_cost(price, max_tokens, role, prompt_tokens)
        self.reserve(1, cost, role, what=_longer(prompt_tokens, cost) if prompt_tokens else None)
        log_id = self.log.sent(role, stage, model, cost) if self.log is not None else None
        return Ticket(role, cost, 1, cost, log_id, prompt_tokens, in_flight=True)

    def settle(self, ticket: Ticket, info: CallInfo, price: Price | None) -> None:
        """The request of `ticket` is over (`info`; recorded apart, by `record`): its line in the log settled."""
        settle_call(self, ticket, info, price)

    def release_call(self, ticket: Ticket) -> None:
        """Give back what `ticket` reserved."""
        self.release(ticket.reserved_calls, ticket.reserved_cost, ticket.role if ticket.in_flight else None)

    def learn_prompt(self, role: str, counted: int, reported: int) -> None:
        """A provider counted `reported` prompt tokens where we counted `counted`: later prompts are raised so."""
        if counted > 0 and reported > counted:
            with self._lock:
                self.prompt_ratio[role] = max(self.prompt_ratio.get(role, 1.0), min(reported / counted, 8.0))


def settle_call(ledger: Any, ticket: Ticket, info: CallInfo, price: Price | None) -> None:
    """What a ledger does when the request of `ticket` is over: its log line settled with what it cost, and the
    provider's count of its prompt learned."""
    if ticket.prompt_tokens is not None and info.prompt_tokens and not info.cache_hit:
        ledger.learn_prompt(ticket.role, ticket.prompt_tokens, info.prompt_tokens)
    if ledger.log is None or ticket.log_id is None:
        return
    cost = info.cost_usd
    if cost is None and price is not None and not info.tokens_unknown:
        cost = info.cost_at(price)
    ledger.log.settled(ticket.log_id, info, cost)


class TaskLedger:
    """The engine's ledger as the calls of one of its tasks meet it at the call boundary. The task reserved its worst
    case before it started (its most calls, each at what a call is reserved at before its prompt is known): each of
    its calls takes what it can cost (its counted prompt filling max_tokens) from that, and what the task's reservation
    lacks is reserved beyond it (BudgetExceeded when that could break the budget), kept until the task ends, when its
    calls are recorded. Each request is written to the run's log before it is sent."""

    def __init__(
        self,
        budget: Any,
        price: Price | None,
        max_tokens: int,
        role: str,
        log: CallLog | None,
        reserved: float,
    ):
        self.budget, self.price, self.max_tokens, self.role = budget, price, max_tokens, role
        self.log = log
        self.left = reserved  # what the task's own reservation still covers
        self.extra = 0.0  # reserved beyond it, given back with it when the task ends
        self._lock = threading.Lock()

    @property
    def counts_prompts(self) -> bool:
        return self.budget.counts_prompts and self.price is not None

    def open_call(
        self, role: str, model: str, stage: str, price: Price | None, max_tokens: int, prompt_tokens: int | None
    ) -> Ticket:
        per_call = self.budget.call_cost(self.price, self.max_tokens, self.role)
        need = per_call
        if prompt_tokens is not None:
            need = max(
                need, self.budget.prompt_cost(price or self.price, max_tokens or self.max_tokens, role, prompt_tokens)
            )
        with self._lock:
            taken = min(self.left, need)
            self.left -= taken
        extra = need - taken
        if extra > 1e-12:
            try:
                self.budget.reserve(0, extra, what=_longer(prompt_tokens, need))
            except BudgetExceeded:
                with self._lock:
                    self.left += taken
                raise
            with self._lock:
                self.extra += extra
        log_id = self.log.sent(role, stage, model, need) if self.log is not None else None
        return Ticket(role, need, 0, 0.0, log_id, prompt_tokens)

    def settle(self, ticket: Ticket, info: CallInfo, price: Price | None) -> None:
        settle_call(self, ticket, info, price or self.price)  # type: ignore[arg-type]

    def learn_prompt(self, role: str, counted: int, reported: int) -> None:
        self.budget.learn_prompt(role, counted, reported)

    def release_call(self, ticket: Ticket) -> None:
        """Nothing until the task ends: its calls are recorded then, and its reservation covers them until then."""


def _longer(prompt_tokens: int | None, need: float) -> str:
    """How a refusal names a call reserved at its counted prompt."""
    return f"the next call, a prompt of about {prompt_tokens or 0:,} tokens, may cost up to ${need:.4f}"
