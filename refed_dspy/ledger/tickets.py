"""How a single LM call is opened on a ledger at the call boundary: reserved at what it is expected to cost (under a
cost budget, its prompt counted before it is sent), written to the run's write-ahead log at the most it can cost,
settled with what it paid, and given back.

Under a cost budget a call is reserved at its counted prompt and the output its role's calls are expected to write
(`ExpectedOutput`, below: learned from the calls already made, with a learned margin); before its role has
answered anything, at its worst case (its prompt filling `max_tokens`). Its worst case is held while it is in flight: a
call starts only when what is paid, the worst case of every call in flight and its own expected cost fit in the budget
(`MustWait` otherwise, while others are in flight), so that whatever they write the budget is overshot by at most one
call. A call that cost more than it was reserved at has the rest reserved when it is settled, until its cost is
recorded.

Two ledgers open calls: a CallBudget itself (an LM with a budget of its own: optimize, experiments, a user's), one call
reserved each (`OpensCalls`, which CallBudget takes in); and an engine task's `TaskLedger`, whose task reserved its
calls already: each of its calls takes what it is expected to cost from that, and what the task lacks is reserved
on top.

How many output tokens a call is expected to write, learned from the calls already made: what a cost budget
reserves a call at, instead of its `max_tokens` worst case (a reasoning model's 16,000 tokens would leave a small
budget unable to start anything).

Per role, and per stage within a role (a feedback call and a response differ), the completion tokens of answered calls
are kept as a running mean and spread (Welford). A call is reserved at the mean plus a margin learned from the spread:
three standard deviations, and never less than half the mean (a few calls say little of the spread), capped at the
call's `max_tokens`. Before a role has answered anything there is nothing to expect: the caller reserves the worst
case. Pure arithmetic, no I/O; the ledger holds it under its lock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from refed_dspy.clients.calls import BudgetExceeded, CallInfo, MustWait
from refed_dspy.clients.prompt_cache import Weighing
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.providers.prices import Price

__all__ = ["BudgetExceeded", "MustWait", "OpensCalls", "TaskLedger", "Ticket", "settle_call"]


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
    need: float = 0.0  # what it is expected to cost: what the ledger holds for it (its task's or its own)
    held: bool = False  # its worst case (`cost`) is held by the budget: it is in flight
    paid: float = 0.0  # once over: what it paid (its worst case when cut off or of unknown tokens)


class OpensCalls:
    """What a CallBudget does for the call boundary (see the module docstring). Uses the budget's `call_cost`,
    `reserve`, `release`, `drop`, `unpend`, `log`, `weighings`, `refused_at`, `outputs`,
    `max_cost_usd` and lock."""

    def prompt_cost(
        self, price: Price | None, max_tokens: int, role: str, prompt_tokens: int, most: int | None = None
    ) -> float:
        """The most one call can cost once its prompt is counted (`prompt_tokens`, as counted here; `most`, its UTF-8
        bytes where its model does not count as we do): that prompt, weighed for `role` (`weighed_prompt`: tokenizers
        differ), written whole to the provider's prompt cache where that costs more than reading it (Price.bound),
        that fills `max_tokens`."""
        if price is None:
            return 0.0
        return price.bound(self.weighed_prompt(role, prompt_tokens, most), max_tokens)

    def expected_cost(
        self, price: Price | None, max_tokens: int, role: str, stage: str, prompt_tokens: int, most: int | None = None
    ) -> float:
        """What one call is reserved at once its prompt is counted: that prompt (weighed as in `prompt_cost`) and the
        output its role's calls at `stage` are expected to write, with a learned margin (at most `max_tokens`), the
        prompt priced as in `prompt_cost` (written whole where that costs more); before a call of `role` has answered,
        its worst case (`prompt_cost`)."""
        if price is None:
            return 0.0
        with self._lock:
            out = self.outputs.reserve(role, stage, max_tokens)
        if out is None:
            return self.prompt_cost(price, max_tokens, role, prompt_tokens, most)
        return price.bound(self.weighed_prompt(role, prompt_tokens, most), out)

    def weighing(self, role: str) -> Weighing:
        """How a prompt of `role` is weighed now: by what providers have said of their counts of its prompts."""
        return self.weighings.get(role, Weighing())

    def weighed_prompt(self, role: str, prompt_tokens: int, most: int | None) -> int:
        """A prompt of `role` counted here at `prompt_tokens` (`most`: its UTF-8 bytes; None: its model counts as we
        do), weighed as `weighing` says."""
        return self.weighing(role).tokens(prompt_tokens, most)

    @property
    def counts_prompts(self) -> bool:
        """A call's prompt is counted before it is sent: a cost budget is kept, or a write-ahead log holds each call at
        the most it can cost (its prompt and `max_tokens` of output: what a call cut off by a kill is charged at)."""
        return self.max_cost_usd is not None or self.log is not None

    def open_call(
        self,
        role: str,
        model: str,
        stage: str,
        price: Price | None,
        max_tokens: int,
        prompt_tokens: int | None,
        tier: str | None = None,
        most: int | None = None,
    ) -> Ticket:
        """Reserve one call the call boundary is about to make (BudgetExceeded when it could break the budget, MustWait
        while the calls in flight could) at what it is expected to cost (its counted prompt, when counted, weighed with
        `most`, its UTF-8 bytes, as `weighed_prompt` says; and its expected output), and write it to the log at the
        most it can cost (`max_tokens` of output). `tier`: the service tier the request asks for; on a dearer one than
        `price`'s (a flex request sent on the default tier) it is reserved at that tier's price."""
        on = unasked_tier(price, tier)
        worst, need = call_bounds(self, (price, max_tokens, role), on, stage, prompt_tokens, most=most)
        what = _longer(self, role, (prompt_tokens, most), need, on if on != tier else None) if prompt_tokens else None
        self.reserve(1, need, role, what=what, worst=worst)
        log_id = self.log.sent(role, stage, model, worst) if self.log is not None else None
        return Ticket(role, worst, 1, need, log_id, prompt_tokens, in_flight=True, need=need, held=True)

    def settle(self, ticket: Ticket, info: CallInfo, price: Price | None) -> None:
        """The request of `ticket` is over (`info`; recorded apart, by `record`): its line in the log settled, what it
        cost beyond its reservation reserved with it until it is given back."""
        extra = settle_call(self, ticket, info, price)
        if extra > 0:
            ticket.reserved_cost += extra

    def release_call(self, ticket: Ticket) -> None:
        """Give back what `ticket` reserved (its worst case let go, were it not settled); what it paid is recorded."""
        self.drop(ticket, 0.0)
        self.unpend(ticket.paid)
        role = ticket.role if ticket.in_flight else None
        self.release(ticket.reserved_calls, ticket.reserved_cost, role, worst=ticket.cost if role else 0.0)

    def learn_prompt(self, role: str, counted: int, reported: int) -> None:
        """A provider counted `reported` prompt tokens where we counted `counted`: later prompts are raised so."""
        with self._lock:
            self.weighings[role] = self.weighing(role).heard_of(counted, reported)

    def heard_prompt(self, role: str, counted: int, reported: int) -> None:
        """A batch request's answer: its provider counted `reported` prompt tokens where its body counted `counted`
        here (`learn_prompt`), and the holds refused before are let go (`refused_at`: a first wave's were weighed at
        their bytes; a request still too dear for its piece's hold refuses it again, weighed by this count)."""
        if reported > 0:
            with self._lock:
                self.refused_at.pop(role, None)
        self.learn_prompt(role, counted, reported)

    def learn_output(self, role: str, stage: str, completion_tokens: int) -> None:
        """An answered call of `role` at `stage` wrote `completion_tokens`: later calls are expected so."""
        with self._lock:
            self.outputs.learn(role, stage, completion_tokens)


def settle_call(ledger: Any, ticket: Ticket, info: CallInfo, price: Price | None) -> float:
    """What a ledger does when the request of `ticket` is over: its log line settled with what it cost, the provider's
    count of its prompt and the output it wrote learned, and its worst case let go. Returns what it cost beyond what was
    reserved for it (reserved now by the budget, which its ledger gives back with it): a call cut off, or of unknown
    tokens, at its worst case."""
    answered = not (info.cache_hit or info.error or info.interrupted or info.tokens_unknown)
    if ticket.prompt_tokens is not None and info.prompt_tokens and answered:
        ledger.learn_prompt(ticket.role, ticket.prompt_tokens, info.prompt_tokens)
    if answered:
        ledger.learn_output(ticket.role, info.stage, info.completion_tokens)
    cost = info.cost_usd
    if cost is None and price is not None and not info.tokens_unknown:  # at the tier that served it
        cost = info.cost_at(price.at(info.service_tier))
    if ledger.log is not None and ticket.log_id is not None:
        ledger.log.settled(ticket.log_id, info, cost)
    if info.cache_hit or info.error is not None:
        spent = 0.0
    elif info.interrupted or info.tokens_unknown or cost is None:
        spent = ticket.cost
    else:
        spent = cost
    return ledger.drop(ticket, spent)


class TaskLedger:
    """The engine's ledger as the calls of one of its tasks meet it at the call boundary. The task reserved its calls
    before it started (its most calls, each at what a call is reserved at before its prompt is known; before its role
    has answered anything, its first call's worst case): each of its calls takes what it is expected to cost (its
    counted prompt and the output expected of it) from that, and what the task's reservation lacks is reserved beyond
    it (BudgetExceeded when that could break the budget), kept until the task ends, when its calls are recorded. Each
    request is written to the run's log, at the most it can cost, before it is sent."""

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
        self.paid = 0.0  # what its calls that are over paid, held as paid until the task's calls are recorded
        self._lock = threading.Lock()

    @property
    def counts_prompts(self) -> bool:
        """Its calls' prompts are counted: a cost budget is kept, or the run's log holds each call at its worst case."""
        return (self.budget.counts_prompts or self.log is not None) and self.price is not None

    def open_call(
        self,
        role: str,
        model: str,
        stage: str,
        price: Price | None,
        max_tokens: int,
        prompt_tokens: int | None,
        tier: str | None = None,
        most: int | None = None,
    ) -> Ticket:
        called = (price or self.price, max_tokens or self.max_tokens, role)
        before = (self.price, self.max_tokens, self.role)
        on = unasked_tier(called[0], tier)
        worst, need = call_bounds(self.budget, called, on, stage, prompt_tokens, before, most)
        with self._lock:
            taken = min(self.left, need)
            self.left -= taken
        extra = need - taken
        try:
            what = _longer(self.budget, role, (prompt_tokens, most), need, on if on != tier else None)
            self.budget.hold(extra, need, worst, what=what)
        except (BudgetExceeded, MustWait):
            with self._lock:
                self.left += taken
            raise
        with self._lock:
            self.extra += extra
        log_id = self.log.sent(role, stage, model, worst) if self.log is not None else None
        return Ticket(role, worst, 0, 0.0, log_id, prompt_tokens, need=need, held=True)

    def settle(self, ticket: Ticket, info: CallInfo, price: Price | None) -> None:
        extra = settle_call(self, ticket, info, price or self.price)  # type: ignore[arg-type]
        with self._lock:
            self.extra += extra
            self.paid += ticket.paid

    def learn_prompt(self, role: str, counted: int, reported: int) -> None:
        self.budget.learn_prompt(role, counted, reported)

    def learn_output(self, role: str, stage: str, completion_tokens: int) -> None:
        self.budget.learn_output(role, stage, completion_tokens)

    def drop(self, ticket: Ticket, spent: float) -> float:
        return self.budget.drop(ticket, spent)

    def release_call(self, ticket: Ticket) -> None:
        """Nothing to give back until the task ends (its calls are recorded then, and its reservation covers them until
        then); the call's worst case, were it not settled, is let go."""
        self.budget.drop(ticket, 0.0)


def call_bounds(
    budget: Any,
    called: tuple[Price | None, int, str],
    tier: str | None,
    stage: str,
    prompt_tokens: int | None,
    before: tuple[Price | None, int, str] | None = None,
    most: int | None = None,
) -> tuple[float, float]:
    """(worst, need) of one call about to be made with `called` (its price, max_tokens and role) on service tier
    `tier`: its prompt uncounted, both are a call's reservation at `before` (the price, max_tokens and role a call is
    reserved at before its prompt is known; by default `called`) raised to a dearer tier; counted, the worst is its
    prompt (weighed with `most`, its UTF-8 bytes: OpensCalls.weighed_prompt) and `max_tokens` of output and the need
    what it is expected to cost (never above the worst)."""
    price, max_tokens, role = called
    at, dearer = at_tier(price, tier)
    worst = need = budget.call_cost(*(before or called)) * dearer
    if prompt_tokens is not None:
        worst = budget.prompt_cost(at, max_tokens, role, prompt_tokens, most)
        need = min(worst, budget.expected_cost(at, max_tokens, role, stage, prompt_tokens, most))
    return worst, need


def unasked_tier(price: Price | None, tier: str | None) -> str | None:
    """The tier a call asking for `tier` is bounded on: that one where it names one; where it names none (or "auto",
    its project's) and `price` is the default tier's, the dearest its provider could serve it on unasked (an OpenAI
    project set to priority serves every such request there; one that says priority may still serve some on the
    default, so no reply lowers it)."""
    if tier not in (None, "auto") or price is None or price.tier != "default":
        return tier
    return price.dearest_tier


def at_tier(price: Price | None, tier: str | None) -> tuple[Price | None, float]:
    """`price` on service tier `tier` (None: as it is), and how many times dearer than `price` that is (at least 1)."""
    if price is None or tier is None:
        return price, 1.0
    at = price.at(tier)
    return at, at.dearer_than(price)


def _longer(budget: Any, role: str, prompt: tuple[int | None, int | None], need: float, unasked: str | None) -> str:
    """How a refusal names a call reserved at its counted prompt (`prompt`: its count and UTF-8 bytes; at what its
    provider may count of it, where that is more: OpensCalls.weighed_prompt), on the tier it was bounded on unasked."""
    counted = prompt[0] or 0
    weighed = budget.weighed_prompt(role, counted, prompt[1])
    said = f"a prompt of about {counted:,} tokens"
    if weighed > counted + 1:
        said += f" as refed counts them, {weighed:,} as its provider may"
    on = (
        f" at the {unasked} tier's price, where its provider may serve it unasked (an LM that names "
        "service_tier='default' is held at the default tier's)"
        if unasked
        else ""
    )
    return f"the next call, {said}, may cost up to ${need:.4f}{on}"


SPREAD_MARGIN = 3.0  # standard deviations above the mean
LEAST_MARGIN = 0.5  # of the mean: the margin while few calls have shown their spread


@dataclass
class OutputStats:
    """Some calls' completion tokens (or costs): their count, mean and sum of squared deviations (Welford), and the
    most."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    most: float = 0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        self.most = max(self.most, value)

    def task_share(self) -> float:
        """What a piece of work's calls are reserved at each before their prompts are known: the mean with the least
        margin, at most the most seen (the work's calls are then reserved one by one at their own expected cost)."""
        return min(self.most, self.mean * (1 + LEAST_MARGIN))

    @property
    def margin(self) -> float:
        """The margin above the mean a call is reserved with."""
        spread = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        return max(SPREAD_MARGIN * spread, LEAST_MARGIN * self.mean)

    def reserve(self, limit: int) -> int:
        """The output tokens a call is reserved at: mean plus margin, at most `limit` (its max_tokens)."""
        return min(limit, math.ceil(self.mean + self.margin)) if limit > 0 else math.ceil(self.mean + self.margin)


class ExpectedOutput:
    """What the calls of each role (and of each stage within it) wrote; see the module docstring."""

    def __init__(self) -> None:
        self.by_role: dict[str, OutputStats] = {}
        self.by_stage: dict[tuple[str, str], OutputStats] = {}

    def learn(self, role: str, stage: str, completion_tokens: int) -> None:
        """An answered call of `role` at `stage` wrote `completion_tokens` (hidden reasoning included)."""
        self.by_role.setdefault(role, OutputStats()).add(completion_tokens)
        self.by_stage.setdefault((role, stage), OutputStats()).add(completion_tokens)

    def seen(self, role: str) -> bool:
        """A call of `role` has answered."""
        return role in self.by_role

    def reserve(self, role: str, stage: str, limit: int) -> int | None:
        """The output tokens a call of `role` at `stage` is reserved at (its stage's calls, else its role's; at most
        `limit`); None before a call of `role` has answered (then only its worst case is safe)."""
        stats = self.by_stage.get((role, stage)) or self.by_role.get(role)
        return None if stats is None else stats.reserve(limit)
