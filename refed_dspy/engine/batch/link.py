"""What the engine does differently when its stage's calls go to provider batches (refed_dspy.engine.batch.broker).

Each start of a piece of work is a new attempt with its own custom_ids (a retry, or the same work asked for again
later), so a stored error answer is never handed back to the attempt that follows it; the broker is told how many
tasks run and wakes the engine's loop when it has news; the loop stops when the broker has detached (every task waits
on a submitted batch) or its provider refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from refed_dspy.engine.batch.broker import in_slot
from refed_dspy.engine.endpoint_check import batch_api_failure
from refed_dspy.engine.failures import Failure


class BatchLink:
    """The engine's side of a BatchBroker."""

    def __init__(self, broker: Any):
        self.broker = broker
        self.starts: Counter = Counter()  # times each piece of work was started (its custom_ids' attempt)

    def begin(self, tasks_running: Callable[[], int], wake: Callable[[], None]) -> None:
        self.broker.tasks_running = tasks_running
        self.broker.on_wake = wake
        self.broker.start()

    def attempt(self, key: str, coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
        """`coro`, the work of `key`, run in the slot of its next attempt."""
        slot = in_slot(coro, key, self.starts[key])
        self.starts[key] += 1
        return slot

    def news(self) -> Failure | str | None:
        """The provider refused (a Failure that aborts the run), the broker detached ('detached'), or neither."""
        error = self.broker.error
        if error is not None:
            return batch_api_failure(str(error), error.status)
        return "detached" if self.broker.detached else None

    async def close(self) -> None:
        await self.broker.close()
