"""The one ledger of a run's LM calls against its call and cost budget: the engine's and optimize's alike.

Work is reserved before it starts: the engine reserves a piece of work's most calls (repairs included) when it
starts it, and the call boundary (refed_dspy.clients.boundary) reserves one call when an LM attached to the ledger is
called from anywhere else, an optimizer's threads included. A reservation that could take the total past `max_calls`
or `max_cost_usd` is refused. Before its prompt is known, a call's cost is estimated at the dearest call seen so far,
or before any, at a prompt of `prior_prompt_tokens(role)` that fills `max_tokens`: the first call's safe reservation
(`first_call` says what it was; the engine's first piece of work reserves that one call, its later calls being
reserved as they are made). Once its prompt is counted (under a cost budget), a call is reserved at its expected cost,
and starts only when what is paid, the worst case of every call in flight and its own expected cost fit in the budget,
so that the budget is never overshot by more than one call (refed_dspy.ledger.tickets,
refed_dspy.ledger.tickets). What finished is
recorded from its CallInfo (refed_dspy.ledger.usage.usage_of, the same arithmetic as every summary), in total and
by role; a cache hit costs nothing and counts as no call. A call cut off in flight (by a stop, or given up at the
client's timeout) was perhaps billed, its tokens unknown: it is kept against the cost budget at what one call of its
role is reserved at (`interrupted_cost_usd`), so that many such calls cannot take the total past the budget. A call
whose LM reported no token usage is counted, and when a cost budget is set it stops the run: its cost is unknown, so
the budget could not be kept.
Thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refed_dspy.clients.calls import CallInfo
from refed_dspy.clients.prompt_cache import Weighing
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.ledger.tickets import BudgetExceeded, ExpectedOutput, MustWait, OpensCalls, OutputStats, Ticket
from refed_dspy.ledger.usage import Totals, usage_of
from refed_dspy.providers.prices import Price

# Before any call has been seen, a call is assumed this long (prompt tokens) and to fill max_tokens: a budget
# reserves that. The teacher's prompts carry references and demos; the judge's a sample and a rubric.
PRIOR_PROMPT_TOKENS = {"teacher": 2000, "judge": 1500}

log = logging.getLogger("refed_dspy")
_NO_PRICE = Price(0.0, 0.0, 0.0)  # calls cut off in flight: of unknown tokens, their cost only a bound


def prior_prompt_tokens(role: str) -> int:
    """The prompt length a budget assumes for a call of `role` before it has seen one."""
    return PRIOR_PROMPT_TOKENS.get(role, PRIOR_PROMPT_TOKENS["teacher"])


@dataclass(frozen=True)
class Limit:
    """Where one of a ledger's limits comes from, for its messages: the config field a user raises (`field`), and,
    when the limit is what a larger budget leaves, how (`note`, read after the field: "= 400 leaves this cell 63 ...")."""

    field: str
    note: str = ""


class CallBudget(OpensCalls):
    """Reserves and records LM calls against a call and cost budget; totals in all and by role.

    `totals`: what the run paid before (a resumed run's records); the ledger adds to it. A cost budget holds each call's
    worst case while it is in flight (`hold`, `drop`): a call starts only when what is paid, the worst case of every
    call in flight and its own expected cost fit in the budget (`MustWait` while calls in flight keep it from
    starting), and what a call that is over paid is held as paid until its usage is recorded (`unpend`). It stops
    spending on a signal (`close`) or before a summary is written (`wait_idle`): every call the call boundary still has
    in flight is then counted as paid, cut off (it reached the provider; its tokens are unknown), at the most it can
    cost.
    """

    def __init__(
        self,
        max_calls: int | None = None,
        max_cost_usd: float | None = None,
        totals: Totals | None = None,
        calls_from: Limit | None = None,
        cost_from: Limit | None = None,
    ):
        self.max_calls = max_calls
        self.max_cost_usd = max_cost_usd
        self.limits = {"calls": calls_from, "cost": cost_from}  # where each limit comes from (None: unnamed)
        self.tripped_by: str | None = None  # "calls" or "cost": the limit that refused first
        self.totals = totals or Totals()
        self.by_role: dict[str, Totals] = {}
        self.reserved_calls = 0
        self.reserved_cost = 0.0
        self.max_call_cost = 0.0
        # role -> what one call was last reserved at (the bound of a call of that role cut off in flight)
        self.call_cost_of: dict[str, float] = {}
        self.in_flight_cost: Counter = Counter()  # the cost reserved for the calls in `in_flight`, by role
        self.in_flight_worst: Counter = Counter()  # the most those calls can cost (their bound when cut off), by role
        self.refused = 0
        self.tripped: str | None = None  # why the budget refused its first reservation
        self.blind: str | None = None  # a cost budget met a call of unknown cost: nothing more may be spent
        self.closed: str | None = None  # stopped (a signal): nothing more may be spent, nothing more is recorded
        self.in_flight: Counter = Counter()  # single calls reserved by the call boundary and not yet over, by role
        self._cut: Counter = Counter()  # of those, counted as cut off by wait_idle while still running, by role
        self.log: CallLog | None = None  # the write-ahead log each request is written to before it is sent
        # (calls, cost, bound) paid or billable that no record holds, charged on top (launch/batch/store.BatchLedger)
        self.apart: Callable[[], tuple[int, float, float]] = _nothing_apart
        self.weighings: dict[str, Weighing] = {}  # role -> how its prompts are weighed: what providers counted of them
        self.outputs = ExpectedOutput()  # what the calls of each role (and stage) wrote: what a call is expected to
        self.call_costs: dict[str, OutputStats] = {}  # role -> what its answered calls cost (USD)
        self.refused_at: dict[str, float] = {}  # role -> the dearest call a worker refused for its piece's hold
        self.worst_in_flight = 0.0  # the most the calls opened at the call boundary and not yet over can cost
        self.open_calls = 0  # those calls
        self.paid_pending = 0.0  # what calls that are over paid, until their usage is recorded (at their task's end)
        self.first_call: str | None = None  # under a cost budget: what the first call was reserved at, and why
        self._lock = threading.Lock()
        self._watchers: list[Callable[[], None]] = []

    def __deepcopy__(self, memo: dict) -> CallBudget:
        return self  # optimizers deep-copy programs and LMs; the ledger stays one

    def __getstate__(self) -> dict[str, Any]:
        # pickled (with an LM): a ledger of its own, watched by no one, writing no log
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_watchers", "log", "apart")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.log = None
        self.apart = _nothing_apart
        self._lock = threading.Lock()
        self._watchers = []

    def watch(self, fn: Callable[[], None]) -> None:
        """Call `fn()` after every record (outside the ledger's lock, on the recording thread; what it raises is
        logged, never passed to the call)."""
        self._watchers.append(fn)

    def unwatch(self, fn: Callable[[], None]) -> None:
        self._watchers.remove(fn)

    @property
    def total_calls(self) -> int:  # recorded, and charged apart
        return self.totals.calls + self.apart()[0]

    @property
    def total_cost(self) -> float:  # of the calls answered, recorded and charged apart
        return self.totals.cost + self.apart()[1]

    @property
    def cost_bound(self) -> float:
        """The most the calls of unknown tokens (cut off, in flight at a kill, in an open batch) add to total_cost."""
        return self.totals.cost_bound + self.apart()[2]

    def call_cost(self, price: Price | None, max_tokens: int, role: str) -> float:
        """The cost one call of `role` is reserved at before its prompt is known (a piece of work's share per call):
        what its role's calls cost, with a learned margin (OutputStats.task_share); before any, the dearest call seen
        of another role, else a prompt of `prior_prompt_tokens(role)` (written whole to the provider's prompt cache
        where that costs more: Price.bound) that fills `max_tokens` (the first call's safe reservation, said in
        `first_call`); 0 for an LM without a price. Once its prompt is counted, each call is
        reserved at its own expected cost (refed_dspy.ledger.tickets)."""
        if price is None:
            return 0.0
        learned = self.call_costs.get(role)
        cost = learned.task_share() if learned is not None else self.max_call_cost
        if not cost:
            prior = prior_prompt_tokens(role)
            cost = price.bound(prior, max_tokens)
            if self.max_cost_usd is not None and self.first_call is None:
                self.first_call = (
                    f"${cost:.4f} ({role}: a prompt of {prior:,} tokens writing all of max_tokens, {max_tokens:,}), "
                    "before any call showed what one costs"
                )
        self.call_cost_of[role] = max(cost, learned.most if learned is not None else 0.0)  # a cut-off call's bound
        return cost

    def worst_call_cost(self, price: Price | None, max_tokens: int, role: str) -> float:
        """The most one call of `role` is held at where no boundary here opens it (a piece of work on a Ray worker or in
        a batch): a prompt of `prior_prompt_tokens(role)` writing all of `max_tokens` (Price.bound), or the dearest call
        of the role seen or refused for its hold (`held_short`), whichever is more; 0 for an LM without a price."""
        if price is None:
            return 0.0
        learned = self.call_costs.get(role)
        seen = max(learned.most if learned is not None else 0.0, self.refused_at.get(role, 0.0))
        return max(price.bound(prior_prompt_tokens(role), max_tokens), seen)

    def owe(self, cost: float) -> None:
        """Reserve `cost` whatever the room: what a request already sent may be billed (given back by `release`)."""
        with self._lock:
            self.reserved_cost += cost

    def held_short(self, role: str, bound: float) -> None:
        """A worker refused a call of `role` that could cost `bound`, more than its piece was held at (HeldShort):
        pieces of `role` are held at that a call from now on (`worst_call_cost`)."""
        with self._lock:
            self.refused_at[role] = max(self.refused_at.get(role, 0.0), bound)

    def seen(self, role: str) -> bool:
        """A call of `role` has answered: what its calls write is known."""
        with self._lock:
            return self.outputs.seen(role)

    @property
    def spent(self) -> float:
        """What the budget counts as spent: the cost of the calls answered, and the most the calls cut off can cost."""
        return self.total_cost + self.cost_bound

    def field_of(self, kind: str | None = None) -> str | None:
        """The config field that sets the limit of `kind` (default: the one that refused first), where named."""
        limit = self.limits.get(kind or self.tripped_by or "")
        return limit.field if limit is not None else None

    def try_reserve(
        self,
        calls: int,
        cost: float,
        role: str | None = None,
        final: bool = True,
        what: str | None = None,
        worst: float = 0.0,
    ) -> bool:
        """Reserve `calls` calls costing `cost` in all; False (nothing reserved) when that could break the budget.
        `role`: a single call the call boundary is about to make (counted as paid if the run stops now), expected to
        cost `cost` and at most `worst` (see `_room`; MustWait while the calls in flight keep it from starting).
        `final=False`: a refusal that only makes the caller wait (work under way may give back what it reserved) is
        not counted, and does not become the reason the budget stopped the run (`tripped`)."""
        with self._lock:
            kind, why = refusal(self, calls, cost, what) if role is None else self._room(calls, cost, what)
            if why is not None:
                if final:
                    self._refused(kind, why)
                return False
            self.reserved_calls += calls
            self.reserved_cost += cost
            if role is not None:
                self.in_flight[role] += calls
                self.in_flight_cost[role] += cost
                self.in_flight_worst[role] += max(cost, worst)
                self._hold(max(cost, worst))
            return True

    def _refused(self, kind: str | None, why: str) -> None:
        """Under the lock: a final refusal, and the reason the budget stopped the run when it is the first."""
        self.refused += 1
        if self.closed is None:
            self.tripped = self.tripped or why
            self.tripped_by = self.tripped_by or kind

    def refuse(self, why: str) -> None:
        """Refuse a call for a reason of its own (an LM with no price under a cost budget): BudgetExceeded, and
        `tripped` says why when nothing was refused before."""
        with self._lock:
            self.refused += 1
            self.tripped = self.tripped or why
        raise BudgetExceeded(why)

    def reserve(
        self, calls: int, cost: float, role: str | None = None, what: str | None = None, worst: float = 0.0
    ) -> None:
        """As try_reserve, raising BudgetExceeded (with the reason) instead of returning False. `what`: what the
        reservation is for, with its cost, as its refusal says it ("the next call may cost up to $X" by default)."""
        if not self.try_reserve(calls, cost, role, what=what, worst=worst):
            raise BudgetExceeded(self.closed or self.tripped)

    def release(self, calls: int, cost: float, role: str | None = None, worst: float = 0.0) -> None:
        """Give back a reservation once its work has finished (what it spent is recorded apart); `role`: a single call
        of the call boundary's, `worst` the most it could cost, `cost` its reservation and what it cost beyond it."""
        with self._lock:
            if self.closed is not None:  # settled by close(): counted already
                return
            if role is not None and self._cut[role] > 0:  # counted as cut off by wait_idle: given back then
                self._cut[role] -= 1
                return
            self.reserved_calls -= calls
            self.reserved_cost -= cost
            if role is not None:
                self.in_flight[role] -= calls
                self.in_flight_cost[role] -= cost
                self.in_flight_worst[role] -= worst

    def record(self, calls: list[CallInfo], price: Price | None, role: str) -> dict[str, Any]:
        """Add finished calls (of one LM, at `price`, in `role`) to the totals; returns their usage. A call cut off in
        flight is given its bound (`cost_bound_usd`) here when it has none: what one call of `role` is reserved at."""
        if price is not None:
            for call in calls:
                if call.interrupted and call.cost_bound_usd is None:
                    call.cost_bound_usd = self.call_cost_of.get(role) or self.max_call_cost
        usage = usage_of(calls, price)
        with self._lock:
            if self.closed is not None:  # a reply that arrived after the stop: close() counted its call
                return usage
            self.totals.add(usage)
            self.by_role.setdefault(role, Totals()).add(usage)
            if price is not None:
                for call in calls:
                    if not call.cache_hit and call.error is None and not call.interrupted:
                        served = price.at(call.service_tier)  # the tier that served it
                        cost = call.cost_at(served)
                        self.max_call_cost = max(self.max_call_cost, cost)
                        self.call_costs.setdefault(role, OutputStats()).add(cost)
            if self.max_cost_usd is not None and usage.get("unmetered_calls"):
                model = next((c.model for c in calls if c.tokens_unknown), "?")
                self.blind = (
                    f"the LM '{model}' ({role}) reports no token usage, so the cost budget of "
                    f"${self.max_cost_usd:g} cannot be kept"
                )
        self._notify()
        return usage

    def learn_paid(self, role: str, costs: list[float]) -> None:
        """What calls of `role` cost before this invocation (a batch store's answers): work is reserved at that."""
        with self._lock:
            for cost in costs:
                self.max_call_cost = max(self.max_call_cost, cost)
                self.call_costs.setdefault(role, OutputStats()).add(cost)

    def add_paid(self, usage: dict[str, Any] | None, role: str | None = None) -> None:
        """What was paid before this ledger counted (earlier invocations of the command, as its write-ahead log says;
        a run the command made for itself): added to the totals, and to `role` whole, or without a role its calls to
        the roles it names."""
        if not usage:
            return
        with self._lock:
            self.totals.add(usage)
            if role is not None:
                self.by_role.setdefault(role, Totals()).add(usage)
            for named, part in (usage.get("by_role") or {}).items() if role is None else ():
                self.by_role.setdefault(named, Totals()).add(
                    {"calls": int((part or {}).get("calls") or 0), "cost_usd": 0.0}
                )
        self._notify()

    def left(self) -> tuple[int | None, float | None]:
        """(calls, dollars) the limits leave to spend now, as `refusal` counts what was spent (None: no such limit)."""
        with self._lock:
            calls = None if self.max_calls is None else max(0, self.max_calls - self.total_calls)
            cost = None if self.max_cost_usd is None else max(0.0, self.max_cost_usd - self.spent)
        return calls, cost

    def hold(self, extra: float, need: float, worst: float, what: str | None = None) -> None:
        """Open a call of an engine task at the call boundary, expected to cost `need` and at most `worst` (see
        `_room`): `extra` reserved beyond what its task reserved, its worst case held while it is in flight.
        BudgetExceeded when it could break the budget, MustWait while the calls in flight keep it from starting."""
        with self._lock:
            kind, why = self._room(0, need, what)
            if why is not None:
                self._refused(kind, why)
                raise BudgetExceeded(self.closed or self.tripped or why)
            self.reserved_cost += max(0.0, extra)
            self._hold(worst)

    def _room(self, calls: int, need: float, what: str | None) -> tuple[str | None, str | None]:
        """Under the lock, for `calls` (1, or 0: counted with its task) call the call boundary is about to make,
        expected to cost `need`: (None, None) when it may start; else (the limit that refuses, why), or MustWait when
        calls in flight keep it from starting (one of them ending makes room: what it wrote is learned, its worst case
        let go). Under a cost budget it may start when what is paid, the worst case of every call in flight and its own
        expected cost fit in the budget: whatever the calls in flight write, the budget is then overshot by at most this
        one call's worst case beyond its expected cost. The work under way's reservations are not in it (they are
        future calls, each checked so when it starts): they keep new work from starting, not a call of work started."""
        if self.closed is not None or self.blind is not None:
            return None, self.closed or self.blind
        kind, why = refusal(self, calls, 0.0, what) if calls else (None, None)
        if why is None and self.max_cost_usd is not None:
            paid = self.spent + self.paid_pending
            if paid + self.worst_in_flight + need > self.max_cost_usd + 1e-12:
                kind, why = "cost", exposure_refusal(self, paid, need, what)
        if why is not None and self.open_calls > 0:
            raise MustWait(why)
        return kind, why

    def _hold(self, worst: float) -> None:
        """Under the lock: one more call in flight, at most `worst`."""
        self.worst_in_flight += max(0.0, worst)
        self.open_calls += 1

    def drop(self, ticket: Ticket, spent: float) -> float:
        """The call of `ticket` is over, having cost `spent` (its worst case when cut off or of unknown tokens): its
        worst case let go, what it paid held as paid until its usage is recorded (`unpend`), and what it cost beyond its
        reservation reserved, returned for its ledger to give back with it. Once per ticket (0 after)."""
        with self._lock:
            if not ticket.held:
                return 0.0
            ticket.held = False
            self.worst_in_flight = max(0.0, self.worst_in_flight - ticket.cost)
            self.open_calls = max(0, self.open_calls - 1)
            if self.closed is not None:
                return 0.0
            ticket.paid = spent
            self.paid_pending += spent
            beyond = max(0.0, spent - ticket.need)
            self.reserved_cost += beyond
            return beyond

    def unpend(self, paid: float) -> None:
        """What calls paid (`drop`) is recorded in the totals now: no longer held as pending."""
        with self._lock:
            self.paid_pending = max(0.0, self.paid_pending - paid)

    def close(self, why: str) -> None:
        """Stop spending (a signal stopped the run): every call the boundary has in flight is counted as paid (it
        reached the provider; its tokens are unknown), nothing more is reserved, and a reply that arrives later is
        not counted again. Idempotent."""
        with self._lock:
            if self.closed is not None:
                return
            self.closed = why
            self._cut_in_flight()
            self.reserved_calls, self.reserved_cost = 0, 0.0
            self.worst_in_flight, self.open_calls, self.paid_pending = 0.0, 0, 0.0
        self._notify()

    def _cut_in_flight(self) -> int:
        """Count every call the boundary has in flight as paid, cut off (under the lock); how many."""
        settled = {role: n for role, n in self.in_flight.items() if n > 0}
        for role, n in settled.items():  # each at the most it can cost: its worst case, not its reservation
            bound = max(0.0, self.in_flight_worst[role] or self.in_flight_cost[role]) / n
            cut = [CallInfo(stage="stopped", model="?", interrupted=True, cost_bound_usd=bound) for _ in range(n)]
            usage = usage_of(cut, _NO_PRICE)
            self.totals.add(usage)
            self.by_role.setdefault(role, Totals()).add(usage)
            self.reserved_calls -= n
            self.reserved_cost -= self.in_flight_cost[role]
            self._cut[role] += n  # their reservations are given back here, not when they end
        self.in_flight.clear()
        self.in_flight_cost.clear()
        self.in_flight_worst.clear()
        return sum(settled.values())

    def wait_idle(self, timeout_s: float) -> int:
        """Before a summary is written: wait up to `timeout_s` for the calls the boundary has in flight to end (threads
        an executor left running); those still in flight then are counted as paid, cut off (a reply that comes later
        is counted too: the ledger errs on the side of paid). Returns how many were cut off."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not any(n > 0 for n in self.in_flight.values()):
                    return 0
            time.sleep(0.05)
        with self._lock:
            cut = self._cut_in_flight()
        self._notify()
        return cut

    def _notify(self) -> None:
        for fn in list(self._watchers):
            try:
                fn()
            except Exception:  # noqa: BLE001 - the call is paid and recorded: a watcher's failure must not undo that
                log.warning("warning: a budget watcher failed after a recorded call", exc_info=True)

    def as_dict(self) -> dict[str, Any]:
        """Calls, tokens and cost in total and by role (each as a run summary's usage), and refused reservations."""
        with self._lock:
            return {
                **self.totals.as_dict(),
                "refused": self.refused,
                "by_role": {role: _without_stages(t.as_dict()) for role, t in sorted(self.by_role.items())},
            }


def _nothing_apart() -> tuple[int, float, float]:
    return 0, 0.0, 0.0


def _without_stages(usage: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in usage.items() if k != "by_stage"}


def refusal(ledger: Any, calls: int, cost: float, what: str | None = None) -> tuple[str | None, str | None]:
    """(the limit that refuses: "calls", "cost" or None for a closed or blind ledger, the message) for reserving
    `calls` calls at `cost` more on `ledger` (a refed_dspy.ledger.budget.CallBudget, read under its lock); (None, None)
    when nothing refuses. `what`: how the message says what is reserved and its cost (a call at its counted prompt)."""
    if ledger.closed is not None:
        return None, ledger.closed
    if ledger.blind is not None:
        return None, ledger.blind
    made, reserved = ledger.total_calls, ledger.reserved_calls
    if ledger.max_calls is not None and made + reserved + calls > ledger.max_calls:
        left = max(0, ledger.max_calls - made - reserved)
        text = (
            f"the LM-call budget of {ledger.max_calls} is reached ({made} calls made{_under_way(ledger)}, {left} left"
            + ("" if calls == 1 else f"; the next piece of work (repairs included) may make {calls} calls")
        )
        return "calls", _closed(ledger, "calls", text)
    if ledger.max_cost_usd is not None and ledger.spent + ledger.reserved_cost + cost > ledger.max_cost_usd:
        left = max(0.0, ledger.max_cost_usd - ledger.spent - ledger.reserved_cost)
        bound = ledger.cost_bound
        cut = f" and up to ${bound:.4f} in calls cut off or in flight" if bound else ""
        next_one = what or (
            "the next "
            + ("call" if calls == 1 else "piece of work (repairs included)")
            + f" may cost up to ${cost:.4f}"
        )
        text = (
            f"the cost budget of ${ledger.max_cost_usd:g} is reached (${ledger.total_cost:.4f} spent{cut}"
            f"{_under_way(ledger)}, ${left:.4f} left; {next_one}"
        )
        return "cost", _closed(ledger, "cost", text)
    return None, None


def exposure_refusal(ledger: Any, paid: float, need: float, what: str | None = None) -> str:
    """Why a call of work under way may not start (read under the ledger's lock): what is paid (`paid`: the calls
    recorded, those cut off at their bound and those over whose work is under way), the most the calls in flight can
    still cost, and what this one is expected to cost (`need`) would not fit in the cost budget."""
    bound, pending, flying = ledger.cost_bound, ledger.paid_pending, ledger.worst_in_flight
    left = max(0.0, ledger.max_cost_usd - paid - flying)
    cut = f" and up to ${bound:.4f} in calls cut off or in flight" if bound else ""
    under_way = f", ${pending:.4f} by calls of work under way" if pending else ""
    in_flight = f", up to ${flying:.4f} by {ledger.open_calls} calls in flight" if ledger.open_calls else ""
    next_one = what or f"the next call may cost ${need:.4f}"
    text = (
        f"the cost budget of ${ledger.max_cost_usd:g} is reached (${ledger.total_cost:.4f} spent{cut}{under_way}"
        f"{in_flight}, ${left:.4f} left; {next_one}"
    )
    return _closed(ledger, "cost", text)


def _closed(ledger: Any, kind: str, text: str) -> str:
    """`text` closed with where the limit of `kind` comes from (the config field, and what a larger budget left)."""
    limit = ledger.limits[kind]
    if limit is None:
        return text + ")"
    return f"{text}; {limit.field} {limit.note})" if limit.note else f"{text}; set by {limit.field})"


def _under_way(ledger: Any) -> str:
    if not ledger.reserved_calls:
        return ""
    return (
        f", {ledger.reserved_calls} more reserved"
        + (f" at up to ${ledger.reserved_cost:.4f}" if ledger.reserved_cost else "")
        + " by work under way"
    )
