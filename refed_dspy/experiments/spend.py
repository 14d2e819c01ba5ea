"""What an experiment has spent, by part, across invocations (`<out>/spent.json`), feeding its one ledger.

A part that pays call by call (a cell's optimization, the judging of the test examples) adds what each attempt paid;
a part that is a run directory (the examples synthesis, a synthesis check) reports its whole run's usage every time,
so its entry is replaced by the latest figure and only the difference reaches the ledger. A resumed experiment starts
its ledger from the file: a cell that failed or hit the budget has its earlier spending counted, though its re-run
is answered from its cache. A part that pays call by call writes each request to its own write-ahead log
(`<out>/ledger/<part>.jsonl`, refed_dspy.ledger.call_log) before sending it: what a killed attempt paid, the calls in
flight at the kill included, is added to the part when the experiment starts again (and not paid again: the part's
cache answers it). While it runs, the file's `live` entry shows its figure as of its last call (`refed status`).

And what the experiment's budget leaves a part of it (the examples synthesis, a baseline, a cell), and which limit
binds it, said with its numbers (`left_to_spend`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from refed_dspy.config import Config
from refed_dspy.errors import FinishedShort
from refed_dspy.ledger.budget import CallBudget, Limit
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.ledger.lines import read_document, spent_figures
from refed_dspy.ledger.usage import usd
from refed_dspy.store.jsonl import write_json_atomic

log = logging.getLogger("refed_dspy")


_BOUND = "interrupted_cost_usd"  # the most the calls cut off in flight can have cost, kept against the budget too


def _bound(figures: dict[str, Any], *usages: dict[str, Any]) -> dict[str, Any]:
    """`figures` with the cut-off calls' bound of `usages` added up, where there is one."""
    bound = sum(float(u.get(_BOUND) or 0.0) for u in usages if u)
    if bound:
        figures[_BOUND] = round(bound, 6)
    return figures


def _figures(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Calls and cost of `usage` (and the bound of its calls cut off), and its calls by role when it says them (a
    CallBudget's usage does)."""
    usage = usage or {}
    out = {"calls": int(usage.get("calls") or 0), "cost_usd": usage.get("cost_usd") if usage else 0.0}
    return _with_roles(_bound(out, usage), [usage])


def _with_roles(figures: dict[str, Any], usages: list[dict[str, Any]]) -> dict[str, Any]:
    """`figures` with the calls by role of `usages` added up, as {role: {"calls": n}} (none: no by_role)."""
    roles: dict[str, int] = {}
    for usage in usages:
        for role, part in (usage.get("by_role") or {}).items():
            roles[role] = roles.get(role, 0) + int((part or {}).get("calls") or 0)
    if any(roles.values()):
        figures["by_role"] = {role: {"calls": n} for role, n in sorted(roles.items()) if n}
    return figures


def _plus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    cost = None if a["cost_usd"] is None or b["cost_usd"] is None else a["cost_usd"] + b["cost_usd"]
    return _with_roles(_bound({"calls": a["calls"] + b["calls"], "cost_usd": cost}, a, b), [a, b])


def total_of(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """Calls and cost added up (cost None when any non-empty part's is unknown)."""
    costs = [u.get("cost_usd") for u in usages if u]
    cost = None if any(c is None for c in costs) else round(sum(costs), 6)
    return _bound({"calls": sum(int(u.get("calls") or 0) for u in usages), "cost_usd": cost}, *usages)


_ZERO = {"calls": 0, "cost_usd": 0.0}


class Spend:
    """The experiment's spending by part, kept in `path`, added into `ledger` (whose totals are the experiment's)."""

    def __init__(self, path: Path, ledger: CallBudget, new_ledger: bool = False):
        self.path = path
        self.ledger = ledger
        # checked before it is believed, as every ledger is (refed_dspy.ledger.lines)
        self.parts: dict[str, dict[str, Any]] = read_document(path, spent_figures).get("parts") or {}
        self.live_parts: dict[str, dict[str, Any]] = {}  # the parts under way, as of their last call (shown only)
        self._lock = threading.Lock()
        self._unsaved: str | None = None
        for figures in self.parts.values():
            ledger.totals.add(figures)
        self._count_killed(new_ledger)

    @property
    def logs(self) -> Path:
        """Where the parts that pay call by call write their requests before sending them."""
        return self.path.parent / "ledger"

    def _log_of(self, part: str) -> Path:
        return self.logs / f"{quote(part, safe='')}.jsonl"

    def _count_killed(self, new_ledger: bool) -> None:
        """Add to each part what its attempts killed before they ended paid (their logs say), and end each log saying
        so (`new_ledger`: each log is set aside and a new one started, what it held not counted)."""
        for path in sorted(self.logs.glob("*.jsonl")) if self.logs.is_dir() else ():
            log = CallLog.open(path, new_ledger=new_ledger)
            if log.lost:
                self.add(unquote(path.stem), log.lost)
            if self._unsaved is None:
                log.end(reported_lost=True)  # counted in spent.json now
            else:
                log.close()

    def add(self, part: str, usage: dict[str, Any] | None) -> None:
        """An attempt of `part` paid `usage` (added to what earlier attempts paid)."""
        new = _figures(usage)
        if not new["calls"] and not new["cost_usd"] and not new.get(_BOUND):
            return
        with self._lock:
            self.parts[part] = _plus(self.parts.get(part, _ZERO), new)
            self.ledger.totals.add(new)
            self._save()

    @contextlib.contextmanager
    def live(self, part: str, budget: CallBudget) -> Iterator[CallBudget]:
        """An attempt of `part` paying through `budget`, each request written to the part's log before it is sent:
        after each call the file's `live` entry holds what this attempt paid so far; at the end, what it paid is added
        (as `add`) and the log's end says so."""
        log = CallLog.open(self._log_of(part))
        budget.log = log

        def saw() -> None:
            with self._lock:
                self.live_parts[part] = _figures(budget.as_dict())
                self._save()

        budget.watch(saw)
        try:
            yield budget
        finally:
            budget.unwatch(saw)
            budget.log = None
            with self._lock:
                self.live_parts.pop(part, None)
            self.add(part, budget.as_dict())
            if self._unsaved is None:
                log.end(reported_lost=True)
            else:  # not on disk: the log keeps it for the next start
                log.close()

    def set_total(self, part: str, usage: dict[str, Any] | None, role: str) -> None:
        """`part` (a run directory whose calls are all of `role`: a synthesis's teacher, a judging's judge) has paid
        `usage` in all, over all its invocations."""
        usage = usage or {}
        new = _figures(usage if usage.get("by_role") else {**usage, "by_role": {role: {"calls": usage.get("calls")}}})
        with self._lock:
            old = self.parts.get(part, _ZERO)
            if new == old:
                return
            delta = None if new["cost_usd"] is None or old["cost_usd"] is None else new["cost_usd"] - old["cost_usd"]
            bound = float(new.get(_BOUND) or 0.0) - float(old.get(_BOUND) or 0.0)
            self.ledger.totals.add({"calls": new["calls"] - old["calls"], "cost_usd": delta, _BOUND: bound})
            self.parts[part] = new
            self._save()

    def part(self, name: str) -> dict[str, Any]:
        """What part `name` has paid over every invocation: calls, cost and, where known, calls by role."""
        with self._lock:
            return dict(self.parts.get(name, _ZERO))

    def total(self) -> dict[str, Any]:
        """The whole experiment's calls and cost over every invocation (the ledger's), and its calls by role (what the
        parts said of theirs)."""
        with self._lock:
            return _with_roles(total_of([self.ledger.totals.as_dict()]), list(self.parts.values()))

    def of(self, prefix: str) -> dict[str, Any]:
        """Calls and cost of the parts whose name starts with `prefix` (one cell's, one baseline's)."""
        with self._lock:
            return total_of([v for k, v in self.parts.items() if k.startswith(prefix)])

    def _save(self) -> None:
        """Write the file (under the lock); a failed write is said once and retried at the next save."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                self.path, {"parts": self.parts, **({"live": self.live_parts} if self.live_parts else {})}
            )
        except OSError as err:
            if self._unsaved is None:
                log.warning(
                    "warning: experiment: %s could not be written (%s); spending is kept in memory", self.path, err
                )
            self._unsaved = str(err)
        else:
            self._unsaved = None


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
