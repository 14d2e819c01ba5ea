"""The viewer's live page: a run as it works, read from what it writes, looked at again every second by the page.

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

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from refed_dspy.store.jsonl import complete_records, read_json
from refed_dspy.store.rundir import RunDir
from refed_dspy.view.status.run import lock_holder

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
