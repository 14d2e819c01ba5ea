"""How a request at the call boundary (refed_dspy.clients.boundary) meets the ledger it is counted on: which ledger
(the LM's own budget, else the engine's work that makes it), its prompt counted under a cost budget, the request opened
on it (refed_dspy.ledger.tickets), settled once when it is over, and given back. The boundary keeps what is opened in
its context; these act on it. A request the budget holds back (MustWait) waits for one in flight to be given back
(`an_end`), never polling: each `release` wakes every request that waits, in any thread or event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from refed_dspy.clients.calls import CallInfo, _work_ledger
from refed_dspy.clients.prompt_cache import count_prompt
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
    """Give back what the request opened as `opened` ([ledger, ticket]; None: nothing opened) reserved; the requests
    held back meanwhile look again."""
    if opened is not None:
        opened[0].release_call(opened[1])
        _ends.note()


# the longest a request held back waits before it looks again, should room be made elsewhere than by a request's end
HELD_S = 1.0


class _Ends:
    """The requests given back so far (`count`), and the requests waiting for the next: threads on a condition,
    coroutines on a future of their own loop."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def note(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits there any more
                loop.call_soon_threadsafe(_set, future)

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.count != seen, timeout)

    async def wait_async(self, seen: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            if self.count != seen:
                return
            self._futures.append((loop, future))
        try:
            with contextlib.suppress(asyncio.TimeoutError):  # not the builtin TimeoutError before Python 3.11
                await asyncio.wait_for(future, timeout)
        finally:
            with self._cond, contextlib.suppress(ValueError):
                self._futures.remove((loop, future))


def _set(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


_ends = _Ends()


def ends_seen() -> int:
    """How many requests have been given back: what a request about to be held back passes to `an_end`."""
    return _ends.count


def an_end(seen: int, timeout: float = HELD_S) -> None:
    """Block until a request is given back after `seen` (`ends_seen()` before it asked), or `timeout` seconds."""
    _ends.wait(seen, timeout)


async def an_end_async(seen: int, timeout: float = HELD_S) -> None:
    """`an_end`, awaited."""
    await _ends.wait_async(seen, timeout)


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
