"""How a request asks its provider to cache the part of its prompt that repeats across calls.

The adapter that formats a prompt knows which part of it repeats (refed_dspy.adapters.layout) and says so for the
call it makes (`asking_to_cache`); the LM's HTTP transport (`PromptCacheTransport`, which build_lm puts under an LM whose
provider caches on request) rewrites the request's body as its provider takes such a request
(`Provider.cache_request`: Anthropic's `cache_control` marks, OpenAI's `prompt_cache_key`). Below DSPy's own cache,
whose key is therefore the same with prompt caching on or off: a resumed run finds its answers either way.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from dspy._vendor.lm15.transports import TransportRequest

from refed_dspy.providers.base import Provider, StablePrompt

# the repeated part of the prompt of the call made here (set by the adapter around its LM call)
_stable: contextvars.ContextVar[StablePrompt | None] = contextvars.ContextVar("refed_stable_prompt", default=None)


@contextlib.contextmanager
def asking_to_cache(stable: StablePrompt | None) -> Iterator[None]:
    """The LM calls made in this block have a prompt whose repeated part is `stable` (None: none known)."""
    token = _stable.set(stable)
    try:
        yield
    finally:
        _stable.reset(token)


def current_stable() -> StablePrompt | None:
    """The repeated part of the prompt of the call made here, as its adapter said (None: none known)."""
    return _stable.get()


@dataclasses.dataclass(slots=True)
class CacheAskingRequest(TransportRequest):
    """A request whose body asks the provider to cache its prompt; `asked` is its body before that: what it asks
    for (a batch's custom ids are made from it, so that a request sent with or without the cache's instructions is
    the same request, and a resumed run finds its answer either way)."""

    asked: bytes = b""


def asked_body(request: Any) -> bytes:
    """The body of `request` without what asks the provider to cache its prompt."""
    return getattr(request, "asked", None) or request.body


class PromptCacheTransport:
    """An lm15 HTTP transport (sync or async, as `inner` is) that sends each chat request of `provider`'s format with
    the body `provider.cache_request` makes of it for the call under way (`current_stable`); other requests (a batch
    API's, a body that is not JSON) go as they are."""

    def __init__(self, inner: Any, provider: Provider):
        self.inner = inner
        self.provider = provider
        self.path = provider.wire.path if provider.wire is not None else ""

    def rewrite(self, request: Any) -> Any:
        """`request` as it is sent: its body asking for the prompt cache (the same request when nothing changes)."""
        stable = current_stable()
        if stable is None or request.method != "POST" or not request.url.split("?")[0].endswith(self.path):
            return request
        try:
            body = json.loads(request.body)
        except (TypeError, ValueError):
            return request
        if not isinstance(body, dict):
            return request
        new = self.provider.cache_request(body, stable)
        if new is body:
            return request
        fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(TransportRequest)}
        return CacheAskingRequest(**{**fields, "body": json.dumps(new).encode()}, asked=request.body)

    def stream(self, request: Any) -> Any:
        return self.inner.stream(self.rewrite(request))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    def copy(self) -> PromptCacheTransport:
        """A fresh transport of the same kind (lm15 asks for one when the original was closed)."""
        return PromptCacheTransport(self.inner.copy(), self.provider)

    def __getattr__(self, name: str) -> Any:  # what else lm15 asks of its transport (max_connections, copy, ...)
        return getattr(self.inner, name)
