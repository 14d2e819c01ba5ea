"""How a CallBudget stops spending: on a signal (`close`), or before a summary is written (`wait_idle`), every call
the call boundary still has in flight is counted as paid, cut off (it reached the provider; its tokens are unknown), at
the most it can cost. Taken in by CallBudget (refed_dspy.ledger.budget)."""

from __future__ import annotations

import time

from refed_dspy.clients.calls import CallInfo
from refed_dspy.ledger.usage import Totals, usage_of
from refed_dspy.providers.prices import Price

_NO_PRICE = Price(0.0, 0.0, 0.0)  # calls cut off in flight: of unknown tokens, their cost only a bound


class StopsSpending:
    """A CallBudget's stop (see the module docstring). Uses the budget's lock, `in_flight`, `in_flight_cost`,
    `in_flight_worst`, `_cut`, `totals`, `by_role`, the reservations, `closed` and `_notify`."""

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
