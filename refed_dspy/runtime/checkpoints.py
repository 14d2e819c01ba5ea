"""The points of a run where the process may die and a resume must still pay for nothing twice and lose nothing.

`checkpoint(name, stage)` marks each where it is passed; it calls the HOOKS, and there are none but in a test. The kill
tests add one that stops the process with SIGKILL at a point of their choosing, as a crash or `kill -9` would
(tests/crash_at), so that what a resume must find is known exactly instead of hoped for from a kill at some moment.

Online (every LM-bound command):
- `answer_paid`: a call the provider answered (not the cache) is over: its answer is in the run's cache and its
  request settled in the write-ahead log; `stage` is the call's stage (generate, improve, judge...).
- `before_record`: a piece of work the engine ran is over, each of its calls answered; what it produced is not
  written yet; `stage` is the kind of work (feedback, unit, sample, judge).

A provider's batch, in batch mode (`stage`: the stage of the batch's calls): `before_upload`, `after_upload`,
`after_create`, `while_polling`, `while_writing_results`.
"""

from __future__ import annotations

from collections.abc import Callable

ONLINE = ("answer_paid", "before_record")
BATCH = ("before_upload", "after_upload", "after_create", "while_polling", "while_writing_results")
CHECKPOINTS = ONLINE + BATCH


HOOKS: list[Callable[[str, str], None]] = []  # called with (name, stage) at each point passed


def checkpoint(name: str, stage: str = "") -> None:
    """The run passed the point `name` (one of CHECKPOINTS) with work or calls of `stage`."""
    for hook in HOOKS:
        hook(name, stage)
