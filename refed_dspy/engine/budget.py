"""A call and cost guard shared by every LM of an optimization (teacher and judge).

Before each LM call the guard reserves the call (and its estimated cost); a call that would take
the total past `max_calls` or `max_cost_usd` is refused with `BudgetExceeded` instead of being sent.
Completed calls are recorded with their real tokens; cache hits cost nothing and count as no call.
Thread-safe: DSPy optimizers call LMs from worker threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from refed_dspy.clients.pricing import Price

# Before any call has been seen, a call is assumed this long (prompt tokens) and to fill max_tokens: a budget
# reserves that. The teacher's prompts carry references and demos; the judge's a sample and a rubric.
PRIOR_PROMPT_TOKENS = {"teacher": 2000, "judge": 1500}


def prior_prompt_tokens(role: str) -> int:
    """The prompt length a budget assumes for a call of `role` before it has seen one."""
    return PRIOR_PROMPT_TOKENS.get(role, PRIOR_PROMPT_TOKENS["teacher"])


class BudgetExceeded(Exception):
    """An LM call was refused because it could take the run past its call or cost budget."""


class CallBudget:
    """Counts calls, tokens and cost by role and refuses calls that could break the budget."""

    def __init__(self, max_calls: int | None = None, max_cost_usd: float | None = None):
        self.max_calls = max_calls
        self.max_cost_usd = max_cost_usd
        self._lock = threading.Lock()
        self.calls: Counter = Counter()
        self.prompt_tokens: Counter = Counter()
        self.completion_tokens: Counter = Counter()
        self.cost: Counter = Counter()
        self.in_flight = 0
        self.max_call_cost = 0.0
        self.refused = 0
        self.tripped: str | None = None

    def __deepcopy__(self, memo: dict) -> CallBudget:
        return self  # optimizers deep-copy programs and LMs; the budget stays one

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_cost(self) -> float:
        return sum(self.cost.values())

    def _estimate(self, price: Price | None, max_tokens: int) -> float:
        if price is None:
            return 0.0
        return self.max_call_cost or price.cost(PRIOR_PROMPT_TOKENS["teacher"], max_tokens)

    def reserve(self, price: Price | None, max_tokens: int) -> None:
        """Reserve one call, or raise BudgetExceeded when it could exceed the budget."""
        with self._lock:
            if self.max_calls is not None and self.total_calls + self.in_flight + 1 > self.max_calls:
                self._refuse(f"the LM-call budget of {self.max_calls} is reached ({self.total_calls} calls made)")
            estimate = self._estimate(price, max_tokens)
            if self.max_cost_usd is not None and self.total_cost + (self.in_flight + 1) * estimate > self.max_cost_usd:
                self._refuse(f"the cost budget of ${self.max_cost_usd:g} is reached (${self.total_cost:.4f} spent)")
            self.in_flight += 1

    def _refuse(self, why: str) -> None:
        self.refused += 1
        self.tripped = self.tripped or why
        raise BudgetExceeded(why)

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def record(
        self,
        role: str,
        price: Price | None,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        cache_hit: bool,
    ) -> None:
        """Count one completed call (a cache hit counts nothing)."""
        if cache_hit:
            return
        cost = price.cost(prompt_tokens, completion_tokens, cached_tokens) if price is not None else 0.0
        with self._lock:
            self.calls[role] += 1
            self.prompt_tokens[role] += prompt_tokens
            self.completion_tokens[role] += completion_tokens
            self.cost[role] += cost
            self.max_call_cost = max(self.max_call_cost, cost)

    def as_dict(self) -> dict[str, Any]:
        """Calls, tokens and cost by role and in total."""
        roles = sorted(self.calls)
        return {
            "calls": self.total_calls,
            "cost_usd": round(self.total_cost, 6),
            "refused": self.refused,
            "by_role": {
                r: {
                    "calls": self.calls[r],
                    "prompt_tokens": self.prompt_tokens[r],
                    "completion_tokens": self.completion_tokens[r],
                    "cost_usd": round(self.cost[r], 6),
                }
                for r in roles
            },
        }
