"""Why a ledger refuses a reservation, said with its numbers: which limit (calls or cost), what was spent and
reserved, what is left, what the next piece of work may need, and the config field that sets the limit."""

from __future__ import annotations

from typing import Any


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
