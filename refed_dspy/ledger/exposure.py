"""What a cost budget holds for the calls in flight at the call boundary: each call's worst case while it runs, so that
a call starts only when what is paid, the worst case of every call in flight and its own expected cost fit in the
budget (`MustWait` while calls in flight keep it from starting), and what a call that is over paid, held as paid until
its usage is recorded. Taken in by CallBudget (refed_dspy.ledger.budget)."""

from __future__ import annotations

from refed_dspy.ledger.refusal import exposure_refusal, refusal
from refed_dspy.ledger.tickets import BudgetExceeded, MustWait, Ticket


class HoldsInFlight:
    """The worst case of the calls in flight, held by a CallBudget (see the module docstring). Uses the budget's lock,
    `worst_in_flight`, `open_calls`, `paid_pending`, `reserved_cost`, `spent`, `closed`, `blind`, `tripped`,
    `max_cost_usd` and `_refused`."""

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
