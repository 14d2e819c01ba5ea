"""The base of every LM-bound stage (synthesis, judging, meta-evaluation): what they share, written once.

A stage is the part that differs: what to start next (`fill`), one piece of work (`work`, usually `guarded` around
its part's call), what to write when it finishes (`handle`), what identifies it across retries (`key`) and, when a
retried or cut-off attempt leaves no record, where its usage goes (`note_attempt`). The base owns the rest: the LM
and adapter of its role and their price, the engine's limits from the role's spec, the guarded call (calls
collected, the LM and adapter in context, a failure classified), and the end of a run (the status, the summary
written whatever happened, an abort raised as RunAborted, an interrupt as RunInterrupted with the summary).

What a stage may use of its engine: `start`, `slots_free()`, `pending[kind]`, `waiting[kind]`, `busy`, `stopped` and
`totals`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.adapters import RepairingAdapter, build_adapter
from refed_dspy.clients.lm_routing import LedgerScope
from refed_dspy.config.lm import LMSpec, PriceBook
from refed_dspy.engine.execution import Answers, Engine, Limits
from refed_dspy.engine.failures import Failure, endpoint_error
from refed_dspy.engine.progress import Progress
from refed_dspy.engine.transport import LocalTransport, Piece, Transport
from refed_dspy.engine.watch import Report, Watch
from refed_dspy.errors import RunAborted, RunDirError, RunInterrupted
from refed_dspy.ledger.books import Books
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.ledger.usage import usd

logger = logging.getLogger("refed_dspy")


@dataclass
class Started:
    """What a stage runs with, as the launch (refed_dspy.launch.plan) starts it: its LM (None on Ray), its transport
    (here or on Ray: it only runs work; None: here, with no parts of its own), what watches it (its figures and events
    in the run dir; None: a command with no run dir), its books (refed_dspy.ledger.books: the price and money of
    records it does not write), what the place its parts run says of itself (refed_dspy.engine.watch.Report) and where
    its work's answers come from (refed_dspy.engine.execution.Answers)."""

    lm: Any
    transport: Transport | None
    watch: Watch | None = None
    books: Books | None = None  # None: the stage's own (its calls all reach its records)
    report: Report | None = None  # what the place its parts run says of itself (None: nothing)
    answers: Answers | None = None  # where its work's answers come from (None: each call's reply; batches: theirs)


class StageBase(ABC):
    """An LM-bound stage on the execution engine (see the module docstring). A subclass sets `self.engine` with
    `make_engine` in its __init__ and implements fill, work, handle and key."""

    what = "run"  # how messages name it: "run", "judging", "meta-evaluation"
    doing: dict[str, str] = {}  # kind of work -> what the progress line calls it ("feedback": "collecting feedback")

    def __init__(
        self,
        spec: LMSpec,
        role: str,
        started: Started,
        adapter: RepairingAdapter | None = None,
        prices: PriceBook | None = None,
    ):
        self.spec = spec
        self.watch = started.watch  # its figures and events in its run dir (refed_dspy.engine.watch); None: unwatched
        self.role = role
        self.lm = started.lm
        self.adapter = adapter or build_adapter(spec)
        # where its parts run (refed_dspy.engine.transport): here or on Ray; never asked which
        self.transport: Transport = started.transport or LocalTransport({})
        # what its calls cost and what records it does not write add (refed_dspy.ledger.books; batches: theirs)
        self.books = started.books or Books(spec)
        self.price = self.books.price  # batches: the batch price
        # what the place its parts run says of itself (on Ray its workers, in batch mode its batches)
        self.report = started.report or Report()
        self.answers = started.answers or Answers()  # provider batches: they wait on those
        # an LM the work calls that the stage does not hold (one pinned to a predictor of the program) passes the
        # call boundary too; `prices`: how it is priced ([prices], else LiteLLM's map)
        self.scope = LedgerScope(None, prices)
        self.engine: Engine

    def run_part(self, kind: str, stage_name: str | None, inputs: dict[str, Any], calls: list) -> Awaitable[Any]:
        """The stage's part for `kind` on `inputs`, run where its transport runs it with the stage's LM, adapter and
        ledger scope: (prediction, None) or (None, Failure), each LM call joining `calls` tagged `stage_name` (None:
        the part tags its own)."""
        return self.transport.run(Piece(kind, stage_name, inputs, calls, self.lm, self.adapter, self.scope))

    def window(self, concurrency: int) -> int:
        """The calls in flight the stage keeps: `concurrency`, or on Ray that many for each worker."""
        return self.transport.in_flight_limit(concurrency)

    def make_engine(
        self,
        *,
        concurrency: int,
        worst_calls: dict[str, int],
        max_calls: int | None,
        max_cost_usd: float | None,
        max_consecutive_failures: int,
        stop_grace_s: float,
        seed: int = 0,
    ) -> Engine:
        """The stage's engine: a window of `concurrency` calls (in provider batches, of the tasks its answers keep
        waiting)."""
        spec = self.spec
        limits = Limits(
            concurrency=self.answers.tasks_in_flight(concurrency),
            max_retries=spec.num_retries,
            # each kind of task's LM calls at most before repairs; each call may be repaired spec.max_repairs times
            worst_calls={kind: n * (1 + spec.max_repairs) for kind, n in worst_calls.items()},
            max_calls=max_calls,
            max_cost_usd=max_cost_usd,
            price=self.price,
            max_tokens=spec.output_limit,
            max_consecutive_failures=max_consecutive_failures,
            role=self.role,
            stop_grace_s=stop_grace_s,
            seed=seed,
            endpoints=len(spec.endpoints),
            rate_limit_patience_s=spec.rate_limit_patience_s,
            # the role's LM's requests at the wire and the limits its provider states (refed_dspy.clients.rate_limits),
            # heard where the LM has engines of its own (build_lm's), not in provider batches (their requests are the
            # batch API's, not the work's)
            rate_limits=None if self.answers.wait_outside else getattr(self.lm, "rate_limits", None),
        )
        self.engine = Engine(self, limits, answers=self.answers)
        return self.engine

    # ---- what the engine calls ------------------------------------------------------------------
    @abstractmethod
    def fill(self, engine: Engine) -> None:
        """Start work (`engine.start`) while there are slots and something to do."""

    @abstractmethod
    def work(self, kind: str, payload: Any, calls: list) -> Coroutine[Any, Any, tuple[Any, Failure | None]]:
        """The coroutine of one piece of work: (result, None) or (None, failure); it touches no shared state."""

    @abstractmethod
    def handle(self, kind: str, payload: Any, result: Any, failure: Failure | None, usage: dict[str, Any]) -> None:
        """Write what one piece of work produced (a record, or a reject)."""

    @abstractmethod
    def key(self, kind: str, payload: Any) -> str:
        """What identifies one piece of work across its retries."""

    def take_back(self, kind: str, payload: Any) -> bool:
        """Whether the stage takes back a piece of work whose retry's time has come, no longer needing it (other work
        stood in for it); it then starts it again itself if it comes to need it. Never, by default."""
        return False

    def wants_more(self) -> bool:
        """Whether the stage may still need work started (asked when nothing runs: False, and the work waiting for a
        retry that no attempt paid for is not waited for). Always, by default."""
        return True

    def note_attempt(self, key: str, outcome: str, usage: dict[str, Any]) -> None:  # noqa: B027 - a default
        """The usage of an attempt that leaves no record (retried, or cut off by a stop); nothing kept by default
        (it is in the engine's totals)."""

    # ---- the shared parts -----------------------------------------------------------------------
    def open_log(self, path: Any, shown_by: tuple[Path, ...] = (), new_ledger: bool = False) -> None:
        """Open the write-ahead log of this stage's calls at `path` (its directory's lock is held): what invocations
        killed before left unaccounted is added to the run's totals, and said in one line when this opening found it;
        each request of this invocation is written there before it is sent (on Ray, each task, whole). `shown_by`, the
        records that show a log was there, and `new_ledger`: as CallLog.open takes them (a log gone is refused)."""
        log = CallLog.open(path, shown_by, new_ledger)
        engine = self.engine
        engine.use_log(log, whole_tasks=self.transport.logs_tasks)
        self.books.charge(engine)  # batches: what they paid that no record holds
        if log.lost:
            engine.totals.add(log.lost)
        found = log.found_now
        if found:
            cost = found.get("cost_usd")
            in_flight = int(found.get("lost_in_flight") or 0)
            logger.info(
                "%s: %d LM calls of an earlier invocation that was killed are counted as paid%s%s",
                self.what,
                found.get("calls", 0),
                f" ({usd(cost)} and up to {usd(found.get('interrupted_cost_usd') or 0.0)} more)"
                if cost is not None
                else "",
                f"; {in_flight} of them were in flight when it was killed" if in_flight else "",
            )

    def usage(self) -> dict[str, Any]:
        """The usage of the whole run: what its records hold, with what its books add (provider batches: what the
        provider answered that no record holds, and the requests of batches still open)."""
        return self.books.usage(self.engine.totals.as_dict())

    def execution(self) -> dict[str, Any]:
        """How this invocation's calls went, for a summary: retries by reason, the window of calls in flight, online
        or batch (batches, requests, what the batch price saved), calls per endpoint, and on Ray where they ran."""
        out: dict[str, Any] = {**self.engine.figures(), "mode": self.report.mode}
        out.update(self.report.figures(self.usage()))
        spread = getattr(self.lm, "endpoint_spread", None)
        if spread is not None:
            out["endpoints"] = spread.figures()
        return out

    def stage_now(self) -> str:
        """What the stage is doing now, for the progress line: each kind of work under way and how many pieces
        ('collecting feedback (8 running)'; in batch mode 'waiting on batches'), or 'nothing in flight'; and the window
        when a rate limit holds it below the concurrency ('window 9 of 40: a rate limit')."""
        pending = self.engine.pending  # read from the progress thread: per-key reads, never an iteration
        how = self.report.doing
        parts = [f"{name} ({n} {how})" for kind, name in self.doing.items() if (n := pending.get(kind, 0)) > 0]
        now = ", ".join(parts) or "nothing in flight"
        held = self.engine.window.held_back()
        if held:
            now += f"; {held}"
        now += self.report.progress()
        return now

    def raise_endpoint_error(self) -> None:
        """The run's first calls found its endpoint wrong (engine/failures.py): EndpointError, naming the URL,
        the format expected and the likely fix."""
        engine = self.engine
        problem = endpoint_error(engine.abort, engine.first.answered, self.spec, self.role, engine.first.calls)
        if problem is not None:
            raise problem

    async def run_to_end(
        self,
        progress: Progress,
        writers: Iterable[Any],
        progress_of: Callable[[], tuple[int, int]],
        summarize: Callable[[str], Any],
        kept: Callable[[Any], str],
        done: Callable[[], bool] | None = None,
    ) -> Any:
        """Run the engine to its end, showing `progress_of()` (items done, items rejected) as it goes, then write the
        summary whatever happened (`summarize(status)` writes it and returns it; `done()` says whether the stage got
        all it wanted, by default: nothing stopped it). Raises RunAborted when the provider or the failure streak
        stopped it (`kept(summary)` says what is kept, and where), EndpointError when its first calls found the endpoint
        wrong, RunInterrupted (a KeyboardInterrupt carrying the summary) when a signal did."""
        engine = self.engine

        def show() -> float | None:
            done_items, rejected = progress_of()
            return progress.update(done_items, engine.totals, rejected)

        engine.on_progress = show
        progress.stage_of = self.stage_now
        show()  # from the first line on, the figures of earlier invocations (rejects, calls, cost) are counted
        written = True
        engine.writers = list(writers)
        if self.watch is not None:
            self.watch.follow(engine, self.report)
        try:
            if await self.books.settle(engine):  # batches an earlier invocation left open, collected first
                await engine.run()
        except RunDirError:
            written = False  # some calls' usage never reached a file: the log keeps them for the next start
            raise
        finally:
            for writer in engine.writers:
                writer.close()
            progress.close()
            status = engine.status(done=done() if done is not None else not engine.stopped)
            summary = summarize(status)
            if self.watch is not None:
                self.watch.end(status)
            if engine.log is not None and written:
                engine.log.end()
            elif engine.log is not None:
                engine.log.close()
        self.raise_endpoint_error()
        if engine.abort is not None:
            raise RunAborted(
                f"{self.what} stopped: {engine.abort.detail} ({kept(summary)}; run the same command again to resume)"
            )
        if status == "interrupted":
            raise RunInterrupted(summary)  # the summary is written; the caller learns that the run was stopped
        return summary

    async def run_plain(self) -> None:
        """Run the engine to its end, with nothing written (meta-evaluation keeps its results in memory); RunAborted
        when the provider or the failure streak stopped it."""
        await self.engine.run()
        self.raise_endpoint_error()
        if self.engine.abort is not None:
            raise RunAborted(f"{self.what} stopped: {self.engine.abort.detail}")
