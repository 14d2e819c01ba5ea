"""How the engine's tasks meet the run's ledger and its write-ahead log of calls.

A task's worst case (its most calls, repairs included, each at what a call is reserved at before its prompt is
known) is reserved before it starts; written to the log whole when its calls are made where the log is not (Ray
workers: `log_tasks`), else its calls are opened one by one on a TaskLedger of its own at the call boundary. When
it ends, what its calls paid is recorded, its reservation given back, and, once its usage is in one of the run's
files (a record, a journal line), the log is told so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from refed_dspy.clients.calls import TaskCalls
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.ledger.tickets import TaskLedger
from refed_dspy.ledger.usage import Totals
from refed_dspy.providers.prices import Price


@dataclass
class Task:
    """One piece of work the engine runs: its kind, the slots (calls in flight) it takes, what it reserved, and the
    CallInfo of its calls (kept here: a cancelled task's calls still count)."""

    kind: str
    slots: int
    reserved_calls: int
    reserved_cost: float
    payload: Any = None
    started: float = field(default_factory=time.monotonic)
    calls: TaskCalls = field(default_factory=TaskCalls)  # its calls' CallInfo, and the most it was reserved for
    log_id: int | None = None  # its line in the run's log, when the task is written there whole (sent to Ray)
    ledger: TaskLedger | None = None  # what its calls are opened on at the call boundary (not on Ray, not in batches)


class TaskAccounts:
    """The ledger of an engine's tasks (see the module docstring). `own_record`: its calls have a record of their own
    (provider batches: their store), so none is opened at the boundary."""

    def __init__(
        self,
        worst_calls: dict[str, int],
        price: Price | None,
        max_tokens: int,
        role: str,
        budget: CallBudget,
        own_record: bool = False,
    ):
        self.worst_calls, self.price, self.max_tokens, self.role = worst_calls, price, max_tokens, role
        self.budget = budget
        self.own_record = own_record
        # the write-ahead log of the run's calls (refed_dspy.ledger.call_log): each request is written there by the call
        # boundary before it is sent; with `log_tasks` (the calls are made on Ray workers) each task is, whole
        self.log: CallLog | None = None
        self.log_tasks = False
        self.watch: Any = None  # a run's Watch (refed_dspy.engine.watch): each task's calls recorded there too

    @property
    def totals(self) -> Totals:
        return self.budget.totals

    def reserve(self, kind: str, slots: int, payload: Any, final: bool) -> Task | None:
        """A new task of `kind` with its worst case reserved (and, with `log_tasks`, written to the log); None when
        starting it could break the budget (`final=False`: only for now, work under way may give back)."""
        calls = self.worst_calls[kind]
        per_call = self.budget.call_cost(self.price, self.max_tokens, self.role)
        at_boundary = not self.own_record and not self.log_tasks  # its calls are opened one by one on its TaskLedger
        # before a call of the role has answered, a task reserves its first call's safe reservation only (its later
        # calls are reserved at the boundary as they are made, once the first has shown what one costs): a budget
        # that one worst case fits starts
        cost = per_call if at_boundary and not self.budget.seen(self.role) else calls * per_call
        if not self.budget.try_reserve(calls, cost, final=final, what=self._first_call(calls, cost)):
            return None
        task = Task(kind, slots, calls, cost, payload, calls=TaskCalls(calls))
        if self.log is not None and self.log_tasks:  # its calls are made where no log is: written down whole, first
            task.log_id = self.log.sent(self.role, kind, "?", cost / calls if calls else 0.0, calls=calls)
        if at_boundary:
            task.ledger = TaskLedger(self.budget, self.price, self.max_tokens, self.role, self.log, cost)
        return task

    def _first_call(self, calls: int, cost: float) -> str | None:
        """How a refusal names the first piece of work's reservation, made before any call showed what one costs."""
        first = self.budget.first_call
        if first is None or self.budget.seen(self.role):
            return None
        return f"the next piece of work ({calls} calls at most) may cost up to ${cost:.4f}; its first call is reserved at {first}"

    def release(self, task: Task) -> None:
        """Give back what `task` reserved, and what its calls' prompts reserved beyond it."""
        self.budget.release(task.reserved_calls, task.reserved_cost + (task.ledger.extra if task.ledger else 0.0))

    def account(self, task: Task) -> dict[str, Any]:
        """What `task`'s calls paid, added to the run's totals (a task written to the log whole is settled with it)."""
        usage = self.budget.record(task.calls, self.price, self.role)
        if task.ledger is not None:  # recorded: what its calls paid is no longer held as pending
            self.budget.unpend(task.ledger.paid)
        if self.log is not None and task.log_id is not None:
            self.log.settled_task(task.log_id, usage)
        if self.watch is not None:
            self.watch.paid(task.calls, usage, self.price)
        return usage

    def kept(self, task: Task) -> None:
        """What `task`'s calls paid is in the run's files now (its record, or its journal line): said in the log."""
        if self.log is not None:
            ids = [c.log_id for c in task.calls if getattr(c, "log_id", None) is not None]
            self.log.kept(ids + ([task.log_id] if task.log_id is not None else []))
