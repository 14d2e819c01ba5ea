"""LMs by role, built from config (`build_lm`), and their prices.

`RefedLM` is DSPy's LM behind refed's call boundary (refed_dspy.clients.boundary).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import dspy
from dspy._vendor.lm15.transports import StdlibAsyncTransport, StdlibTransport

from refed_dspy.clients.boundary import CallBoundary
from refed_dspy.clients.endpoints import EndpointSpread, fit_api_base
from refed_dspy.clients.prompt_cache import PromptCacheTransport
from refed_dspy.config.lm import CLIENT_REACH, LMSpec, PriceBook, price_of
from refed_dspy.errors import ConfigError
from refed_dspy.providers.base import Provider
from refed_dspy.providers.keys import check_key
from refed_dspy.providers.prices import Price
from refed_dspy.providers.registry import provider_for

log = logging.getLogger(__name__)
# dspy 3.4's built-in client (lm15 transports, DEFAULT_MAX_CONNECTIONS): the pool of an LM that build_lm
# cannot give its own wider engine (models DSPy serves through LiteLLM)
CLIENT_MAX_CONNECTIONS = 100


class RefedLM(CallBoundary, dspy.LM):
    """The dspy.LM that build_lm makes: DSPy's LM behind refed's call boundary."""


class LoopEngines:
    """An async engine for each event loop that calls it, each made by `make`: an lm15 engine's connection pool is
    confined to the loop that made it, and an LM whose calls come from several loops (an optimization's threads, each
    running its own; a notebook's) needs one each, as DSPy's own LMs have. The engines of loops that have closed are
    let go as a new one is made. `config`: the lm15 RouterConfig each is made with (its endpoint, key and pool)."""

    def __init__(self, make: Callable[[], Any], config: Any):
        self._make, self.config = make, config
        self._engines: dict[asyncio.AbstractEventLoop, Any] = {}
        self._lock = threading.Lock()

    def here(self) -> Any:
        """The engine of the running event loop, made on its first call."""
        loop = asyncio.get_running_loop()
        with self._lock:
            engine = self._engines.get(loop)
            if engine is None:
                for closed in [other for other in self._engines if other.is_closed()]:
                    del self._engines[closed]
                engine = self._engines[loop] = self._make()
            return engine

    async def complete(self, request: Any) -> Any:
        return await self.here().complete(request)

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        async for event in self.here().stream(request):
            yield event

    async def aclose(self) -> None:
        """Close the running loop's engine (the others close with their loops)."""
        with self._lock:
            engine = self._engines.pop(asyncio.get_running_loop(), None)
        if engine is not None:
            await engine.aclose()


def _wide_engines(
    lm: dspy.LM, max_connections: int, wrap: Callable[[Any], Any] | None = None, cache: Provider | None = None
) -> tuple[Any, Any] | None:
    """DSPy's own native (lm15) engines for `lm`, built as DSPy would but with a connection pool of
    `max_connections` (DSPy's is fixed at 100 per LM), the async one for each event loop that calls it (LoopEngines);
    `wrap` turns the async engine's HTTP transport into the one it uses (batch mode, several endpoints: one engine, on
    the loop of the run that made it); `cache`: their requests ask that provider to cache their prompts' repeated
    part. None when DSPy would not use its native engine for this model (LiteLLM fallback, declared providers): then
    the LM keeps DSPy's choice."""
    try:
        from dspy.clients.backend_selection import select_backend
        from dspy.clients.engines.lm15_engine import AsyncLM15Engine, LM15Engine, timeouts_for
        from dspy.lm15 import RouterConfig

        sel = select_backend(lm, {})
        if not sel.native or sel.resolution is None or getattr(sel.resolution, "declared", False):
            return None
        provider, clients = sel.resolution.provider, sel.clients
        url = clients.get("api_base") or clients.get("base_url")
        common = dict(
            api_keys={provider: clients["api_key"]} if "api_key" in clients else None,
            base_urls={provider: url} if url else None,
        )
        config = RouterConfig(**common, timeouts=timeouts_for(clients.get("timeout")), max_connections=max_connections)

        def asking(engine: Any, own: type) -> Any:
            return _ask_to_cache(engine, own, cache) if cache is not None else engine

        sync_engine = asking(LM15Engine(config, model_type=lm.model_type), StdlibTransport)
        if wrap is not None:
            wrapped = RouterConfig(**common, transport=wrap(StdlibAsyncTransport(**config.transport_kwargs())))
            return sync_engine, asking(AsyncLM15Engine(wrapped, model_type=lm.model_type), StdlibAsyncTransport)
        return sync_engine, LoopEngines(
            lambda: asking(AsyncLM15Engine(config, model_type=lm.model_type), StdlibAsyncTransport), config
        )
    except Exception:  # noqa: BLE001 - DSPy internals moved: keep DSPy's own engine choice
        return None


def _ask_to_cache(engine: Any, own: type, cache: Provider) -> Any:
    """`engine` (an lm15 engine _wide_engines made) with its HTTP transport under a PromptCacheTransport for `cache`'s
    requests. lm15 takes a transport of one's own only in place of its config's pool settings, so a router's own is
    set here (built as the router would build it, of class `own`); where lm15 keeps it elsewhere, the requests go as
    they are."""
    router = getattr(engine, "router", None)
    if router is not None and hasattr(router, "_transport"):
        inner = router._transport if router._transport is not None else own(**router.config.transport_kwargs())
        router._transport = PromptCacheTransport(inner, cache)
    return engine


def cache_provider(spec: LMSpec, provider: Provider) -> Provider | None:
    """The provider whose requests ask it to cache their prompts' repeated part, for an LM built from `spec` whose
    model `provider` serves (None: `prompt_cache = false`, or a provider that caches on no request's word)."""
    return provider if spec.prompt_cache and provider.caches_on_request else None


def build_lm(
    spec: LMSpec,
    role: str = "teacher",
    num_retries: int | None = None,
    max_connections: int | None = None,
    wrap: Callable[[Any], Any] | None = None,
) -> RefedLM:
    """Build the LM for one role. Reads the key from the environment; never stores it elsewhere.

    `num_retries` overrides spec.num_retries for DSPy's own retries (the synthesis runner passes 0:
    it retries itself, with an adaptive window). `max_connections` (synthesis and judging pass their
    concurrency) gives the LM its own engine with a pool that wide, where DSPy's native engine serves
    the model; it also skips DSPy's per-call engine selection. Where it cannot, and the pool asked for
    is wider than DSPy's, a warning says that the calls beyond DSPy's pool will wait. `wrap` (a function of the
    HTTP transport returning another) carries the LM's async calls another way (provider batches: to their API).
    Several `spec.api_base` endpoints are reached through an EndpointSpread (refed_dspy.clients.endpoints),
    kept on the LM as `endpoint_spread`. A model DSPy does not serve natively can take neither (ConfigError).
    `api_base` is taken as LiteLLM takes it for the model's provider (refed_dspy.clients.endpoints). Where the model's
    provider caches prompts on a request's word and `spec.prompt_cache` is on, the LM has engines of its own whatever
    it is built for (an optimization's LMs, an experiment's, a metric's judge), and they ask it to cache each prompt's
    repeated part (refed_dspy.clients.prompt_cache); the async one is made for each event loop that calls the LM.
    """
    # a section made in Python, or copied, was not checked as a config is: lm_kwargs checks what DSPy is asked
    kwargs = spec.lm_kwargs(num_retries, role=role)
    key = check_key(spec, role)
    if key is None and spec.api_base:
        key = "unused"  # OpenAI-compatible clients insist on some key
    if key is not None:
        kwargs["api_key"] = key
    provider = provider_for(spec.model)
    spread = None
    if len(spec.endpoints) > 1 and wrap is None:
        # several endpoints need DSPy's own client: each is given the form it takes (Provider.native_base)
        spread = EndpointSpread([provider.native_base(url) for url in spec.endpoints])
        wrap = spread.wrap
    lm = fit_api_base(_made(spec, role, kwargs))  # api_base in the client's form
    cache = cache_provider(spec, provider)
    if max_connections is None and wrap is None and cache is None:
        return lm
    engines = _wide_engines(lm, max_connections or CLIENT_MAX_CONNECTIONS, wrap, cache)
    if engines is None and wrap is not None:
        what = "several api_base endpoints" if spread is not None else "batch mode"
        raise ConfigError(
            f"{role}: {what} cannot carry the calls of '{spec.model}' (DSPy does not serve it with its "
            'own client); give one api_base and use mode = "online"'
        )
    if engines is None:
        if max_connections is not None and max_connections > CLIENT_MAX_CONNECTIONS:
            log.warning(
                "%s: %d calls in flight, but DSPy's HTTP client holds at most %d connections for '%s'; "
                "the calls beyond that wait in its pool",
                role,
                max_connections,
                CLIENT_MAX_CONNECTIONS,
                spec.model,
            )
        return lm
    # the engines carry the endpoint, its timeout and the key
    wide = _made(spec, role, _on_engines(kwargs, engines))
    wide.endpoint_spread = spread
    return wide


def _on_engines(kwargs: dict[str, Any], engines: tuple[Any, Any]) -> dict[str, Any]:
    """An LM's keyword arguments `kwargs` for the same LM on `engines` (sync, async), which carry its endpoint, its
    timeout and its key: without what its client is told to reach the endpoint (CLIENT_REACH), with the engines."""
    kept = {k: v for k, v in kwargs.items() if k not in CLIENT_REACH}
    return {**kept, "engine": engines[0], "async_engine": engines[1]}


def _made(spec: LMSpec, role: str, kwargs: dict[str, Any]) -> RefedLM:
    """The RefedLM of `spec` for `role` from its keyword arguments (ConfigError where DSPy refuses them), knowing what it
    was built from, with DSPy's retries made by the call boundary so that each request is counted."""
    try:
        lm = RefedLM(**kwargs)
    except (ValueError, TypeError, dspy.utils.exceptions.LMConfigurationError) as err:
        raise ConfigError(f"{role}: cannot build an LM for model '{spec.model}': {err}") from None
    lm.role = role
    lm.refed_spec = spec  # its provenance is the config's (refed_dspy.synthesis.program)
    lm.flex_fallback = spec.flex_fallback
    lm.take_retries()
    return lm


def stage_lm(spec: LMSpec, role: str, concurrency: int) -> RefedLM:
    """The LM a stage of `role` builds from its section (synthesis: the teacher; judging: the judge): no DSPy retries
    (the engine retries a failed piece of work, with its adaptive window), and a connection pool as wide as the stage's
    `concurrency`."""
    return build_lm(spec, role, num_retries=0, max_connections=concurrency)


def price_of_lm(lm: Any, prices: PriceBook | None = None) -> Price | None:
    """An LM object's price, by its own model: the spec build_lm made it from, else `prices` ([prices], else
    LiteLLM's map); None when unknown."""
    spec = getattr(lm, "refed_spec", None)
    if spec is not None:
        return price_of(spec)
    return (prices or PriceBook()).of(str(getattr(lm, "model", "")))
