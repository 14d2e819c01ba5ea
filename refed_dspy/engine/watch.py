"""Watching a run while it works: its figures, its events, and the file a reader follows.

One Watch per stage that runs in a run dir (a synthesis, a judging). The engine, its task accounts and the stage record
into it (refed_dspy.engine.figures: calls, work, retries, samples, rejects); it reads what the engine keeps as it goes
(calls in flight, the window, what each budget has left, on Ray the workers, in batch mode the batches); and once a
second, from a thread of its own, it writes the figures to the run dir (`metrics.json`, `judge_metrics.json`) and the
events its diffs find (a worker lost, a batch submitted or ended, a budget refusal) to the run's event log
(refed_dspy.store.rundir). The engine writes its own events (the window moved, work retried) as they happen. When
the stage ends, the file is written a last time with `ended` true and the run's status: the final values.

What a reader gets (`snapshot()`, `document()`) is safe to ask for from any thread: the Prometheus endpoint's, the
OTLP exporter's (refed_dspy.engine.metrics). A resumed run starts from the counters and histograms its last
invocation wrote, and from the samples and rejects its records hold.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refed_dspy.engine.figures import Figures, Series
from refed_dspy.ledger.usage import usage_of
from refed_dspy.store.jsonl import read_json, write_json_atomic
from refed_dspy.store.rundir import EventLog

log = logging.getLogger(__name__)
EVERY_S = 1.0  # between two writes of the figures file


class Report:
    """What the place a stage's parts run says of itself, to its summary, its progress line, its watch and
    `refed status`: here nothing but where an earlier invocation on Ray noted its workers, removed (`note_path`; this
    one runs here). Ray's workers (refed_dspy.launch.ray.pool.WorkersReport) and provider batches
    (refed_dspy.launch.batch.answers.BatchReport) say more. The run transport only runs work."""

    mode = "online"  # what a summary calls it: online | batch
    doing = "running"  # what the progress line says of work under way

    def __init__(self, note_path: Path | None = None):
        self.note_path = note_path

    @property
    def workers(self) -> list[Any]:
        """The run's Ray workers ([] here)."""
        return []

    def figures(self, usage: dict[str, Any]) -> dict[str, Any]:
        """What a summary says of where the calls ran ({} here; on Ray its workers and endpoints; batches: theirs and
        what the batch price saved of `usage`)."""
        return {}

    def progress(self) -> str:
        """What the progress line adds ('' here; on Ray the workers alive)."""
        return ""

    def note(self, final: bool = False) -> None:
        """Keep the run dir's note of the workers up to date for `refed status` (here: an earlier invocation's is
        removed)."""
        if self.note_path is not None:
            self.note_path.unlink(missing_ok=True)

    def batches(self) -> list[Any]:
        """The provider batches of the run (their store's entries), for its figures and events; [] online."""
        return []


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Watch:
    """The figures and events of one stage of `role` running in `run_dir`, its figures written to `path` (see the
    module docstring)."""

    def __init__(self, run_dir: str | Path, role: str, path: str | Path, every_s: float = EVERY_S):
        self.run_dir, self.role, self.every_s = Path(run_dir), role, every_s
        self.path = Path(path)
        self.figures = Figures(role)
        self.events = EventLog(self.run_dir, role)
        self.engine: Any = None  # what it reads as it goes (`follow`)
        self.report: Report = Report()
        self.target: int | None = None  # the records the stage is to make (a run's size)
        self.records = 0  # records on file (samples; judgments), and how many there were when this invocation began
        self.records_at_start = 0
        self.began = time.monotonic()
        self.began_at = _now_text()
        self.ended: str | None = None  # the stage's status once it has ended
        self._seen: dict[str, Any] = {"refused": 0, "lost": set(), "batches": {}}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what the stage and the engine tell it ------------------------------------------------
    def begin(self, target: int | None, records: int, rejects: Counter) -> None:
        """The stage begins, its run dir prepared (a fresh start has wiped it): the figures its last invocation wrote
        taken in, `target` records to make, `records` on file already, `rejects` on file by (stage, reason)."""
        self.figures.restore(read_json(self.path).get("series") or [])
        self.target, self.records, self.records_at_start = target, records, records
        self.figures.count("refed.samples", records)
        for (stage, reason), n in rejects.items():
            self.figures.count("refed.rejects", n, stage=stage, reason=reason)
        self.events.add("started", pid=os.getpid(), records=records, target=target)

    def follow(self, engine: Any, report: Report | None = None) -> None:
        """Record what `engine` (a refed_dspy.engine.execution.Engine) does: its tasks' calls, its retries and window
        moves (the stage says how each piece of work ended: `work_ended`); read the figures it keeps (and what
        `report` says of where its parts run: on Ray its workers, in batch mode its batches); and start writing the
        figures file once a second."""
        engine.accounts.watch = self
        engine.window.on_move, engine.retrying.on_schedule = self.window_moved, self.retried
        self.engine, self.report = engine, report if report is not None else Report()
        self._seen["refused"] = engine.budget.refused
        self._seen["batches"] = {batch: now for batch, (_, now, _) in self._batch_phases().items()}  # earlier ones
        self._thread = threading.Thread(target=self._beat, name=f"refed-watch-{self.role}", daemon=True)
        self._thread.start()

    def written(self) -> None:
        """A record was written (a sample; a judgment)."""
        self.records += 1
        self.figures.count("refed.samples")

    def rejected(self, stage: str, reason: str) -> None:
        """A reject record was written, of `stage`, for `reason` (a kind, never a message)."""
        self.figures.count("refed.rejects", stage=stage, reason=reason)

    def work_ended(self, kind: str, reason: str | None) -> None:
        """A piece of work of `kind` ended without being retried (what the engine hands its stage's `handle`): done
        (`reason` None), or failed for `reason`."""
        self.figures.count("refed.work", work=kind, outcome=reason or "done")
        if reason is not None:
            self.events.add("gave_up", work=kind, reason=reason)

    def retried(self, kind: str, reason: str, attempt: int, retry_after: float | None) -> None:
        """A piece of work of `kind` is to run again after `reason`, its `attempt`-th retry (`retry_after`: the wait
        the provider asked for)."""
        self.figures.count("refed.retries", reason=reason)
        self.events.add("retry", work=kind, reason=reason, attempt=attempt, retry_after_s=retry_after)

    def paid(self, calls: list, usage: dict[str, Any], price: Any) -> None:
        """The calls of one piece of work (CallInfo), `usage` what the ledger made of them at `price`: recorded, with
        their cost by the service tier that served them."""
        served = [c for c in calls if c.error is None and not c.interrupted and not c.cache_hit]
        tiers = {c.service_tier or "default" for c in served}
        if len(tiers) > 1:  # a piece of work that fell back from flex: each tier's calls priced apart
            costs = {
                t: usage_of([c for c in served if (c.service_tier or "default") == t], price).get("cost_usd")
                for t in tiers
            }
        else:
            costs = {next(iter(tiers), "default"): usage.get("cost_usd")}
        self.figures.calls(calls, {t: cost for t, cost in costs.items() if cost})

    def window_moved(self, old: float, new: float, why: str) -> None:
        """The window of calls in flight moved to another whole number of calls."""
        self.events.add("window", **{"from": round(old, 2), "to": round(new, 2)}, why=why)

    # ---- what it reads ----------------------------------------------------------------------------
    def snapshot(self) -> list[Series]:
        """Every series as it is now: the figures recorded, and the gauges read from the engine and its report."""
        return self.figures.series() + self._gauges()

    def _gauges(self) -> list[Series]:
        engine, role = self.engine, {"refed.role": self.role}
        if engine is None:
            return []
        out = [
            Series(
                "refed.calls.in_flight", dict(role), value=float(engine.running.slots_used if self.ended is None else 0)
            ),
            Series("refed.window", dict(role), value=round(float(engine.window.limit), 3)),
            *(  # spread over endpoints: each one's window too
                Series("refed.window", {**role, "refed.endpoint": url}, value=round(float(window.limit), 3))
                for url, window in engine.window.endpoints.items()
            ),
        ]
        for budget, (limit, spent) in self._budgets().items():
            if limit is not None:
                out.append(Series("refed.budget.remaining", {**role, "refed.budget": budget}, value=limit - spent))
        for state, n in sorted(self._batch_states().items()):
            out.append(Series("refed.batch.jobs", {**role, "refed.state": state}, value=float(n)))
        workers = self.report.workers
        if workers:
            lost = sum(1 for w in list(workers) if w.lost is not None)
            out.append(Series("refed.workers", {**role, "refed.state": "alive"}, value=float(len(workers) - lost)))
            out.append(Series("refed.workers", {**role, "refed.state": "lost"}, value=float(lost)))
        return out

    def _budgets(self) -> dict[str, tuple[float | None, float]]:
        """Each budget's limit (None: none set) and what is spent against it, of the whole run."""
        budget = self.engine.budget
        total = budget.totals.total
        return {
            "cost_usd": (budget.max_cost_usd, float(total.get("cost_usd") or 0.0)),
            "calls": (budget.max_calls, float(total.get("calls") or 0)),
        }

    def _batch_states(self) -> Counter:
        """The run's provider batches by state: planned, the provider's last status, or collected."""
        return Counter("collected" if e.collected else (e.status or "planned") for e in self._batches())

    def _batches(self) -> list[Any]:
        return self.report.batches()

    def document(self) -> dict[str, Any]:
        """What the figures file holds: the series, and what a page shows of them (rate, ETA, budgets, window)."""
        elapsed = max(time.monotonic() - self.began, 1e-9)
        made = self.records - self.records_at_start
        rate = made / elapsed
        left = None if self.target is None else max(0, self.target - self.records)
        engine = self.engine
        return {
            "role": self.role,
            "pid": os.getpid(),
            "began_at": self.began_at,
            "written_at": _now_text(),
            "ended": self.ended is not None,
            "status": self.ended,
            "target": self.target,
            "records": self.records,
            "elapsed_s": round(elapsed, 3),
            "records_per_s": round(rate, 4),
            "eta_s": round(left / rate, 1) if left and rate > 0 else (0.0 if left == 0 else None),
            "budgets": {k: {"limit": lim, "spent": spent} for k, (lim, spent) in self._budgets().items()}
            if engine is not None
            else {},
            "in_flight": engine.running.slots_used if engine is not None and self.ended is None else 0,
            "window": round(float(engine.window.limit), 2) if engine is not None else None,
            "concurrency": engine.window.concurrency if engine is not None else None,
            "series": [s.to_dict() for s in self.snapshot()],
        }

    # ---- the thread that writes ---------------------------------------------------------------------
    def _beat(self) -> None:
        while True:  # written at once (a resumed run's file said it had ended), then once a second
            try:
                self._write()
            except Exception as err:  # noqa: BLE001 - a figure a page shows must never stop the run
                log.debug("cannot write %s: %s", self.path, err)
            if self._stop.wait(self.every_s):
                return

    def _write(self) -> None:
        """The events of what changed since the last look, then the figures file."""
        if self.engine is not None:
            self._diff()
        write_json_atomic(self.path, self.document())

    def _diff(self) -> None:
        """Events for what changed since the last look: a budget refusal, a Ray worker lost, a batch's state."""
        seen, engine = self._seen, self.engine
        refused = engine.budget.refused
        if refused > seen["refused"]:
            seen["refused"] = refused
            self.events.add("budget_refusal", limit=engine.budget.tripped_by, why=engine.budget.tripped)
        for worker in list(self.report.workers):
            if worker.lost is not None and worker.info.pid not in seen["lost"]:
                seen["lost"].add(worker.info.pid)
                self.events.add("worker_lost", node=worker.info.node, pid=worker.info.pid, why=worker.lost)
        for batch, (before, now, entry) in self._batch_phases().items():
            if before == now:
                continue
            seen["batches"][batch] = now
            requests = {"batch": batch, "stage": entry.stage, "requests": len(entry.custom_ids)}
            if before == "planned":
                self.events.add("batch_submitted", provider_id=entry.provider_id, **requests)
            if now == "ended":
                self.events.add("batch_ended", state=entry.final or entry.status, **requests)

    def _batch_phases(self) -> dict[str, tuple[str, str, Any]]:
        """Each provider batch of the run (its report): its phase at the last look and now (planned, submitted,
        ended)."""
        out = {}
        for entry in self._batches():
            now = "ended" if entry.collected else ("submitted" if entry.provider_id else "planned")
            out[entry.local_id] = (self._seen["batches"].get(entry.local_id, "planned"), now, entry)
        return out

    def end(self, status: str) -> None:
        """The stage has ended with `status`: the figures file written a last time (its final values)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.ended = status
        try:
            self._write()
        except OSError as err:
            log.warning("warning: cannot write %s: %s", self.path, err.strerror or err)
        self.events.add("ended", status=status, records=self.records)
        self.events.close()
