"""How a request at the call boundary (refed_dspy.clients.boundary) meets the ledger it is counted on: which ledger
(the LM's own budget, else the engine's work that makes it), its prompt counted under a cost budget, the request opened
on it (refed_dspy.engine.tickets), settled once when it is over, and given back. The boundary keeps what is opened in
its context; these act on it."""

from __future__ import annotations

from typing import Any

from refed_dspy.clients.calls import CallInfo, _work_ledger
from refed_dspy.clients.prompt_tokens import count_prompt
from refed_dspy.providers.sampling import table_limit


def ledger_of(lm: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[Any, int | None]:
    """The ledger the request of `lm` about to be sent is opened on: the LM's own budget (one call reserved), else the
    ledger of the engine's work that makes it (None: none); and under a cost budget its prompt, counted, so that it
    is reserved at what it will really cost."""
    budget = lm.budget
    ledger = budget if budget is not None else _work_ledger.get()
    if ledger is None:
        return None, None
    if budget is not None and lm.price is None and budget.max_cost_usd is not None:
        budget.refuse(
            f"the {lm.role} LM '{lm.model}' has no price, so the cost budget of ${budget.max_cost_usd:g} cannot "
            f'be kept (price it in the config: [prices."{lm.model}"] input_usd_per_mtok, output_usd_per_mtok)'
        )
    prompt = None
    if ledger.counts_prompts:
        prompt = count_prompt(args[0] if args else kwargs.get("prompt"), kwargs.get("messages"))
    return ledger, prompt


def open_on(lm: Any, ledger: Any, prompt: int | None, stage: str, tier: str | None) -> list:
    """Open the request of `lm` at `stage` on `ledger` (BudgetExceeded when it could break the budget, MustWait while
    the calls in flight could) at the service tier it asks for (`tier`): written to the run's log before it is sent.
    Returns [ledger, ticket], the ledger given back to even if another is attached."""
    ticket = ledger.open_call(lm.role, str(lm.model), stage, lm.price, max_tokens_of(lm), prompt, tier=tier)
    return [ledger, ticket]


def release(opened: list | None) -> None:
    """Give back what the request opened as `opened` ([ledger, ticket]; None: nothing opened) reserved."""
    if opened is not None:
        opened[0].release_call(opened[1])


def settle(opened: list | None, info: CallInfo, price: Any) -> None:
    """The request opened as `opened` is over (`info`): its ticket's bound given to a call cut off, its log line
    settled at `price`. Once per request."""
    if opened is None or opened[1].settled:
        return
    ledger, ticket = opened
    ticket.settled = True
    info.log_id = ticket.log_id
    if info.interrupted and info.cost_bound_usd is None and ticket.cost:
        info.cost_bound_usd = ticket.cost
    ledger.settle(ticket, info, price)


def max_tokens_of(lm: Any) -> int:
    """The LM's output limit (DSPy keeps a reasoning model's as max_completion_tokens); where it sends none, the
    model's own largest output by LiteLLM's table (what a reply may run to); 0 when that is unknown too."""
    kwargs = getattr(lm, "kwargs", None) or {}
    sent = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
    return int(sent) if sent else (table_limit(str(getattr(lm, "model", ""))) or 0)
