"""Run a coroutine to completion from synchronous code, also where an event loop is already running.

Jupyter and IPython run their cells inside an event loop, where `asyncio.run` refuses to start. There the
coroutine runs on its own loop in a worker thread (with the caller's context variables), and the caller waits.
An interrupt of the caller (the notebook's stop button) cancels the coroutine as Ctrl-C would, waits for it to
wind down, and is raised again.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def in_running_loop() -> bool:
    """True when called from code that an event loop is running (a notebook cell, an async framework)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, or, inside a running event loop, the same on a loop of its own in a worker thread."""
    if not in_running_loop():
        return asyncio.run(coro)
    box: dict[str, Any] = {}
    started = threading.Event()

    async def main() -> T:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await coro

    def target() -> None:
        try:
            box["result"] = asyncio.run(main())
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err
        finally:
            started.set()

    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(target,), name="refed-sync", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        started.wait()
        loop, task = box.get("loop"), box.get("task")
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)
        thread.join()
        raise
    if "error" in box:
        err = box["error"]
        if isinstance(err, asyncio.CancelledError):
            raise KeyboardInterrupt from None
        raise err
    return box["result"]
