"""What an experiment's budget leaves a part of it (the examples synthesis, a baseline, a cell), and which limit binds
it, said with its numbers (`left_to_spend`); what it has spent, by part, is refed_dspy.ledger.spend's."""

from __future__ import annotations

from typing import Any

from refed_dspy.config import Config
from refed_dspy.errors import FinishedShort
from refed_dspy.ledger.budget import CallBudget, Limit
from refed_dspy.ledger.usage import usd


class BudgetStop(FinishedShort):
    """The experiment's budget stopped a piece of it; `usage` says what that piece had spent."""

    def __init__(self, message: str, usage: dict[str, Any] | None = None):
        super().__init__(message)
        self.usage = usage or {}


def left_to_spend(ledger: CallBudget, what: str = "") -> tuple[int | None, float | None]:
    """The calls and cost the experiment may still spend (None: no such limit); BudgetStop when nothing is left
    (`what`: the part that was about to start)."""
    calls = None if ledger.max_calls is None else ledger.max_calls - ledger.total_calls
    cost = None if ledger.max_cost_usd is None else ledger.max_cost_usd - ledger.spent
    if calls is not None and calls < 1:
        raise BudgetStop(
            f"{what or 'the next part'} was not started: experiment.max_calls = {ledger.max_calls} is spent "
            f"({ledger.total_calls} calls); raise it and run the same command"
        )
    if cost is not None and cost <= 0:
        raise BudgetStop(
            f"{what or 'the next part'} was not started: experiment.max_cost_usd = {usd(ledger.max_cost_usd)} is spent "
            f"({usd(ledger.spent)}{_cut_off(ledger)}); raise it and run the same command"
        )
    return calls, cost


def experiment_limits(ledger: CallBudget, what: str) -> tuple[Limit | None, Limit | None]:
    """Where the limits of a part of the experiment come from: what experiment.max_calls / max_cost_usd leave it."""
    calls = cost = None
    if ledger.max_calls is not None:
        left = ledger.max_calls - ledger.total_calls
        calls = Limit(
            "experiment.max_calls",
            f"= {ledger.max_calls} leaves {what} {left} ({ledger.total_calls} spent by the experiment before it)",
        )
    if ledger.max_cost_usd is not None:
        left = ledger.max_cost_usd - ledger.spent
        cost = Limit(
            "experiment.max_cost_usd",
            f"= {usd(ledger.max_cost_usd)} leaves {what} {usd(left)} ({usd(ledger.spent)} spent by the experiment "
            f"before it{_cut_off(ledger)})",
        )
    return calls, cost


def _cut_off(ledger: CallBudget) -> str:
    bound = ledger.totals.cost_bound
    return f", up to {usd(bound)} of it in calls cut off, their tokens unknown" if bound else ""


def lesser(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


Amounts = tuple[int | None, float | None]  # calls and cost (None: no such limit)


def own_limit_that_stopped(tripped: str, caps: Amounts, own: Amounts, left: Amounts) -> str | None:
    """The cell's own optimize limit that stopped it, or None when what the experiment left was the tighter one (or
    the stop was another): `tripped` is the ledger's reason (ledger/budget.py words it), `caps` the cell's own limits,
    `own` what they left it (less what it paid before) and `left` what the experiment's budget allowed when the cell
    started."""
    for phrase, name, cap, mine, theirs in (
        ("the LM-call budget of ", "max_calls", caps[0], own[0], left[0]),
        ("the cost budget of ", "max_cost_usd", caps[1], own[1], left[1]),
    ):
        if phrase in tripped and mine is not None and (theirs is None or mine < theirs):
            return f"optimize.{name} = {cap}"
    return None


def own_left(cfg: Config, paid: dict[str, Any]) -> Amounts:
    """What a cell's own optimize limits leave it (None: no such limit): each less what its optimization paid over the
    experiment's earlier invocations (`paid`; a cap belongs to the command across its re-runs)."""
    own = cfg.optimize
    calls = None if own.max_calls is None else own.max_calls - int(paid.get("calls") or 0)
    cost = None if own.max_cost_usd is None else own.max_cost_usd - float(paid.get("cost_usd") or 0.0)
    return calls, cost


def amounts_text(calls: Any, cost: Any) -> str:
    return " and ".join(x for x in (f"{calls} calls" if calls is not None else "", usd(cost) if cost else "") if x)


def cell_limits(
    ledger: CallBudget,
    judging: dict[str, Any],
    cfg: Config,
    paid: dict[str, Any],
    opt_calls: int | None,
    opt_cost: float | None,
) -> tuple[Limit | None, Limit | None]:
    """Which limit binds a cell's optimization, calls and cost: its own optimize limit (less what it `paid` before),
    or what the experiment's leaves it (said with its numbers), whichever is less."""
    own_calls, own_cost = own_left(cfg, paid)

    def one(kind: str, own: Any, left: Any, total: Any, spent: Any, held: Any) -> Limit | None:
        show = usd if kind == "max_cost_usd" else str
        if own is not None and (left is None or own <= left):
            before = paid.get("cost_usd" if kind == "max_cost_usd" else "calls")
            note = (
                f"= {show(getattr(cfg.optimize, kind))}, {show(before)} of it paid by earlier invocations"
                if before
                else ""
            )
            return Limit(f"optimize.{kind}", note)
        if left is None:
            return None
        return Limit(
            f"experiment.{kind}",
            f"= {show(total)} leaves this cell {show(left)} to optimize with ({show(spent)} spent by the experiment "
            f"before it, {show(held or 0)} kept for judging its test examples)",
        )

    return (
        one("max_calls", own_calls, opt_calls, ledger.max_calls, ledger.total_calls, judging.get("calls")),
        one(
            "max_cost_usd",
            own_cost,
            opt_cost,
            ledger.max_cost_usd,
            ledger.total_cost,
            judging.get("cost_usd"),
        ),
    )
