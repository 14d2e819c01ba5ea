"""A run's events: one JSON line per state change its scheduler makes, bounded in size.

`events.jsonl` in the run dir holds what the engine decided and when (the window moved, a piece of work scheduled to
run again, a budget refusal, a Ray worker lost, a provider batch submitted or ended, the run started or ended), each
line with its time, the role whose engine made it and the event's own fields. It is written through the run dir's
masked writer (refed_dspy.store.jsonl), one line at a time, so a reader such as `refed view` follows it while the run
writes it. Bounded: once it holds `max_bytes`, it is moved to `events.1.jsonl` (replacing the one there) and
begun anew, so the two take at most twice `max_bytes` and a line. A file that cannot be written (a full disk) ends the events
(never taking the run dir's reserve, which is the records'): the records' writers say the problem.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import JsonlWriter

log = logging.getLogger(__name__)
EVENTS_FILE = "events.jsonl"
OLDER_EVENTS_FILE = "events.1.jsonl"  # the events before the last rotation
MAX_EVENTS_BYTES = 4 * 1024 * 1024  # of events.jsonl; with events.1.jsonl a run keeps at most twice this


class EventLog:
    """Appends events to `run_dir/events.jsonl` (see the module docstring). Thread-safe."""

    def __init__(self, run_dir: str | Path, role: str, max_bytes: int = MAX_EVENTS_BYTES):
        self.path = Path(run_dir) / EVENTS_FILE
        self.older = Path(run_dir) / OLDER_EVENTS_FILE
        self.role, self.max_bytes = role, max_bytes
        self._writer: JsonlWriter | None = JsonlWriter(self.path, reserve=False)  # the reserve is the records'
        self._lock = threading.Lock()

    def add(self, event: str, **fields: Any) -> None:
        """Append one event (`event`: its kind) with `fields`, stamped with the time and the role."""
        now = time.time()
        line = {
            "at": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
            "t": round(now, 3),
            "role": self.role,
            "event": event,
            **fields,
        }
        with self._lock:
            if self._writer is None:
                return
            try:
                self._rotate_if_full()
                self._writer.append(line)
            except (OSError, RunDirError) as err:
                # said once at debug level: the records' writers say a disk problem in their one line
                log.debug("the run's events stop here: cannot write %s (%s)", self.path, err)
                self._writer.close()
                self._writer = None

    def _rotate_if_full(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size >= self.max_bytes:
            self._writer.close()
            os.replace(self.path, self.older)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
