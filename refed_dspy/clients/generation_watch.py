"""A local model server still generating is not cut off by the client's timeout.

A llama.cpp server sends nothing of a (non-streamed) reply until it has written all of it: on a slow CPU a reply of
512 tokens can take longer than any fixed timeout, and a call cut off there throws away the generation and sends it
again. For an endpoint on the user's own machine or network, the timeout (`teacher.timeout`, `judge.timeout`) is
therefore the time the server went without generating, not the time since the request went out: while the request
waits, the server's slots (llama.cpp's `GET /slots`: each slot's task and tokens decoded) are read once every
`POLL_S` seconds per server (however many requests wait, without a proxy), and any change there (this request's
tokens, or those of the requests it queues behind) counts as work; a read the server is too slow to answer changes
nothing. A server that holds the request and generates nothing is cut off after the timeout as before (a read
timeout: the call reached it and is counted as paid); one that has no /slots for us (vLLM, Ollama; 401 without its
key) is cut off after the timeout from the start, as before. `CEILING_S` bounds a reply however busy the server stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from dspy._vendor.lm15.transports import ReadTimeout

from refed_dspy.providers.keys import is_private_host

POLL_S = 1.0  # how often the server's slots are read while a request waits
CEILING_S = 3600.0  # no reply takes longer than this, however long the server goes on generating
SLOTS_READ_S = 2.0  # the slots' own request: a server too busy to say in this long says nothing


def watched_host(url: str | None) -> bool:
    """Whether calls to `url` get the watch: a server on this machine or the user's network."""
    return bool(url) and is_private_host(urlsplit(url).hostname or "")


_NO_SLOTS = "no slots"  # the server says it has no /slots for us (404, 405, 501; 401 or 403: not without its key)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a proxy of the environment is not asked


def _slots_state(origin: str) -> str | None:
    """What the server at `origin` reports its slots doing (their tasks, tokens decoded, prompt progress), as text to
    compare; `_NO_SLOTS` when it says it has none for us; None when it did not say this time (slow, an error)."""
    try:
        with _DIRECT.open(f"{origin}/slots", timeout=SLOTS_READ_S) as resp:
            slots = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return _NO_SLOTS if err.code in (401, 403, 404, 405, 501) else None
    except (OSError, ValueError):
        return None
    if not isinstance(slots, list):
        return _NO_SLOTS
    keys = ("id", "id_task", "is_processing", "next_token", "n_past", "n_prompt_tokens_processed")
    return json.dumps([{k: s.get(k) for k in keys} for s in slots if isinstance(s, dict)], sort_keys=True)


class _Slots:
    """One server's slots as last read, read at most once every `poll_s` seconds however many requests wait on it, in
    a task of its own (a slow read holds up no request)."""

    def __init__(self, origin: str, poll_s: float):
        self.origin, self.poll_s = origin, poll_s
        self.state: str | None = None
        self.changed_at: float | None = None  # when a read last found the slots changed (None: not yet)
        self.silent = False  # the server has no /slots for us: the plain timeout
        self._read_at = float("-inf")
        self._reading: asyncio.Task | None = None

    def refresh(self) -> None:
        """Start a read unless one is under way or the last began less than `poll_s` ago."""
        loop = asyncio.get_running_loop()
        if self.silent or self._reading is not None or loop.time() - self._read_at < self.poll_s:
            return
        self._read_at = loop.time()
        self._reading = loop.create_task(self._read())

    async def latest(self) -> None:
        """Wait for a read begun now (or for the one under way), whatever the last one's age."""
        if self.silent:
            return
        if self._reading is None:
            self._read_at = float("-inf")
            self.refresh()
        if self._reading is not None:
            await asyncio.shield(self._reading)

    async def _read(self) -> None:
        try:
            seen = await asyncio.to_thread(_slots_state, self.origin)
        finally:
            self._reading = None
        if seen == _NO_SLOTS:
            self.silent = True
        elif seen is not None and seen != self.state:
            self.state, self.changed_at = seen, asyncio.get_running_loop().time()


class GenerationWatch:
    """An lm15 async HTTP transport to a local server (`inner`, the one lm15 would use) whose requests are cut off
    after `idle_s` seconds in which the server generated nothing (see the module), not `idle_s` after they went out."""

    def __init__(self, inner: Any, idle_s: float, poll_s: float = POLL_S, ceiling_s: float = CEILING_S):
        self.inner, self.idle_s, self.poll_s, self.ceiling_s = inner, idle_s, poll_s, ceiling_s
        self._servers: dict[str, _Slots] = {}

    def stream(self, request: Any) -> _Watched:
        return _Watched(self, request)

    async def wait(self, task: asyncio.Future, origin: str) -> None:
        """Until `task` (the request, up to its reply's headers) is done; ReadTimeout once the server at `origin`
        went `idle_s` seconds without generating (a server that does not report its slots: `idle_s` from the start)."""
        loop = asyncio.get_running_loop()
        slots = self._servers.setdefault(origin, _Slots(origin, self.poll_s))
        started, checked = loop.time(), None
        while not task.done():
            quiet_since = max(started, slots.changed_at or started)
            left = quiet_since + self.idle_s - loop.time()
            if left <= 0 and checked != quiet_since and not slots.silent:
                checked = quiet_since  # before cutting it off, the slots as they are now
                await slots.latest()
                continue
            if left <= 0:
                said = "did not report its slots" if slots.silent or slots.state is None else "generated nothing"
                raise ReadTimeout(f"no reply from {origin} for {self.idle_s:g}s, and it {said} meanwhile")
            slots.refresh()
            await asyncio.wait({task}, timeout=left if slots.silent else min(self.poll_s, left))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def copy(self) -> GenerationWatch:
        """A fresh transport of the same kind (lm15 asks for one when the original was closed)."""
        return GenerationWatch(self.inner.copy(), self.idle_s, self.poll_s, self.ceiling_s)

    def __getattr__(self, name: str) -> Any:  # what else lm15 asks of its transport (max_connections, pool_stats)
        return getattr(self.inner, name)


class _Watched:
    """One request through a GenerationWatch: `async with` gives the response once its headers came, as lm15's own."""

    def __init__(self, watch: GenerationWatch, request: Any):
        self.watch, self.request = watch, request
        self._inner_cm: Any = None

    async def __aenter__(self) -> Any:
        parts = urlsplit(self.request.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        self._inner_cm = self.watch.inner.stream(dataclasses.replace(self.request, read_timeout=self.watch.ceiling_s))
        task = asyncio.ensure_future(self._inner_cm.__aenter__())
        try:
            await self.watch.wait(task, origin)
        except BaseException:
            task.cancel()  # the connection is closed: the server stops generating for it
            with contextlib.suppress(BaseException):
                await task
            if task.done() and not task.cancelled() and task.exception() is None:
                await self._inner_cm.__aexit__(None, None, None)
            raise
        return task.result()

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner_cm.__aexit__(*exc)
