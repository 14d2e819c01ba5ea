"""The execution engine: how every LM-bound command runs its calls, online or in provider batches.

A stage (synthesis, judging) says what to call: it starts work with `engine.start(kind, payload, slots)`
from its `fill`, runs one piece of work in `work(kind, payload, calls)` (a coroutine returning
`(result, failure)` that touches no shared state), and records what finished in `handle`. The engine says
how: it keeps up to `window.limit` LM calls in flight (asyncio tasks; a slow call never holds back the
others), reserves each task's worst case against the call and cost budget before starting it, retries 429,
5xx, timeouts and resets after Retry-After or a jittered backoff (`Retries`; the task's finished calls are
cache hits then), cuts the window when 429s rise with the calls in flight and grows it back (a provider's limit told
from a steady share of refusals), starts work no faster than a per-minute limit allows (stated, or found unstated),
stops the run on a streak of failures, accounts every call (attempts that leave no record are journaled through the
stage), and on
Ctrl-C, SIGTERM or SIGHUP starts nothing more and lets what is in flight finish within a grace period. Until the
endpoint has answered a call of this invocation, one piece of work runs at a time (refed_dspy.engine.failures).

One coroutine owns all state; tasks only return results.

Where the work runs is the stage's transport's (refed_dspy.engine.transport); where its answers come from is the
engine's `Answers`, and the engine asks it the same things whatever it is: each start of a piece of work is handed to
`answers.attempt` (provider batches number its calls under its key and attempt, which makes their custom_ids), its news
is read after each look (batches: the provider refused, or every task waits on a submitted batch and the run detaches),
and answers that `wait_outside` this process (batches: the window is then the tasks waiting, `limits.concurrency` large)
hold no first call back and let nothing finish on a stop (the waits are cancelled unpaid and the next invocation picks
them up).

The window of LM calls in flight and its pace are refed_dspy.engine.window's: it hears the role's LM's requests at the
wire (where the LM has a transport of refed's; else each piece of work as one request) and each piece of work that
ends, and the engine starts work while the window has room and the pace lets it.

The retry queue (`Retries`): work waiting to run again after a retryable failure (429, 5xx, a timeout, a reset),
in the order it becomes due. A 429 does not use up the work's retries: it waits for its Retry-After and goes again;
what bounds a provider that refuses for ever is `Limits.rate_limit_patience_s` (the section's) without a piece of
work that succeeded, after which the run stops (resumable).

A piece of work (known by its key across attempts) is retried at most `max_retries` times, after
refed_dspy.clients.tries's delay (seeded, so a run's backoffs repeat). The engine starts what is due as slots free.
Work waiting for its time that no attempt paid for may be stood in for meanwhile (a stage may start other work of its
kind in its place, `waiting[kind]`): when its time comes the stage may `take_back` what it no longer needs (nothing is
sent before its time), and once nothing runs and the stage `wants_more` no work, what waits is not waited for. A run
does not wait out a Retry-After for work it has done without, and pays for none of it twice.

The work a run has under way (`InFlight`): each asyncio task with what it holds (its slots of the window, its kind), and the
count of tasks by kind that are running or waiting to be retried. Owned by the engine's one coroutine.

The tasks that finished since the engine's loop last looked, and the wake-up that lets it look again (`DoneQueue`).

How an engine's run ended, in the words of a summary, comes from pure functions of the engine's state (at the end).

How its tasks meet the run's ledger and its write-ahead log of calls (`TaskAccounts`).

A task's worst case (its most calls, repairs included, each at what a call is reserved at before its prompt is
known) is reserved before it starts; written to the log whole when its calls are made where the log is not (Ray
workers: `log_tasks`), else its calls are opened one by one on a TaskLedger of its own at the call boundary. When
it ends, what its calls paid is recorded, its reservation given back, and, once its usage is in one of the run's
files (a record, a journal line), the log is told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from refed_dspy.clients.calls import HeldShort, TaskCalls, opened_on
from refed_dspy.clients.rate_limits import RateLimits
from refed_dspy.clients.tries import retry_delay_s
from refed_dspy.engine.failures import Failure, FailureStreak, FirstCalls, refused_for_too_long
from refed_dspy.engine.window import Window
from refed_dspy.errors import RunDirError
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.ledger.tickets import TaskLedger
from refed_dspy.ledger.usage import Totals
from refed_dspy.providers.prices import Price
from refed_dspy.runtime.quiet import dropping
from refed_dspy.runtime.stops import checkpoint
from refed_dspy.store.jsonl import DiskFull, stop_if_full

if TYPE_CHECKING:  # the stage base builds its engine: the engine only calls what it implements
    from refed_dspy.engine.stage import StageBase


@dataclass
class Limits:
    """How hard the engine may push: calls in flight, retries, budget, the failure streak, the stop grace."""

    concurrency: int
    max_retries: int
    worst_calls: dict[str, int]  # per kind of work: LM calls it may make at most (repairs included)
    max_calls: int | None = None
    max_cost_usd: float | None = None
    price: Price | None = None
    max_tokens: int = 4096
    max_consecutive_failures: int = 25
    role: str = "teacher"
    stop_grace_s: float = 10.0
    seed: int = 0
    endpoints: int = 1  # the role's api_base endpoints (0: the provider's own; several: a replica taken out)
    rate_limit_patience_s: float = 600.0  # 429s with no work succeeding this long stop the run (resumable)
    rate_limits: RateLimits | None = None  # the role's LM's requests at the wire, and the limits its provider states


TRUNCATED = "LM response was truncated"  # DSPy's warning on each reply cut off at max_tokens
UNSPENT_RETRIES = ("rate_limited", "held_short")  # failures whose retries use none of the task's max_retries


class Answers:
    """Where a run's answers come from, as the engine's loop meets it: here, each call answered when it returns (this
    base); provider batches' (refed_dspy.launch.batch.answers.BatchAnswers) wait outside this process. See the module
    docstring."""

    # the work waits on answers kept outside this process (a provider's batches, in the run dir): their store is the
    # calls' record (none is opened at the call boundary), the first calls are not held back one at a time (a batch
    # waits for all), and a stop lets none of it finish (the next invocation collects it)
    wait_outside = False

    def tasks_in_flight(self, window: int) -> int:
        """The pieces of work the engine keeps under way for a window of `window` calls (batches: [batch]
        max_in_flight, each waiting on its answer)."""
        return window

    def begin(self, tasks_running: Callable[[], int], wake: Callable[[], None]) -> None:
        """The engine's run begins: `tasks_running()` counts its tasks, `wake()` lets its loop look again."""

    def attempt(
        self, key: str, work: Coroutine[Any, Any, Any], hold: Callable[[float, bool], None]
    ) -> Coroutine[Any, Any, Any]:
        """`work`, one start of the piece of work `key`, as it is to run. `hold(bound, sent)`: a request of it whose
        bound is known (a batch line) weighed against the budget (TaskAccounts.hold)."""
        return work

    def news(self) -> Failure | str | None:
        """Asked after each look of the engine's loop: a Failure that stops the run, 'detached' (every piece of work
        waits on answers a later invocation collects), or None."""
        return None

    async def end(self) -> None:
        """The engine's run has ended (what runs cancelled and accounted)."""


class Engine:
    """Runs a stage's work with up to `limits.concurrency` LM calls in flight. See the module docstring."""

    def __init__(self, stage: StageBase, limits: Limits, totals: Totals | None = None, answers: Answers | None = None):
        self.stage = stage
        # where its answers come from (by default each call's own reply); the engine never asks which
        self.answers = answers if answers is not None else Answers()
        self.detached = False
        self.limits = limits
        # the run's ledger of calls against its budget; its totals are of the whole run (the stage seeds them with
        # what earlier invocations paid)
        self.budget = CallBudget(limits.max_calls, limits.max_cost_usd, totals)
        # how its tasks meet the ledger and the run's write-ahead log (refed_dspy.engine.execution)
        self.accounts = TaskAccounts(
            limits.worst_calls,
            limits.price,
            limits.max_tokens,
            limits.role,
            self.budget,
            own_record=self.answers.wait_outside,
        )
        self.streak = FailureStreak(limits.max_consecutive_failures, limits.role, limits.role)
        self.running = InFlight()  # the tasks under way (refed_dspy.engine.execution)
        self.pending = self.running.pending  # tasks by kind, running or waiting to be retried
        # the work in flight (refed_dspy.engine.window), hearing the role's LM's requests at the wire where it can
        self.window = Window(limits.concurrency, limits.rate_limits, lambda: self.running.slots_used)
        self.last_success = time.monotonic()  # when work last succeeded (the run's start before any did)
        self.retrying = Retries(limits.max_retries, limits.seed)  # failed work waiting to run again
        self.waiting = self.retrying.free  # ... that no attempt paid for, by kind (a part of `pending`)
        self.stop_reason: str | None = None
        self.writers: list[Any] = []  # the stage's record writers: one that finds the disk full stops the run
        self.abort: Failure | None = None
        # until the endpoint has answered: one piece of work at a time online
        self.first = FirstCalls(unreachable_stops=limits.endpoints == 1)
        self.stopping = False  # interrupted: finish what is in flight, start nothing
        self.interrupted = False
        # called after each wake-up; returns the seconds until it wants to be called again (None: only on news)
        self.on_progress: Callable[[], float | None] | None = None
        self.done = DoneQueue()

    @property
    def totals(self) -> Totals:
        """What the run has paid, this invocation and (seeded by the stage through `budget.totals`) the earlier ones."""
        return self.budget.totals

    def use_log(self, log: CallLog, whole_tasks: bool) -> None:
        """Write the run's calls to `log` before they are sent (`whole_tasks`: each task whole, its calls being made
        where the log is not)."""
        self.accounts.log, self.accounts.log_tasks = log, whole_tasks

    @property
    def log(self) -> CallLog | None:
        return self.accounts.log

    # ---- what a stage reads ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Some work is running, or work waits for its turn under the provider's stated limits (the loop starts it
        when the pace lets it: a stage need not start it now for the run to go on)."""
        return bool(self.running) or self._paced(time.monotonic()) is not None

    @property
    def stopped(self) -> bool:
        """The run stops starting work: the budget is reached (`stop_reason`) or the run aborts."""
        return self.stop_reason is not None or self.abort is not None

    # ---- starting work ------------------------------------------------------------------------
    def slots_free(self) -> int:
        held = self.first.holds(bool(self.running), self.answers.wait_outside)
        if held or self._paced(time.monotonic()) is not None:
            return 0
        return int(self.window.limit) - self.running.slots_used

    def start(self, kind: str, payload: Any, slots: int) -> bool:
        """Start one piece of work, or False when it could break the budget: the stage keeps it and tries again when
        work under way ends; with nothing under way, the run's stop reason becomes 'budget'."""
        meta = self.accounts.reserve(kind, slots, payload, final=not self.running)
        if meta is None:
            if not self.running:
                self.stop_reason = self.stop_reason or "budget"
            return False
        coro = self.stage.work(kind, payload, meta.calls)
        # batches: each start an attempt of its own, each of its requests held at its bound as it joins a batch
        coro = self.answers.attempt(self.stage.key(kind, payload), coro, functools.partial(self.accounts.hold, meta))
        with opened_on(meta.ledger):  # the task's context (copied as it is created) carries its ledger
            task = asyncio.ensure_future(coro)
        self.running.add(task, meta)
        meta.level = self.running.slots_used  # the slots of work in flight it started at, its own included
        self.window.pace.start(meta.started)
        if self.window.wire is None:  # its requests are heard nowhere (Ray, a user's LM): one request to the window
            self.window.sent(meta.level, meta.started)
        task.add_done_callback(self.done.add)
        return True

    def _finished(self, task: asyncio.Task) -> Task:
        meta = self.running.pop(task)
        self.accounts.release(meta)
        return meta

    def wake(self) -> None:
        """Let the loop look again (a task finished, or the answers have news)."""
        self.done.wake()

    def start_due_retries(self) -> bool:
        """Start the retries whose time has come; False when one must wait for free slots (or the budget)."""
        while self.retrying.waiting and self.abort is None and (due := self.retrying.due(time.monotonic())):
            back = due.free and self.stage.take_back(due.kind, due.payload)  # stood in for while it waited
            if not back:
                if self.slots_free() < due.slots and self.running:
                    return False
                if not self.start(due.kind, due.payload, due.slots):
                    return False
            self.retrying.take(back)
            self.pending[due.kind] -= 1
        return True

    # ---- finished work ------------------------------------------------------------------------
    def _retry(self, meta: Task, failure: Failure, paid: bool) -> bool:
        """Queue `meta` to run again after a retryable failure (`paid`: the attempt paid for a call); False when its
        retries are used up (or a rate limit has refused every piece of work for `rate_limit_patience_s`: the run then
        stops)."""
        now = time.monotonic()
        if failure.reason == "rate_limited" and now - self.last_success > self.limits.rate_limit_patience_s:
            self.abort = self.abort or refused_for_too_long(self.limits.rate_limit_patience_s, failure)
            return False
        asked = max((call.retry_after for call in meta.calls if call.retry_after is not None), default=None)
        if asked is not None and asked > (failure.retry_after or 0.0):  # a request of its refused beside its failure
            failure = replace(failure, retry_after=asked)
        key = self.stage.key(meta.kind, meta.payload)
        if not self.retrying.schedule(key, failure, (meta.kind, meta.payload, meta.slots), now, paid):
            return False
        self.pending[meta.kind] += 1
        return True

    def _handle(self, task: asyncio.Task, meta: Task) -> None:
        result, failure = task.result()
        checkpoint("before_record", meta.kind)  # its calls answered, nothing of it written (refed_dspy.runtime.stops)
        usage = self.accounts.account(meta)
        failure = self.first.note(meta.calls, failure)
        self._tell_window(meta, failure)
        if failure is not None and failure.reason == "budget":  # a call's prompt needed more than the budget had left
            self.stop_reason = self.stop_reason or "budget"
        if failure is not None and failure.needs is not None:  # held short on a worker: held at what it needs again
            self.budget.held_short(self.limits.role, failure.needs)
        if (
            failure is not None
            and failure.retryable
            and self.abort is None
            and not self.stopping
            and self._retry(meta, failure, bool(usage.get("calls")))
        ):
            self._note_attempt(meta, failure.reason, usage)  # what the failed attempt paid, on disk
            self.accounts.kept(meta)
            return
        if failure is None:
            self.last_success = time.monotonic()
        self.abort = self.abort or self.streak.note(failure)
        try:
            self.stage.handle(meta.kind, meta.payload, result, failure, usage)
        except RunDirError:
            with contextlib.suppress(RunDirError):  # the record is not: what its calls paid goes to the journal
                self._note_attempt(meta, "unwritten", usage)
                self.accounts.kept(meta)
            raise
        self.accounts.kept(meta)

    def _tell_window(self, meta: Task, failure: Failure | None) -> None:
        """The window hears that `meta` ended (and, where it hears no requests at the wire, the work as one request:
        refused by a rate limit or not)."""
        now = time.monotonic()
        if self.window.wire is None:
            self.window.answered(
                meta.level, failure is not None and failure.reason == "rate_limited", meta.started, now
            )
        self.window.answer(meta.slots, failure is None, now - meta.started, meta.calls)

    def _note_attempt(self, meta: Task, outcome: str, usage: dict[str, Any]) -> None:
        if usage.get("calls") or usage.get("failed_calls") or usage.get("cached_calls"):
            self.stage.note_attempt(self.stage.key(meta.kind, meta.payload), outcome, usage)

    # ---- the loop -----------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Start what can start: the retries that are due, then the stage's new work. False when a retry that is due
        cannot start until work under way ends (no free slots, or the budget waits for what is in flight)."""
        if self.stopping:
            return True
        if not self.start_due_retries():
            return False
        if self.stop_reason is None and self.abort is None:
            self.stage.fill(self)
        return True

    async def run(self) -> None:
        """Run until the stage has nothing more to start and nothing runs, or the run stops or aborts.

        Interrupted (the task cancelled by Ctrl-C, SIGTERM or SIGHUP): starts nothing more, handles what
        finishes within `limits.stop_grace_s`, then cancels the rest; `interrupted` is then set.
        """
        self.answers.begin(lambda: len(self.running), self.wake)
        self.window.hear(True)  # the role's LM's requests, heard at the wire while this run uses it
        with dropping(("dspy.clients.lm",), (TRUNCATED,)):  # a reply cut off is a reject that says so
            await self._run()

    async def _run(self) -> None:
        try:
            try:
                await self._loop()
            except asyncio.CancelledError:
                self.interrupted = self.stopping = True
                await self._drain()
            except DiskFull:  # the reserve's room is there: let what is in flight finish and be written, then stop
                self.stopping = True
                with contextlib.suppress(RunDirError):
                    await self._drain()
                raise
        except (asyncio.CancelledError, KeyboardInterrupt):  # a second signal: stop now
            self.interrupted = True
            raise
        finally:
            await self._cancel_the_rest()
            await self.answers.end()
            self.window.hear(False)

    def _news(self) -> bool:
        """The answers' news: a failure that aborts the run, or 'detached' (every task waits on answers a later
        invocation collects): stop. True then."""
        news = self.answers.news()
        if isinstance(news, Failure):
            self.abort = self.abort or news
        elif news == "detached":
            self.detached = self.stopping = True
            self.stop_reason = "detached"
        return news is not None

    def _paced(self, now: float) -> float | None:
        """Seconds until the pace (a per-minute limit the provider states, or one the window found) lets the next piece
        of work start (None: now, or no pace)."""
        return self.window.pace.wait_s(now) if not self.stopping else None

    async def _loop(self) -> None:
        """Blocks until something can happen: work ends, a retry's time comes (when it could start then), the
        answers have news, the progress display is due to show figures it has not shown, or a stop cancels it."""
        redraw: float | None = None
        while True:
            can_start = self._fill()
            if not self.running and not self.stage.wants_more():  # what waits for its retry is not needed: no wait
                for kind in self.retrying.drop_free():
                    self.pending[kind] -= 1
            waiting = self.retrying.waiting
            now = time.monotonic()
            paced = self._paced(now)  # work may be held back for its turn under the provider's stated limits
            if not self.running and not ((waiting or paced) and self.abort is None and self.stop_reason is None):
                return
            # a due retry held back by full slots (or the budget) can start only when work ends: no timer then
            wait = self.retrying.wait_s(now) if waiting and (can_start or not self.running) else None
            wait = _sooner(wait, paced)
            for task in await self.done.wait(_sooner(wait, redraw)):
                if task in self.running:
                    self._handle(task, self._finished(task))
            redraw = self.on_progress() if self.on_progress is not None else None
            stop_if_full(self.writers)  # once the results at hand are all handled
            if self.abort is not None or self._news():
                return

    async def _drain(self) -> None:
        # work that waits outside this process (provider batches) outlives it: nothing to let finish
        deadline = time.monotonic() + (0.0 if self.answers.wait_outside else self.limits.stop_grace_s)
        redraw: float | None = None
        while self.running and time.monotonic() < deadline:
            for task in await self.done.wait(_sooner(max(0.0, deadline - time.monotonic()), redraw)):
                if task in self.running:
                    self._handle(task, self._finished(task))
            redraw = self.on_progress() if self.on_progress is not None else None

    async def _cancel_the_rest(self) -> None:
        """Cancel what still runs, and account what those tasks paid: their finished calls, and the calls they had
        in flight (sent, perhaps answered and billed, never read), journaled through the stage."""
        if not self.running:
            return
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
        for task in self.running:
            meta = self._finished(task)
            usage = self.accounts.account(meta)
            with contextlib.suppress(RunDirError):  # a full disk: the summary still says what it can
                self._note_attempt(meta, "interrupted", usage)
                self.accounts.kept(meta)

    def status(self, done: bool) -> str:
        """How the run ended: aborted, interrupted, complete (the stage says `done`), else why it stopped short."""
        return run_status(self.abort is not None, self.detached, self.interrupted, done, self.stop_reason)

    def figures(self) -> dict[str, Any]:
        """Retries, the window, (stopped by the budget) why and (under a cost budget) what the first call was reserved
        at, for a summary."""
        tripped = self.budget.tripped if self.stop_reason == "budget" else None
        window = self.window.figures() | ({"stood_in": self.retrying.taken_back} if self.retrying.taken_back else {})
        return run_figures(tripped, self.budget.first_call, self.retrying.by_reason, window)


def _sooner(a: float | None, b: float | None) -> float | None:
    """The shorter of two waits (None: no limit)."""
    return b if a is None else a if b is None else min(a, b)


class Retries:
    """The engine's queue of work to retry (see the module docstring)."""

    def __init__(self, max_retries: int, seed: int = 0):
        self.max_retries = max_retries
        self.waiting: list[Queued] = []  # a heap, by when each is due
        self.attempts: Counter = Counter()  # retries so far, by key of work (what max_retries bounds)
        # 429s and pieces held short so far, by key of work (bounded by time, and by the hold each raises; not here)
        self.refusals: Counter = Counter()
        self.by_reason: Counter = Counter()  # retries so far, by the failure's reason
        self.paid: set[str] = set()  # the keys of work an attempt of which paid for a call
        self.free: Counter = Counter()  # the work waiting that no attempt paid for, by kind
        self.taken_back = 0  # pieces of work others stood in for, taken back by their stage instead of run again
        self._rng = random.Random(seed)
        self._seq = itertools.count()
        # hears each piece of work scheduled again: (its kind, the failure's reason, its retries so far, the wait
        # the provider asked for): a run's events and figures (refed_dspy.engine.watch)
        self.on_schedule: Callable[[str, str, int, float | None], None] | None = None

    def schedule(self, key: str, failure: Failure, work: tuple[str, Any, int], now: float, paid: bool = False) -> bool:
        """Queue `work` (kind, payload, slots) to run again after `failure` (`paid`: its attempt paid for a call);
        False when its retries are used up (a rate limit's refusal uses none: the engine bounds those by time; nor does
        a piece held short on a worker, which sent nothing: each raises what its role's pieces are held at)."""
        counted = self.refusals if failure.reason in UNSPENT_RETRIES else self.attempts
        if counted is self.attempts and self.attempts[key] >= self.max_retries:
            return False
        counted[key] += 1
        self.by_reason[failure.reason] += 1
        if paid:
            self.paid.add(key)
        delay = retry_delay_s(counted[key], self._rng.random(), failure.retry_after)
        kind, payload, slots = work
        queued = Queued(now + delay, next(self._seq), kind, payload, slots, key not in self.paid)
        heapq.heappush(self.waiting, queued)
        self.free[kind] += queued.free
        if self.on_schedule is not None:
            self.on_schedule(kind, failure.reason, counted[key], failure.retry_after)
        return True

    def due(self, now: float) -> Queued | None:
        """The first work whose time has come, still queued (`take` removes it); None if none."""
        return self.waiting[0] if self.waiting and self.waiting[0].due <= now else None

    def take(self, back: bool = False) -> None:
        """Remove the first work (the one `due` returned; `back`: taken back by its stage, not run again)."""
        queued = heapq.heappop(self.waiting)
        self.free[queued.kind] -= queued.free
        self.taken_back += back

    def drop_free(self) -> list[str]:
        """Remove the work no attempt paid for (its stage needs no more work: it will not run); returns their kinds."""
        dropped = [queued.kind for queued in self.waiting if queued.free]
        self.waiting[:] = [queued for queued in self.waiting if not queued.free]
        heapq.heapify(self.waiting)
        self.free.subtract(dropped)
        self.taken_back += len(dropped)
        return dropped

    def wait_s(self, now: float) -> float | None:
        """Seconds until the first work is due (0 when it is); None when nothing waits."""
        return max(0.0, self.waiting[0].due - now) if self.waiting else None


@dataclass(order=True)
class Queued:
    """A piece of work waiting to run again: when it is `due` (`seq` breaks ties), its kind, payload and slots, and
    whether no attempt of it paid for a call (`free`: other work may stand in for it without paying twice)."""

    due: float
    seq: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False)
    slots: int = field(compare=False)
    free: bool = field(compare=False)


class InFlight:
    """The running tasks, the window slots they hold (a running total: O(1) per start) and `pending`, the tasks by
    kind running or waiting to be retried (a stage reads it to know how much is on its way)."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task, Task] = {}
        self.slots_used = 0
        self.pending: Counter = Counter()

    def add(self, task: asyncio.Task, meta: Task) -> None:
        self.tasks[task] = meta
        self.slots_used += meta.slots
        self.pending[meta.kind] += 1

    def pop(self, task: asyncio.Task) -> Task:
        """The task's bookkeeping, now that it has finished (or been cancelled)."""
        meta = self.tasks.pop(task)
        self.slots_used -= meta.slots
        self.pending[meta.kind] -= 1
        return meta

    def __bool__(self) -> bool:
        return bool(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, task: object) -> bool:
        return task in self.tasks

    def __iter__(self) -> Iterator[asyncio.Task]:
        return iter(list(self.tasks))


class DoneQueue:
    """`add` is each task's done callback; `wake` lets a waiting `wait` return (a task finished, or the answers
    have news); `wait` returns what finished since the last call, waiting up to `timeout` (None: until one does)."""

    def __init__(self) -> None:
        self._done: deque[asyncio.Task] = deque()
        self._wake: asyncio.Future | None = None

    def add(self, task: asyncio.Task) -> None:
        self._done.append(task)
        self.wake()

    def wake(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def wait(self, timeout: float | None) -> list[asyncio.Task]:
        if not self._done:
            loop = asyncio.get_running_loop()
            self._wake = wake = loop.create_future()
            timer = (
                loop.call_later(timeout, lambda: wake.done() or wake.set_result(None)) if timeout is not None else None
            )
            try:
                await wake
            finally:
                self._wake = None
                if timer is not None:
                    timer.cancel()
        done = list(self._done)
        self._done.clear()
        return done


def run_status(aborted: bool, detached: bool, interrupted: bool, done: bool, stop_reason: str | None) -> str:
    """aborted, submitted (batches left waiting), interrupted, complete (the stage says `done`), else why the run
    stopped short (its stop reason; 'exhausted' when it has none)."""
    if aborted:
        return "aborted"
    if detached:
        return "submitted"
    if interrupted:
        return "interrupted"
    return "complete" if done else (stop_reason or "exhausted")


def run_figures(
    budget_stop: str | None, first_call: Any, retries: dict[str, int], window: dict[str, Any]
) -> dict[str, Any]:
    """Retries by reason, the window's figures, for a run the budget stopped what the budget said, and under a cost
    budget what the first call was reserved at (`first_call`, before any call had answered)."""
    return {
        **({"budget_stop": budget_stop} if budget_stop else {}),
        **({"budget_first_call": first_call} if first_call else {}),
        "retries": dict(retries),
        "concurrency": window,
    }


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
    asked: float = 0.0  # the bounds of its requests held one by one (batch lines: TaskAccounts.hold)
    beyond: float = 0.0  # what they needed beyond its reservation, reserved until it ends
    level: int = 0  # the slots of work in flight when it started, its own included (the window's controller reads it)


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
        if not at_boundary and self.budget.max_cost_usd is not None:
            # no call of it is gated one by one here (its prompts are counted nowhere the budget sees): under a cost
            # budget each is held at its worst case, as the boundary holds each call in flight
            cost = calls * max(per_call, self.budget.worst_call_cost(self.price, self.max_tokens, self.role))
        if not self.budget.try_reserve(calls, cost, final=final, what=self._first_call(calls, cost)):
            return None
        task = Task(kind, slots, calls, cost, payload, calls=TaskCalls(calls))
        if self.log_tasks and self.budget.max_cost_usd is not None:  # a worker refuses a call beyond it (HeldShort)
            task.calls.held = cost
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
        extra = task.beyond + (task.ledger.extra if task.ledger else 0.0)
        self.budget.release(task.reserved_calls, task.reserved_cost + extra)

    def hold(self, task: Task, bound: float, sent: bool = False) -> None:
        """A request of `task` whose bound is known (a batch line, its body counted): under a cost budget, what its
        task's reservation lacks for it (beside the requests it held before) is reserved beyond it until the task
        ends: a long prompt is weighed as it is, not at the prompt a piece of work is held at before its requests are
        built. Where the budget has no room for that now, HeldShort (nothing held, nothing sent): the piece runs
        again, held at that bound a call, when the work under way leaves room (else the run stops at the budget). One
        `sent` already (in a batch an earlier invocation left open: it may be billed whatever happens) is held
        whatever the room."""
        if self.budget.max_cost_usd is None:
            return
        lack = task.asked + bound - task.reserved_cost - task.beyond
        if lack > 0:
            if sent:
                self.budget.owe(lack)
            elif not self.budget.try_reserve(0, lack, final=False):
                raise HeldShort(
                    f"a batch request may cost up to ${bound:.4f}, more than its piece of work was held at and the "
                    "budget has room for now: started again, held at that",
                    bound,
                )
            task.beyond += lack
        task.asked += bound

    def account(self, task: Task) -> dict[str, Any]:
        """What `task`'s calls paid, added to the run's totals (a task written to the log whole is settled with it). A
        call of it cut off in flight where no boundary here bounded it (on a Ray worker lost with it) counts at the
        worst case its task was held at, not at what the calls seen so far cost."""
        if self.log_tasks or self.own_record:
            worst = self.budget.worst_call_cost(self.price, self.max_tokens, self.role)
            for call in task.calls:
                if call.interrupted and call.cost_bound_usd is None:
                    call.cost_bound_usd = worst
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
