"""What `refed view` shows, read from disk and kept up to date: one run dir, a filtered dir (with the run it
came from), or a `refed compare` dir (one run per method). Read-only: nothing here writes a file.

Its live page (`LiveRun`, `Follower`): a run as it works, read from what it writes, looked at again every second by
the page.

A run writes its figures once a second (metrics.json, judge_metrics.json: refed_dspy.engine.watch) and its events as
they happen (events.jsonl); its lock says whether a process still works in it. `LiveRun.figures()` reads them into what
the page shows: the state (running, ended, or stopped: no process holds the dir and the figures never said it ended),
records made and wanted, records a second and the time left, the spend against each budget, the calls in flight and
the window, errors by kind over time (the events' retries and the work given up, in bins), and the last events.

A record file is followed as it grows (`Follower`): only what was appended since the last look is read. A run in
progress appends whole lines; a reader may see a last line still being written, which it leaves for the next look. A
file that shrank or was replaced (`refed repair`, `judge --fresh`) is read again from the start.

Read-only: nothing here writes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refed_dspy.errors import RefedError
from refed_dspy.ledger.usage import Totals, usd_up_to
from refed_dspy.quality.figures import run_references
from refed_dspy.secrets import first_line
from refed_dspy.store.jsonl import complete_records, read_json
from refed_dspy.store.ownership import MARKER, kind_of
from refed_dspy.store.records import count_teachers, mixed_line, teacher_rows
from refed_dspy.store.rundir import RunDir, incomplete_note, record_usage, run_config
from refed_dspy.synthesis.summary import shortfall_cause
from refed_dspy.text.closeness import COPY_THRESHOLD
from refed_dspy.view.evaluation import evaluation_in
from refed_dspy.view.status.experiment import is_experiment_dir
from refed_dspy.view.status.run import live_pid, lock_holder, paid_usage

log = logging.getLogger(__name__)
VERDICTS = {"improved": "win", "draft": "loss", "tie": "tie"}
VIEWABLE = ("run", "filter", "compare", "experiment")  # the kinds of refed directory the viewer shows
MARKS = ("samples.jsonl", "compare.json", "filter_summary.json")  # what such a directory of an older version holds


def is_viewable(path: Path) -> bool:
    """`path` is a directory the viewer shows: a run, filtered, compare or experiment dir, by refed's marker (a run
    that ended with no sample has no samples.jsonl: its rejects are what matter then) or by the files it holds; or an
    evaluation (refed_dspy.view.evaluation.evaluation_in)."""
    return path.is_dir() and (
        kind_of(path) in VIEWABLE or any((path / m).exists() for m in MARKS) or evaluation_in(path) is not None
    )


def run_dirs(root: Path, depth: int) -> list[Path]:
    """The run dirs at most `depth` levels under `root` (a compare dir's methods, an experiment's runs), those that
    hold no sample yet included."""
    found = {p.parent for p in root.glob("**/samples.jsonl") if len(p.relative_to(root).parts) <= depth}
    found |= {
        p.parent
        for p in root.glob(f"**/{MARKER}")
        if len(p.relative_to(root).parts) <= depth and kind_of(p.parent) == "run"
    }
    return sorted(found - {root})


@dataclass
class Row:
    """One sample as the list shows and filters it."""

    id: str
    run: str
    method: str
    reference_id: str
    feature: str
    instruction: str
    score: float | None = None
    verdict: str | None = None  # win | tie | loss (improved vs draft), None when not judged pairwise
    outcome: str | None = None  # kept | removed (a filtered view), None otherwise
    text: str = field(default="", repr=False)  # lower-cased instruction and responses, for search


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _unsettled(usage: dict[str, Any]) -> str:
    """Of a run's paid calls (`usage`, as `paid_usage` gives it), those of unknown tokens: in flight now in the
    invocation under way, lost in flight when an invocation was killed, in batches still open ("" when none)."""
    whys = (
        (int(usage.get("in_flight") or 0), "in flight"),
        (int(usage.get("lost_in_flight") or 0), "lost in flight"),
        (int(usage.get("in_open_batches") or 0), "in batches still open"),
    )
    said = [f"{n} {why}" for n, why in whys if n]
    return f" ({', '.join(said).replace(' ', ' of them ', 1)})" if said else ""


class RunIndex:
    """The records of one run dir, followed as they grow."""

    FILES = ("samples", "judgments", "feedback", "rejects", "judge_rejects", "journal")

    def __init__(self, path: Path, label: str = ""):
        self.rundir = RunDir(path)
        self.label = label
        self.followers = {name: Follower(getattr(self.rundir, name)) for name in self.FILES}
        self.samples: dict[str, dict[str, Any]] = {}
        self.judgments: dict[str, dict[str, Any]] = {}
        self.feedback: dict[str, dict[str, Any]] = {}
        self.rejects: list[dict[str, Any]] = []
        self.judge_rejects: list[dict[str, Any]] = []
        self.journal: list[dict[str, Any]] = []
        self.version = 0  # counts the refreshes that changed something
        self._paid: tuple[Any, str] | None = None  # (what it was computed from, the text)
        self._references: dict[str, tuple[str, str]] | None = None
        self._copy_threshold: float | None = None

    def refresh(self) -> bool:
        """Read what was appended; True when anything changed."""
        changed = False
        for name, follower in self.followers.items():
            rows, restarted = follower.poll()
            if restarted:
                self._clear(name)
            if rows or restarted:
                changed = True
                self._add(name, rows)
        self.version += changed
        return changed

    def paid(self) -> str:
        """Its paid LM calls and their cost as `refed status` counts them: what its records hold, and what its
        write-ahead ledgers say no record holds (calls in flight now, in the invocation under way, or lost in flight
        when an invocation was killed; in batch mode answers a kill cut off and requests of open batches), with the
        most the calls of unknown tokens can cost ("up to")."""
        pid = live_pid(lock_holder(self.rundir.path))  # the invocation under way: its calls are in flight, not lost
        stamp = (self.version, pid, *(_stat(p) for p in (self.rundir.ledger, *self._batch_files())))
        if self._paid is None or self._paid[0] != stamp:
            totals = Totals()
            for name in ("feedback", "journal", "samples", "rejects"):
                held = getattr(self, name)
                for row in held.values() if isinstance(held, dict) else held:
                    totals.add(record_usage(name, row))
            try:
                config = run_config(self.rundir)
            except Exception:  # noqa: BLE001 - without the run's config, a batch run's answers are counted unpriced
                config = None
            try:
                usage = paid_usage(self.rundir, totals, config, pid)
            except RefedError as err:  # a ledger line refed does not write: said, never believed
                self._paid = (stamp, f"paid LM calls not known: {first_line(err)}")
                return self._paid[1]
            bound = usage.get("interrupted_cost_usd")
            text = f"{usage['calls']} paid LM calls{_unsettled(usage)}"
            self._paid = (stamp, f"{text}, {usd_up_to(usage.get('cost_usd'), bound)}")
        return self._paid[1]

    def _batch_files(self) -> tuple[Path, ...]:
        folder = self.rundir.path / "batches"
        return (folder / "journal.jsonl", folder / "results.jsonl")

    def _clear(self, name: str) -> None:
        if name in ("rejects", "judge_rejects"):
            setattr(self, name, [])
        else:
            getattr(self, name).clear()

    def _add(self, name: str, rows: list[dict[str, Any]]) -> None:
        if name == "samples":
            self.samples.update((r["meta"]["id"], r) for r in rows if isinstance(r.get("meta"), dict))
        elif name == "judgments":
            self.judgments.update((r["sample_id"], r) for r in rows if "sample_id" in r)
        elif name == "feedback":
            self.feedback.update((r["reference_id"], r) for r in rows if "reference_id" in r)
        else:
            getattr(self, name).extend(rows)

    def references(self) -> dict[str, tuple[str, str]]:
        """Reference id -> (instruction, response), from the run's seeds ({} when they cannot be read here)."""
        if self._references is None:
            self._references = {}
            try:
                self._references = run_references(self.rundir)
            except Exception as err:  # noqa: BLE001 - the viewer shows the samples without the reference text
                log.warning("reference texts of %s not available: %s", self.rundir.path, err)
        return self._references

    def copy_threshold(self) -> float:
        """The run's quality.copy_threshold (its default when unset, or when the run's config cannot be read here)."""
        if self._copy_threshold is None:
            try:
                self._copy_threshold = run_config(self.rundir).quality.copy_threshold or COPY_THRESHOLD
            except Exception:  # noqa: BLE001 - the page shows the figures against the default
                self._copy_threshold = COPY_THRESHOLD
        return self._copy_threshold

    def summary(self) -> dict[str, Any]:
        return read_json(self.rundir.summary)

    def row(self, sid: str, sample: dict[str, Any]) -> Row:
        meta = sample["meta"]
        judgment = self.judgments.get(sid) or {}
        point, pair = judgment.get("pointwise") or {}, judgment.get("pairwise") or {}
        text = "\n".join(
            (sample.get("instruction") or "", sample.get("response") or "", sample.get("improved_response") or "")
        )
        return Row(
            id=sid,
            run=self.label,
            method=meta.get("method", ""),
            reference_id=meta.get("reference_id", ""),
            feature=meta.get("feature", ""),
            instruction=sample.get("instruction") or "",
            score=point.get("overall"),
            verdict=VERDICTS.get(pair.get("winner")),
            text=text.lower(),
        )


@dataclass
class Filters:
    """The list's filters, all optional."""

    q: str = ""
    reference: str = ""
    feature: str = ""
    method: str = ""
    verdict: str = ""
    outcome: str = ""
    score_min: float | None = None
    score_max: float | None = None

    def keep(self, row: Row) -> bool:
        if self.reference and row.reference_id != self.reference:
            return False
        if self.feature and row.feature != self.feature:
            return False
        if self.method and row.method != self.method:
            return False
        if self.verdict and (row.verdict or "unjudged") != self.verdict:
            return False
        if self.outcome and row.outcome != self.outcome:
            return False
        if self.score_min is not None and (row.score is None or row.score < self.score_min):
            return False
        if self.score_max is not None and (row.score is None or row.score > self.score_max):
            return False
        return all(term in row.text for term in self.q.lower().split())


class View:
    """The directory `refed view` was pointed at, as runs and rows; safe to use from the server's threads."""

    def __init__(self, path: str | Path, filtered: str | Path | None = None):
        self.path = Path(path)
        self.filtered: Path | None = Path(filtered) if filtered else None
        if (self.path / "filter_summary.json").is_file() and self.filtered is None:
            self.filtered = self.path
            source = read_json(self.path / "filter_summary.json").get("source_run")
            self.path = Path(source) if source else self.path
        if is_experiment_dir(self.path):
            # the runs an experiment made: its examples, and each synthesis check (a cell's, a baseline's)
            self.kind = "experiment"
            self.runs = [RunIndex(d, str(d.relative_to(self.path))) for d in run_dirs(self.path, 4)]
        elif (evaluation := evaluation_in(self.path)) is not None:  # its own pages (refed_dspy.view.evaluation)
            self.kind, self.path, self.runs = "evaluation", evaluation, []
        elif (self.path / "compare.json").is_file():
            self.kind = "compare"
            self.runs = [RunIndex(d, d.name) for d in run_dirs(self.path, 2)]
        else:
            self.kind = "run"
            self.runs = [RunIndex(self.path)]
        # a run dir's live page: the run as it works (refed_dspy.view.index)
        self.live = LiveRun(self.path) if self.kind == "run" else None
        self.outcomes: dict[str, tuple[str, str]] = {}
        self._filter_followers = (
            {"kept": Follower(self.filtered / "samples.jsonl"), "removed": Follower(self.filtered / "rejects.jsonl")}
            if self.filtered
            else {}
        )
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Take in what was written since the last look (a run in progress grows between two page loads)."""
        with self._lock:
            changed = False
            for run in self.runs:
                changed |= run.refresh()
            for outcome, follower in self._filter_followers.items():
                rows, restarted = follower.poll()
                if restarted:
                    self.outcomes = {k: v for k, v in self.outcomes.items() if v[0] != outcome}
                for r in rows:
                    sid = r["meta"]["id"] if outcome == "kept" else r.get("item_id")
                    if sid:
                        self.outcomes[sid] = (outcome, "" if outcome == "kept" else r.get("reason", ""))
                changed |= bool(rows) or restarted
            if changed or not self._rows:
                rows = []
                for run in self.runs:
                    for sid, sample in run.samples.items():
                        row = run.row(sid, sample)
                        row.outcome = self.outcomes.get(sid, (None, ""))[0] if self.filtered else None
                        rows.append(row)
                self._rows = rows

    @property
    def rows(self) -> list[Row]:
        return self._rows

    def choices(self) -> dict[str, list[str]]:
        """The values each filter can take, for the filter menus.

        Returns:
            Filter name (reference, feature, method, verdict, outcome) -> its values, sorted; outcome's are empty
                unless a filtered dir is shown.
        """
        rows = self._rows
        return {
            "reference": sorted({r.reference_id for r in rows}),
            "feature": sorted({r.feature for r in rows}),
            "method": sorted({r.method for r in rows}),
            "verdict": ["win", "tie", "loss", "unjudged"],
            "outcome": ["kept", "removed"] if self.filtered else [],
        }

    def find(self, sid: str) -> tuple[RunIndex, dict[str, Any]] | None:
        for run in self.runs:
            if sid in run.samples:
                return run, run.samples[sid]
        return None

    def status(self) -> dict[str, Any]:
        """Header figures: what the directory is, how far its runs got, and whether they are still written.

        Returns:
            The header's fields: path, kind, source, runs, samples, judged, method, teacher, paid (one line per run),
                notes (incomplete or mixed-teacher runs) and live (whether the live page has figures to show).
        """
        notes = [
            f"{run.label + ': ' if run.label else ''}{note}"
            for run in self.runs
            if (note := incomplete_note(run.rundir.path))
        ]
        notes += [  # a run resumed onto another teacher holds samples of each
            f"{run.label + ': ' if run.label else ''}{mixed}"
            for run in self.runs
            if (mixed := mixed_line(teacher_rows(count_teachers(row["meta"] for row in run.samples.values()))))
        ]
        summaries = [run.summary() for run in self.runs]  # a comparison's runs: a method each

        def each(key: str) -> str | None:
            return ", ".join(sorted({str(s[key]) for s in summaries if s.get(key)})) or None

        return {
            "path": str(self.filtered or self.path),
            "kind": "filtered" if self.filtered else self.kind,
            "source": str(self.path),
            "runs": [run.label or run.rundir.path.name for run in self.runs],
            "samples": len(self._rows),
            "judged": sum(len(run.judgments) for run in self.runs),
            "method": each("method"),
            "teacher": each("teacher"),
            "paid": [f"{run.label + ': ' if run.label else ''}{run.paid()}" for run in self.runs],
            "notes": notes,
            "live": self.live is not None and self.live.watched(),
        }

    def empty_note(self) -> str | None:
        """With no sample to list: how each run ended and why (its summary), and where its rejects are; None while
        there are samples.

        Returns:
            The note, or None when there are samples.
        """
        if self._rows:
            return None
        ended = []
        for run in self.runs:
            s = run.summary()
            if s:
                why = "; ".join(filter(None, (s.get("exhausted") or s.get("budget_stop"), shortfall_cause(s))))
                ended.append(
                    f"{run.label + ' ' if run.label else ''}ended {s.get('status')} with {s.get('samples', 0)} of "
                    f"{s.get('size')} samples{': ' + why if why else ''}"
                )
        rejects = sum(len(run.rejects) + len(run.judge_rejects) for run in self.runs)
        told = "; ".join(ended) or "no run has finished yet"
        return f"No samples: {told}. Its {rejects} rejects keep what the model returned:"

    def reject_groups(self) -> list[dict[str, Any]]:
        """Synthesis and judge rejects grouped by stage and reason, largest group first.

        Returns:
            One dict per group: stage, reason, count, and items (its reject rows, each with its run's label).
        """
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for run in self.runs:
            for r in run.rejects:
                groups.setdefault((r.get("stage", "?"), r.get("reason", "?")), []).append({**r, "run": run.label})
            for r in run.judge_rejects:
                groups.setdefault(("judge", r.get("reason", "?")), []).append(
                    {**r, "run": run.label, "item_id": r.get("sample_id")}
                )
        return [
            {"stage": stage, "reason": reason, "count": len(items), "items": items}
            for (stage, reason), items in sorted(groups.items(), key=lambda kv: -len(kv[1]))
        ]

    def by_reference(self, reference_id: str) -> dict[str, list[dict[str, Any]]]:
        """Compare view: each run's samples of one reference.

        Args:
            reference_id: the id of the reference whose samples are listed.

        Returns:
            Run label -> that run's samples of the reference, in the order the run holds them.
        """
        return {
            run.label: [s for s in run.samples.values() if s["meta"].get("reference_id") == reference_id]
            for run in self.runs
        }

    def reference_counts(self) -> Counter:
        return Counter(r.reference_id for r in self._rows)


KEPT_EVENTS = 5000  # the latest events a page keeps in memory (the file holds up to 4 MiB of them)
SHOWN_EVENTS = 12
BINS = 30  # of the errors chart
ERRORS = ("retry", "gave_up")  # the events that are errors, by their reason


class LiveRun:
    """The live figures of one run dir, its events followed as they grow. Thread-safe."""

    def __init__(self, path: str | Path):
        self.rundir = RunDir(path)
        self.events: deque[dict[str, Any]] = deque(maxlen=KEPT_EVENTS)
        self._follower = Follower(self.rundir.events)
        self._lock = threading.Lock()

    def watched(self) -> bool:
        """The run writes what the live page shows (a run made before refed wrote its figures does not)."""
        rd = self.rundir
        return any(p.exists() for p in (rd.metrics, rd.judge_metrics, rd.events))

    def _take_in_events(self) -> None:
        rows, restarted = self._follower.poll()
        if restarted:  # rotated, or a fresh run: what the file holds now
            self.events.clear()
        self.events.extend(rows)

    def figures(self) -> dict[str, Any]:
        """What the live page shows now (see the module docstring)."""
        with self._lock:
            self._take_in_events()
            events = list(self.events)
        docs = [d for d in (read_json(self.rundir.metrics), read_json(self.rundir.judge_metrics)) if d]
        doc = max(docs, key=lambda d: d.get("written_at") or "", default={})  # the stage written last
        holder = lock_holder(self.rundir.path)
        state = "ended" if doc.get("ended") else ("running" if holder is not None else "stopped")
        return {
            "state": state,
            "status": doc.get("status"),
            "role": doc.get("role"),
            "what": "judgments" if doc.get("role") == "judge" else "samples",
            "written_at": doc.get("written_at"),
            "records": doc.get("records", 0),
            "target": doc.get("target"),
            "records_per_s": doc.get("records_per_s"),
            "eta_s": doc.get("eta_s"),
            "spend": [
                {"budget": name, "spent": b.get("spent"), "limit": b.get("limit")}
                for name, b in sorted((doc.get("budgets") or {}).items())
            ],
            "in_flight": doc.get("in_flight"),
            "window": doc.get("window"),
            "concurrency": doc.get("concurrency"),
            "errors": errors_over_time(events, time.time() if state == "running" else _last_time(events)),
            "events": [event_line(e) for e in events[-SHOWN_EVENTS:]][::-1],
        }


def _last_time(events: list[dict[str, Any]]) -> float:
    """When the last event happened (now when none has)."""
    return max((e["t"] for e in events if isinstance(e.get("t"), (int, float))), default=time.time())


def errors_over_time(events: list[dict[str, Any]], now: float, bins: int = BINS) -> dict[str, Any]:
    """The error events (retries, work given up) by reason, counted in `bins` bins from the first event to `now`:
    {"start", "width_s", "kinds": {reason: [count per bin]}}."""
    start = min((e["t"] for e in events if isinstance(e.get("t"), (int, float))), default=now)
    width = max(1.0, (now - start) / bins)
    kinds: dict[str, list[int]] = {}
    for e in events:
        if e.get("event") not in ERRORS or not isinstance(e.get("t"), (int, float)):
            continue
        slot = min(bins - 1, int((e["t"] - start) / width))
        kinds.setdefault(str(e.get("reason")), [0] * bins)[slot] += 1
    return {"start": start, "width_s": round(width, 3), "kinds": kinds}


def event_line(event: dict[str, Any]) -> dict[str, str]:
    """One event as the page lists it: its time, its kind and its fields in a few words."""
    skip = {"at", "t", "event"}
    text = ", ".join(f"{k} {v}" for k, v in event.items() if k not in skip and v is not None)
    return {"at": str(event.get("at", ""))[11:19], "event": str(event.get("event", "")), "text": text}


class Follower:
    """The records of one JSONL file; `poll()` returns (new records, whether it started over)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.lines = 0
        self._identity: tuple[int, int] | None = None

    def poll(self) -> tuple[list[dict[str, Any]], bool]:
        try:
            st = os.stat(self.path)
        except OSError:
            restarted = self.offset > 0
            self.offset, self.lines, self._identity = 0, 0, None
            return [], restarted
        restarted = False
        identity = (st.st_dev, st.st_ino)
        if identity != self._identity or st.st_size < self.offset:
            restarted = self.offset > 0 or self._identity is not None
            self.offset, self.lines, self._identity = 0, 0, identity
        if st.st_size == self.offset:
            return [], restarted
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(st.st_size - self.offset)
        # a line still being written waits for the next look
        records, end, lines = complete_records(data, self.path, self.lines)
        self.lines += lines
        self.offset += end
        return records, restarted
