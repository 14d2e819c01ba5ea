"""Coroutines run from synchronous code (`run_sync`), also where an event loop is already running; and concurrent LM
calls awaited so that none outlives its caller (`gather_kept`).

Jupyter and IPython run their cells inside an event loop, where `asyncio.run` refuses to start. There the
coroutine runs on its own loop in a worker thread (with the caller's context variables), and the caller waits.
An interrupt of the caller (the notebook's stop button, Ctrl-C; under `asyncio.run` the cancellation of its main task
that a first Ctrl-C makes) cancels the coroutine as Ctrl-C would, waits for it to wind down, and raises what it
ended with (a run's RunInterrupted, its summary written). `stop_running` does the same to the coroutine running in
the main thread: the `refed` command calls it on SIGTERM and SIGHUP, which thereby stop a run the way Ctrl-C does,
however the process was started.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class StopSignal(KeyboardInterrupt):
    """What a stop signal's handler raises (Ctrl-C, SIGTERM, SIGHUP): a KeyboardInterrupt to every `except`, of its own
    class because CPython ends the process by SIGINT at exit, whatever code main returned, once a bare
    KeyboardInterrupt has left an `eval`/`exec` of a string (pydantic and dataclasses run many while modules import):
    a SIGTERM landing in one during start-up exited -2 instead of 143 (1 run in 10 on a loaded machine)."""


def in_running_loop() -> bool:
    """True when called from code that an event loop is running (a notebook cell, an async framework)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class _Running:
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task
    thread: threading.Thread
    stopping: bool = False


_running: list[_Running] = []  # the coroutines run_sync runs on their own thread's loop, innermost last


async def _tracked(coro: Coroutine[Any, Any, T]) -> T:
    here = threading.current_thread()
    running = _Running(asyncio.get_running_loop(), asyncio.current_task(), here)  # type: ignore[arg-type]
    _running.append(running)
    try:
        return await coro
    finally:
        _running.remove(running)


def stop_running() -> bool:
    """Stop the coroutine `run_sync` is running in the main thread, as asyncio does on Ctrl-C: its task is cancelled
    (a run lets the calls in flight finish, writes its summary and raises KeyboardInterrupt). False when none is
    running there (a coroutine run_sync runs in another thread, such as an estimate's walk asking a local model, is
    not the command's: the main thread then stops as Ctrl-C stops it); a second stop while it winds down raises
    KeyboardInterrupt at once. For a signal handler of the main thread."""
    main = threading.main_thread()
    running = next((one for one in reversed(_running) if one.thread is main), None)
    if running is None:
        return False
    if running.stopping:
        raise StopSignal
    running.stopping = True
    running.task.cancel()
    running.loop.call_soon_threadsafe(lambda: None)  # wake the loop if it waits in select
    return True


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a daemon thread, awaited: the loop stays free, and a stop (the task cancelled) returns at once,
    leaving the thread to end on its own (the process does not wait for it at exit, as it would for the loop's
    default executor)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def target() -> None:
        try:
            value, ok = fn(*args), True
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting task
            value, ok = err, False
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=target, name="refed-off-loop", daemon=True).start()
    return await future


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, or, inside a running event loop, the same on a loop of its own in a worker thread. A stop
    that cancelled the coroutine (`stop_running`) is raised as KeyboardInterrupt, whichever way it ran."""
    if not in_running_loop():
        try:
            return asyncio.run(_tracked(coro))
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
    box: dict[str, Any] = {}
    started, done = threading.Event(), threading.Event()
    outer = asyncio.current_task()  # the caller's task: asyncio.run turns a first Ctrl-C into its cancellation

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
            done.set()

    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(target,), name="refed-sync", daemon=True)
    thread.start()
    try:
        _wait(done, outer, _cancelling(outer))
    except KeyboardInterrupt as stop:
        started.wait()
        loop, task = box.get("loop"), box.get("task")
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)
        _wait(done, None, 0)  # the run winds down (its summary written); a second interrupt here stops the wait
        err = box.get("error")
        if isinstance(err, BaseException) and not isinstance(err, asyncio.CancelledError):
            raise err from None  # the run's own end of it: RunInterrupted with its summary
        raise stop
    if "error" in box:
        err = box["error"]
        if isinstance(err, asyncio.CancelledError):
            raise KeyboardInterrupt from None
        raise err
    return box["result"]


def _wait(done: threading.Event, outer: asyncio.Task | None, asked: int) -> None:
    """Until `done` is set. KeyboardInterrupt once `outer` (the caller's task) is asked to cancel more than the `asked`
    times it was when the run began: under asyncio.run a first Ctrl-C only cancels the main task, which cannot take
    effect while it waits here (a cancellation already under way, code that cleans up after one, is not a stop).
    Waits on an Event, not `Thread.join`: a join a KeyboardInterrupt cut short takes the thread for ended, which left
    a run unfinished."""
    while not done.wait(0.2):
        if _cancelling(outer) > asked:
            raise KeyboardInterrupt


def _cancelling(task: asyncio.Task | None) -> int:
    """How many times `task` is asked to cancel (0 before Python 3.11, which does not count them)."""
    count = getattr(task, "cancelling", None)
    return count() if count is not None else 0


async def gather_kept(
    *aws: Awaitable[Any], fatal: tuple[type[BaseException], ...] = ()
) -> tuple[list[Any], list[Exception]]:
    """Wait for every awaitable; return the results of those that succeeded (in order) and the errors of the rest.

    For a composition that can use part of its work (the samples that came out of a reference): one failed call
    does not throw away its siblings. An error of a `fatal` type (a refused budget), or one that is not an
    Exception (a cancellation), is raised instead.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and (not isinstance(r, Exception) or isinstance(r, fatal)):
            raise r
    return [r for r in results if not isinstance(r, BaseException)], [r for r in results if isinstance(r, Exception)]
