"""Provider batches as the answers a stage's work waits on: its parts run here (the engine's LocalTransport: the same
DSPy modules, adapter, messages and cache key); the stage's LM is the one `batch_lm` built, whose HTTP layer hands each
request to the broker (refed_dspy.launch.batch.broker). What differs is what the engine asks of its answers
(refed_dspy.engine.execution.Answers), and what the run says of itself:

- each start of a piece of work is an attempt of its own, its calls numbered under its key and attempt (their
  custom_ids), so a stored error answer is never handed back to the attempt that follows it;
- the broker runs beside the engine's loop (`begin`, `end`): told how many tasks run, it wakes the loop when it has
  news, and the loop stops when the broker has detached (every task waits on a submitted batch) or its provider refused;
- the tasks wait outside this process: the window is `[batch] max_in_flight` tasks, no first call is held back, a stop
  lets none finish, and the batch store is the calls' record;
- what it says of itself is its report's (BatchReport: its batches, what the batch price saved);
- the money is the stage's books' (refed_dspy.launch.batch.books): its calls at the batch price, with what the batch
  store holds that no record does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from refed_dspy.config.lm import LMSpec
from refed_dspy.engine.execution import Answers
from refed_dspy.engine.failures import Failure
from refed_dspy.engine.watch import Report
from refed_dspy.launch.batch.broker import BatchBroker, batch_figures, in_slot


def batch_api_failure(message: str, status: int | None) -> Failure:
    """The Failure a provider's batch API error stops the run with: a refused key or no such endpoint are the
    endpoint's (as online), anything else `batch_api`."""
    reason = "auth" if status in (401, 403) else "not_found" if status in (404, 405) else "batch_api"
    return Failure(reason, f"HTTP {status}: {message}" if reason != "batch_api" else message, final=False, fatal=True)


class BatchAnswers(Answers):
    """Answers (refed_dspy.engine.execution.Answers) that wait in a provider's batches, gathered by `broker` (see the
    module docstring). `max_in_flight`: the tasks kept waiting on batches."""

    wait_outside = True

    def __init__(self, broker: BatchBroker, max_in_flight: int):
        self.broker = broker
        self.max_in_flight = max_in_flight
        self.starts: Counter = Counter()  # times each piece of work was started (its custom_ids' attempt)

    def tasks_in_flight(self, window: int) -> int:
        return self.max_in_flight

    def begin(self, tasks_running: Callable[[], int], wake: Callable[[], None]) -> None:
        self.broker.tasks_running = tasks_running
        self.broker.on_wake = wake
        self.broker.start()

    def attempt(
        self, key: str, work: Coroutine[Any, Any, Any], hold: Callable[[float, bool], None]
    ) -> Coroutine[Any, Any, Any]:
        slot = in_slot(work, key, self.starts[key], hold)
        self.starts[key] += 1
        return slot

    def news(self) -> Failure | str | None:
        error = self.broker.error
        if error is not None:
            return batch_api_failure(str(error), error.status)
        return "detached" if self.broker.detached else None

    async def end(self) -> None:
        await self.broker.close()


class BatchReport(Report):
    """What a run in provider batches says of itself (refed_dspy.engine.watch.Report): its batches, and for a summary
    what the batch price (`spec`'s factor) saved."""

    mode = "batch"
    doing = "waiting on batches"

    def __init__(self, broker: BatchBroker, spec: LMSpec, note_path: Path | None = None):
        super().__init__(note_path)
        self.broker = broker
        self.price_factor = spec.batch_price_factor  # the batch price against online

    def figures(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {"batch": batch_figures(self.broker, usage, self.price_factor)}

    def batches(self) -> list[Any]:
        return list(self.broker.store.batches.values())
