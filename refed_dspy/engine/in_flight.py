"""The work a run has under way: each asyncio task with what it holds (its slots of the window, its kind), and the
count of tasks by kind that are running or waiting to be retried. Owned by the engine's one coroutine."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

from refed_dspy.engine.task_accounts import Task


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
