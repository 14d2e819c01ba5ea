"""The tasks that finished since the engine's loop last looked, and the wake-up that lets it look again."""

from __future__ import annotations

import asyncio
from collections import deque


class DoneQueue:
    """`add` is each task's done callback; `wake` lets a waiting `wait` return (a task finished, or the batch broker
    has news); `wait` returns what finished since the last call, waiting up to `timeout` (None: until one does)."""

    def __init__(self) -> None:
        self._done: deque[asyncio.Task] = deque()
        self._wake: asyncio.Future | None = None

    def add(self, task: asyncio.Task) -> None:
        self._done.append(task)
        self.wake()

    def wake(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def wait(self, timeout: float | None) -> list[asyncio.Task]:
        if not self._done:
            loop = asyncio.get_running_loop()
            self._wake = wake = loop.create_future()
            timer = (
                loop.call_later(timeout, lambda: wake.done() or wake.set_result(None)) if timeout is not None else None
            )
            try:
                await wake
            finally:
                self._wake = None
                if timer is not None:
                    timer.cancel()
        done = list(self._done)
        self._done.clear()
        return done
