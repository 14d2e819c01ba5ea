"""A local model server still generating is not cut off by the client's timeout.

A llama.cpp server sends nothing of a (non-streamed) reply until it has written all of it: on a slow CPU a reply of
512 tokens can take longer than any fixed timeout, and a call cut off there throws away the generation and sends it
again. For an endpoint on the user's own machine or network, the timeout (`teacher.timeout`, `judge.timeout`) is
therefore the time the server went without generating, not the time since the request went out: while the request
waits, the server's slots (llama.cpp's `GET /slots`: each slot's task and tokens decoded) are read every `POLL_S`
seconds, and any change there (this request's tokens, or those of the requests it queues behind) counts as work. A
server that holds the request and generates nothing is cut off after the timeout as before (a read timeout: the call
reached it and is counted as paid); one that does not report its slots (vLLM, Ollama) is cut off after the timeout
from the start, as before. `CEILING_S` bounds a reply however busy the server stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
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


def _slots_state(origin: str) -> str | None:
    """What the server at `origin` reports its slots doing (their tasks, tokens decoded, prompt progress), as text to
    compare; None when it does not say (no /slots, an error, a reply that is not a list of slots)."""
    try:
        with urllib.request.urlopen(f"{origin}/slots", timeout=SLOTS_READ_S) as resp:
            slots = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    if not isinstance(slots, list):
        return None
    keys = ("id", "id_task", "is_processing", "next_token", "n_past", "n_prompt_tokens_processed")
    return json.dumps([{k: s.get(k) for k in keys} for s in slots if isinstance(s, dict)], sort_keys=True)


class GenerationWatch:
    """An lm15 async HTTP transport to a local server (`inner`, the one lm15 would use) whose requests are cut off
    after `idle_s` seconds in which the server generated nothing (see the module), not `idle_s` after they went out."""

    def __init__(self, inner: Any, idle_s: float, poll_s: float = POLL_S, ceiling_s: float = CEILING_S):
        self.inner, self.idle_s, self.poll_s, self.ceiling_s = inner, idle_s, poll_s, ceiling_s
        self._silent: set[str] = set()  # servers that do not report their slots: the plain timeout
        self._reporting: set[str] = set()  # servers whose slots were read

    def stream(self, request: Any) -> _Watched:
        return _Watched(self, request)

    async def wait(self, task: asyncio.Future, origin: str) -> None:
        """Until `task` (the request, up to its reply's headers) is done; ReadTimeout once the server at `origin`
        went `idle_s` seconds without generating (a server that does not report its slots: `idle_s` from the start)."""
        loop = asyncio.get_running_loop()
        quiet_since, last = loop.time(), None
        while True:
            left = quiet_since + self.idle_s - loop.time()
            if left <= 0:
                said = "generated nothing" if origin in self._reporting else "does not report its slots"
                raise ReadTimeout(f"no reply from {origin} for {self.idle_s:g}s, and it {said} meanwhile")
            watching = origin not in self._silent
            done, _ = await asyncio.wait({task}, timeout=min(self.poll_s, left) if watching else left)
            if done:
                return
            if not watching:
                continue
            seen = await asyncio.to_thread(_slots_state, origin)
            if seen is None:
                self._silent.add(origin)  # from here on, the plain timeout
            elif seen != last:
                self._reporting.add(origin)
                last, quiet_since = seen, loop.time()

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
