"""The workers of a command run on Ray, in its run dir for `refed status`: written when the run starts, when a worker
is lost, and when it ends (synthesis: workers.json; judging: judge_workers.json)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from refed_dspy.store.jsonl import write_json_atomic

log = logging.getLogger(__name__)


class WorkersNote:
    """`note()` as often as it likes: the file is rewritten only when the number of live workers changed (or, with
    `final=True`, always). `pool`: the run's WorkerPool (None: a run here, which removes the file an earlier
    invocation on Ray left)."""

    def __init__(self, path: Path, pool: Any):
        self.path, self.pool = path, pool
        self._alive: int | None = None

    def note(self, final: bool = False) -> None:
        if self.pool is None:
            self.path.unlink(missing_ok=True)  # an earlier invocation's, on Ray: not this one's
            return
        if self.pool.alive == self._alive and not final:
            return
        self._alive = self.pool.alive
        try:
            write_json_atomic(self.path, self.pool.cluster_figures())
        except OSError as err:  # the summary says the same at the end
            log.warning("cannot write %s: %s", self.path, err.strerror or err)
