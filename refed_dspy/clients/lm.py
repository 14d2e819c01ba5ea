"""The LM of a role, built from its config section (`build_lm`) or handed in (`bounded`), its price, and how its
requests reach the wire.

`RefedLM` is DSPy's LM behind refed's call boundary (refed_dspy.clients.boundary). build_lm reads and checks the
section's key (refed_dspy.providers.keys), makes the LM, and gives it engines and HTTP transports of its own wherever
DSPy's own client (lm15) serves its model; `bounded` puts a copy of an LM handed in behind the boundary, on engines of
its own likewise (`on_own_engines`), so that every request of an LM a run holds leaves through refed's transport.

Engines (`wide_engines`): DSPy's own native (lm15) engines built as DSPy would, but with a connection pool as wide as
the stage's concurrency (DSPy's is fixed at 100 an LM; an LM of no stage gets 100), the async one made for each event
loop that calls the LM (`LoopEngines`: an lm15 pool is confined to the loop that made it). A copy or deep copy of the
LM shares them, as DSPy's copies share its pools; a pickle makes them again where it is loaded (`Remake`); a saved
program holds the LM as on DSPy's own client (its endpoint and timeout, no key). Under them, the transports: the one
that sends checks each request's destination (refed_dspy.clients.destination.CheckedTransport); above it, several endpoints of
one model behind one LM (`EndpointSpread`), and a prompt whose repeated part the provider is asked to cache
(`PromptCacheTransport`, by what the adapter said of the call: refed_dspy.clients.prompt_cache).

`EndpointSpread` wraps the LM's HTTP transport: each request, built for the first endpoint, goes to the
healthy endpoint with the most room under its own window (ties: the fewest in flight, then the fewest sent). Each
endpoint's requests are heard at the wire apart (its `RateLimits`, one of the LM's `RateLimits.endpoints`), so a
provider's limit is each endpoint's: the engine's window keeps a window for each (refed_dspy.engine.window), and a
request waits in the spread while every healthy endpoint's is full. An endpoint whose request fails
(no answer: a refused or reset connection, a timeout; or a 5xx) twice in a row is taken out for a cool-down
that doubles with each further failure (up to 60 s); after it, one request probes it, and an answer puts it
back. When every endpoint is out, the one due back first is used. A 429 is the server's way to say "slower",
not a failure: the endpoint's window handles it. Calls and failures are counted per endpoint.

On Ray, where each worker holds its own spread and sees only its own calls, the driver chooses the endpoint of each
task from what is in flight over the whole cluster, and the worker hands the task an LM that prefers it
(`CallBoundary.preferred_endpoint`): a spread takes it while that endpoint is healthy in its own view.

How each LM client is given `api_base` (`fit_api_base`): LiteLLM's form, or the one DSPy's own client
(lm15) expects. LiteLLM takes an `api_base` in its provider's form (`Provider.host_form`: the host, for a provider
whose api_base is its host). DSPy 3.4's own client (lm15) appends less of the path to some providers' bases (only
/messages for Anthropic's), so the same config reached another URL there: it is given the base with the rest of the
path (`Provider.native_path`). A config may write such an api_base either way; `fit_api_base` gives each LM the form of
the client DSPy picks for it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import dspy
from dspy._vendor.lm15.transports import StdlibAsyncTransport, StdlibTransport, TransportRequest
from dspy.clients.engines.lm15_engine import AsyncLM15Engine, LM15Engine, timeouts_for
from dspy.clients.execution import _canonical, prepare
from dspy.lm15 import RouterConfig

from refed_dspy.clients.boundary import CallBoundary, boundary_class, endpoint_asked, stable_under_way
from refed_dspy.clients.destination import CheckedTransport, check_lm_key
from refed_dspy.clients.generation_watch import GenerationWatch, watched_host
from refed_dspy.clients.prompt_cache import CacheAskingRequest
from refed_dspy.clients.rate_limits import RateLimitReader, RateLimits
from refed_dspy.config.lm import CLIENT_REACH, LMSpec, PriceBook, price_of
from refed_dspy.errors import ConfigError
from refed_dspy.providers.base import Provider
from refed_dspy.providers.keys import check_key, environment_endpoint
from refed_dspy.providers.prices import Price
from refed_dspy.providers.registry import provider_for

log = logging.getLogger(__name__)

# dspy 3.4's built-in client (lm15 transports, DEFAULT_MAX_CONNECTIONS): the pool of an LM that build_lm
# cannot give its own wider engine (models DSPy serves through LiteLLM)
CLIENT_MAX_CONNECTIONS = 100
# what a client is told to reach an endpoint (DSPy's NATIVE_CLIENT_KEYS, and Azure's version): an LM's own engines
# hold it instead
_REACH = (*CLIENT_REACH, "base_url")


class RefedLM(CallBoundary, dspy.LM):
    """The dspy.LM that build_lm makes: DSPy's LM behind refed's call boundary, on engines of its own where DSPy's own
    client serves its model (`wide_engines`). `rate_limits`: its requests at the provider and the limits its replies
    state, where the LM has engines of its own (refed_dspy.clients.rate_limits)."""

    rate_limits: RateLimits | None = None


class OwnEngine(LM15Engine):
    """DSPy's lm15 engine as `wide_engines` builds it for an LM: a deep copy of the LM shares it (its connections), as
    DSPy's copies of an LM share its pools; a pickle holds what it was made from (`remake`: None for an engine of batch
    mode or several endpoints, which cannot be pickled)."""

    remake: Remake | None = None

    def __deepcopy__(self, memo: dict) -> OwnEngine:
        return self

    def __reduce__(self) -> tuple:
        return _made_again(self.remake, 0)


def _made_again(remake: Remake | None, which: int) -> tuple:
    """How an engine of an LM's own pickles: as its Remake's (TypeError where it has none)."""
    if remake is None:
        raise TypeError("an LM of batch mode or of several endpoints cannot be pickled: its engines are its run's")
    return (Remake.engine, (remake, which))


class OwnAsyncEngine(AsyncLM15Engine):
    """The async counterpart of OwnEngine, shared by a deep copy of its LM."""

    def __deepcopy__(self, memo: dict) -> OwnAsyncEngine:
        return self


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
    it retries itself, with an adaptive window). An endpoint the environment gives the client (OPENAI_BASE_URL) is
    given to it as the LM's api_base. Where DSPy's own client (lm15) serves the model and carries its settings, the LM
    has engines of its own, with a pool `max_connections` wide (synthesis and judging pass their concurrency; None:
    DSPy's 100), whose transports check each request's destination (refed_dspy.clients.destination.CheckedTransport);
    its endpoint, key and timeout are its engines' then, so a copy of it cannot be given others. Where DSPy serves the
    model through LiteLLM instead, and the pool asked for is wider than DSPy's, a warning says that the calls beyond
    DSPy's pool will wait. `wrap` (a function of the HTTP transport returning another) carries the LM's async calls
    another way (provider batches: to their API).
    Several `spec.api_base` endpoints are reached through an EndpointSpread, kept on the LM as `endpoint_spread`. A
    model DSPy does not serve natively can take neither (ConfigError). `api_base` is given the form of the client DSPy
    picks for the model (`fit_api_base`). Where the model's provider caches prompts on a request's word and
    `spec.prompt_cache` is on, the LM has engines of its own whatever it is built for (an optimization's LMs, an
    experiment's, a metric's judge), and they ask it to cache each prompt's repeated part (PromptCacheTransport); the
    async one is made for each event loop that calls the LM. Where the LM has engines of its own and its endpoints are
    on the user's machine or network, the async one does not cut off a reply the server is still writing
    (refed_dspy.clients.generation_watch).

    Args:
        spec: the role's section of the config.
        role: the role ('teacher' or 'judge'): its defaults apply, and messages name it.
        num_retries: DSPy's retries, instead of spec.num_retries; None for the section's.
        max_connections: the width of the connection pool of the LM's own engine; None for DSPy's.
        wrap: a function of the HTTP transport returning another, for the LM's async calls; None for none.

    Returns:
        The RefedLM, on engines of its own where it needs them.

    Raises:
        ConfigError: `spec` is not an LMSpec, the tier, `extra` or the endpoints do not fit the model, or DSPy refuses
            the arguments.
        MissingKeyError, KeyProviderError: the key's variable is unset, or the key would reach another provider.
    """
    problem = _section_problem(spec, role)
    if problem is not None:
        raise ConfigError(problem)
    kwargs = spec.lm_kwargs(num_retries, role=role)
    key = check_key(spec, role)
    provider = provider_for(spec.model)
    if not spec.api_base and (given := spec.reached_api_base) is not None:
        kwargs["api_base"] = given  # said to the client, not left for LiteLLM to read (the key's check read it too)
    if key is None and kwargs.get("api_base"):
        key = "unused"  # OpenAI-compatible clients insist on some key
    if key is not None:
        kwargs["api_key"] = key
    spread = None
    if len(spec.endpoints) > 1 and wrap is None:
        # several endpoints need DSPy's own client: each is given the form it takes (Provider.native_base)
        spread = EndpointSpread([provider.native_base(url) for url in spec.endpoints])
        wrap = spread.wrap
    lm = _made(spec, role, kwargs)
    cache = cache_provider(spec, provider)
    fit_api_base(lm, own_engines=True)  # api_base in the form of the client its engines will be
    limits = RateLimits({state.url: state.limits for state in spread.states} if spread is not None else None)
    engines = wide_engines(lm, max_connections or CLIENT_MAX_CONNECTIONS, wrap, cache, generation_watch(spec), limits)
    if engines is None and wrap is not None:
        what = "several api_base endpoints" if spread is not None else "batch mode"
        raise ConfigError(
            f"{role}: {what} cannot carry the calls of '{spec.model}' (DSPy does not serve it with its "
            'own client); give one api_base and use mode = "online"'
        )
    if engines is None:
        _warn_of_a_narrow_pool(role, max_connections, spec.model)
        return lm
    # the engines carry the endpoint, its timeout and the key
    wide = _made(spec, role, _on_engines(kwargs, engines))
    wide.client_reach = _recorded_reach(lm.kwargs)
    wide.endpoint_spread = spread
    wide.rate_limits = limits
    return wide


def _section_problem(spec: Any, role: str) -> str | None:
    """What is wrong with `spec` as a section to build an LM from: it is no LMSpec (a model name, as dspy.LM takes
    one, is the likeliest), or its tier does not fit (a section made in Python, or copied, was not checked as a
    config is)."""
    if not isinstance(spec, LMSpec):
        name = type(spec).__name__
        return f"build_lm takes a section of the config (config.teacher, or LMSpec(model=...)), got {name} {str(spec)[:80]!r}"
    return spec.tier_problem(role)


def _warn_of_a_narrow_pool(role: str, max_connections: int | None, model: str) -> None:
    """Say that the calls beyond DSPy's own pool wait in it, where `max_connections` asks for more (the LM keeps
    DSPy's engine)."""
    if max_connections is not None and max_connections > CLIENT_MAX_CONNECTIONS:
        log.warning(
            "%s: %d calls in flight, but DSPy's HTTP client holds at most %d connections for '%s'; "
            "the calls beyond that wait in its pool",
            role,
            max_connections,
            CLIENT_MAX_CONNECTIONS,
            model,
        )


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


def bounded(lm: Any, role: str, fresh: bool = False) -> Any:
    """`lm` behind the call boundary, so that its calls are counted, budgeted and checked like those of an LM built
    from config: `lm` itself when it already is (build_lm made it), else a copy of it (sharing its client; the object
    handed in is left as it was) whose class puts CallBoundary in front of the LM's own.

    Any dspy.BaseLM works: a dspy.LM, a subclass, or a user's own BaseLM. DSPy hands each reply of a BaseLM to its
    `update_history`, where the boundary reads the usage and how the reply ended. The copy makes DSPy's retries of a
    failed request itself (`take_retries`), so that each request is counted. ConfigError for what is not one;
    KeyProviderError for one whose key would reach another provider's endpoint (clients.destination.check_lm_key).
    `fresh`: a copy even of an LM already behind the boundary (one a user made with build_lm), for a caller that
    attaches a budget to it; the user's object stays as it was.
    """
    if isinstance(lm, CallBoundary):
        if not fresh:
            return lm
        twin = lm.copy()
        twin.role = role
        return twin
    if not isinstance(lm, dspy.BaseLM):
        raise ConfigError(f"{role}: expected a dspy.BaseLM (for example dspy.LM(...)), got {type(lm).__name__}")
    check_lm_key(lm, role)
    twin = on_own_engines(lm) if callable(getattr(lm, "copy", None)) else copy.copy(lm)
    twin.__class__ = boundary_class(type(lm))
    twin.role = role
    return twin.take_retries()


def on_own_engines(lm: Any) -> Any:
    """A copy of `lm` (a dspy.LM handed in) on engines of refed's, where DSPy would serve it with its own client (lm15)
    and no engine is named on it: the same endpoint, key and timeout, its requests checked as they leave
    (refed_dspy.clients.destination.CheckedTransport); else a plain copy (an LM DSPy serves through LiteLLM, a user's
    own BaseLM: its own client, checked as it is handed in). An LM told no endpoint is given the one the environment
    gives its provider's clients (OPENAI_BASE_URL and kin), as build_lm gives it to a section's. A subclass whose own
    `forward` makes the request (and may read its endpoint and key from `kwargs`) is copied as it is."""
    own_calls = type(lm).forward is dspy.LM.forward and type(lm).aforward is dspy.LM.aforward
    if not isinstance(lm, dspy.LM) or lm.engine not in ("auto", "lm15") or not own_calls:
        return lm.copy()
    told = lm.kwargs.get("api_base") or lm.kwargs.get("base_url")
    given = None if told else environment_endpoint(provider_for(str(lm.model)), os.environ)
    placed = fit_api_base(lm.copy(api_base=given), own_engines=True) if given else lm.copy()
    engines = wide_engines(placed, CLIENT_MAX_CONNECTIONS)
    if engines is None:
        return lm.copy()
    reach = [k for k in placed.kwargs if k in _REACH]
    twin = placed.copy(**dict.fromkeys(reach)).copy(engine=engines[0], async_engine=engines[1])  # the engines hold them
    twin.client_reach = _recorded_reach(placed.kwargs)
    return twin


def _recorded_reach(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What of an LM's `kwargs` reaches its endpoint, as an LM on engines of its own records it (`client_reach`): its
    endpoint (as api_base) and timeout, never its key."""
    return {("api_base" if k == "base_url" else k): v for k, v in kwargs.items() if k in _REACH and k != "api_key"}


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


class LoopEngines:
    """An async engine for each event loop that calls it, each made by `make`: an lm15 engine's connection pool is
    confined to the loop that made it, and an LM whose calls come from several loops (an optimization's threads, each
    running its own; a notebook's) needs one each, as DSPy's own LMs have. The engines of loops that have closed are
    let go as a new one is made. `config`: the lm15 RouterConfig each is made with (its endpoint, key and pool)."""

    def __init__(self, make: Callable[[], Any], config: Any, remake: Remake | None = None):
        self._make, self.config, self.remake = make, config, remake
        self._engines: dict[asyncio.AbstractEventLoop, Any] = {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> LoopEngines:  # shared by a deep copy of its LM, as OwnEngine is
        return self

    def __reduce__(self) -> tuple:
        return _made_again(self.remake, 1)

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


def generation_watch(spec: LMSpec) -> float | None:
    """For a section whose every endpoint is on the user's machine or network: the idle seconds after which a
    GenerationWatch over its async HTTP transport gives up, so that a server still generating is not cut off at
    `spec`'s timeout (None elsewhere: no watch)."""
    if not spec.endpoints or not all(watched_host(url) for url in spec.endpoints):
        return None
    return spec.call_timeout


@dataclasses.dataclass
class Remake:
    """What an LM's own engines were made from (`wide_engines`' arguments), so that a pickled LM makes them again
    where it is loaded: an LM carrying its endpoint, key and timeout, and the rest."""

    lm: Any
    max_connections: int
    cache: Provider | None
    watch_s: float | None
    limits: RateLimits | None

    def engine(self, which: int) -> Any:
        """The sync (0) or async (1) engine made again."""
        engines = wide_engines(self.lm, self.max_connections, None, self.cache, self.watch_s, self.limits)
        if engines is None:
            raise TypeError(f"the engines of '{self.lm.model}' cannot be made again here")
        return engines[which]


def wide_engines(
    lm: dspy.LM,
    max_connections: int,
    wrap: Callable[[Any], Any] | None = None,
    cache: Provider | None = None,
    watch_s: float | None = None,
    limits: RateLimits | None = None,
) -> tuple[Any, Any] | None:
    """DSPy's own native (lm15) engines for `lm`, built as DSPy would but with a connection pool of
    `max_connections` (DSPy's is fixed at 100 per LM), the async one for each event loop that calls it (LoopEngines);
    `watch_s` puts the async engines' HTTP transport under a GenerationWatch with that idle time (a local server);
    `limits` hears the async engines' requests at the wire and the rate limits their replies state (RateLimitReader);
    `wrap` turns the async engine's HTTP transport into the one it uses (batch mode, several endpoints: one engine, on
    the loop of the run that made it); `cache`: their requests ask that provider to cache their prompts' repeated
    part. Without `wrap`, the engines pickle as their `Remake`. None when DSPy would not use its native engine for this
    model (LiteLLM fallback, declared providers): then the LM keeps DSPy's choice."""
    try:
        sel = _selected(lm)
        if not sel.native or sel.resolution is None or getattr(sel.resolution, "declared", False):
            return None
        if not _carried(lm, sel):
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

        def transport() -> Any:  # the async HTTP transport lm15 would build, each request checked as it leaves,
            inner: Any = CheckedTransport(StdlibAsyncTransport(**config.transport_kwargs()))  # heard at the wire
            inner = RateLimitReader(inner, limits) if limits is not None else inner  # and under the watch if any
            return GenerationWatch(inner, watch_s) if watch_s is not None else inner

        def async_engine() -> Any:
            own = RouterConfig(**common, transport=transport())
            return asking(OwnAsyncEngine(own, model_type=lm.model_type), StdlibAsyncTransport)

        checked = RouterConfig(**common, transport=CheckedTransport(StdlibTransport(**config.transport_kwargs())))
        sync_engine = asking(OwnEngine(checked, model_type=lm.model_type), StdlibTransport)
        if wrap is not None:
            wrapped = RouterConfig(**common, transport=wrap(transport()))
            return sync_engine, asking(OwnAsyncEngine(wrapped, model_type=lm.model_type), StdlibAsyncTransport)
        sync_engine.remake = Remake(lm.copy(), max_connections, cache, watch_s, limits)
        return sync_engine, LoopEngines(async_engine, config, sync_engine.remake)
    except Exception:  # noqa: BLE001 - DSPy internals moved: keep DSPy's own engine choice
        return None


def _carried(lm: dspy.LM, sel: Any) -> bool:
    """Whether DSPy's own client (lm15) carries a call with `lm`'s own settings (`sel`: its client's selection), as
    DSPy asks before each call of an LM on its own engine, sending one it cannot carry (`thinking`, `extra_body`,
    Anthropic's `json_object`) through LiteLLM instead: an LM whose settings it cannot carry keeps DSPy's engine."""
    probe = lm.copy(engine="lm15") if lm.engine == "auto" else lm
    try:
        canonical = _canonical(prepare(probe, "?", None, {}, direct=True), compat=sel.resolution.compat)
        LM15Engine(RouterConfig(), model_type=lm.model_type).plan(canonical)
    except Exception:  # noqa: BLE001 - lm15 refuses them (or DSPy moved): DSPy's engine, which falls back
        return False
    return True


def _ask_to_cache(engine: Any, own: type, cache: Provider) -> Any:
    """`engine` (an lm15 engine wide_engines made) with its HTTP transport under a PromptCacheTransport for `cache`'s
    requests. lm15 takes a transport of one's own only in place of its config's pool settings, so a router's own is
    set here (built as the router would build it, of class `own`); where lm15 keeps it elsewhere, the requests go as
    they are."""
    router = getattr(engine, "router", None)
    if router is not None and hasattr(router, "_transport"):
        inner = router._transport if router._transport is not None else own(**router.config.transport_kwargs())
        router._transport = PromptCacheTransport(inner, cache)
    return engine


class PromptCacheTransport:
    """An lm15 HTTP transport (sync or async, as `inner` is) that sends each chat request of `provider`'s format with
    the body `provider.cache_request` makes of it for the call under way (`stable_under_way`); other requests (a batch
    API's, a body that is not JSON) go as they are."""

    def __init__(self, inner: Any, provider: Provider):
        self.inner = inner
        self.provider = provider
        self.path = provider.wire.path if provider.wire is not None else ""

    def rewrite(self, request: Any) -> Any:
        """`request` as it is sent: its body asking for the prompt cache (the same request when nothing changes)."""
        stable = stable_under_way()
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


_FAILS_TO_TAKE_OUT = 2
_COOLDOWN_S = 2.0
_MAX_COOLDOWN_S = 60.0


@dataclasses.dataclass
class EndpointState:
    """One endpoint's figures."""

    url: str
    in_flight: int = 0
    calls: int = 0
    failures: int = 0
    fails_in_row: int = 0
    down_until: float = 0.0
    taken_out: int = 0  # times it was taken out
    limits: RateLimits = dataclasses.field(default_factory=RateLimits)  # its requests at the wire, and its window

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "failures": self.failures, "taken_out": self.taken_out}


class EndpointSpread:
    """Spreads an LM's requests over `urls` (see the module docstring). Use `wrap` as build_lm's transport wrapper."""

    def __init__(self, urls: list[str], clock: Any = time.monotonic):
        self.states = [EndpointState(u.rstrip("/")) for u in urls]
        self.primary = self.states[0].url
        self.inner: Any = None
        self.clock = clock
        self.waiting: list[asyncio.Future] = []  # requests waiting for an endpoint with room under its window

    def __deepcopy__(self, memo: dict) -> EndpointSpread:  # shared by a deep copy of its LM, as its engines are
        return self

    def wrap(self, inner: Any) -> EndpointSpread:
        """Take `inner` (the HTTP transport lm15 would use) as the transport to send through; returns self."""
        self.inner = inner
        return self

    # ---- choosing ---------------------------------------------------------------------------------
    def pick(self) -> EndpointState:
        """The endpoint for the next request: the one its LM prefers (`endpoint_asked`) while it is healthy and has
        room under its window, else the healthy one with the most room (the fewest requests in flight, then sent)."""
        now = self.clock()
        preferred = endpoint_asked()
        if preferred is not None and 0 <= preferred < len(self.states):
            state = self.states[preferred]
            if state.down_until <= now and state.limits.room() >= 1:
                return state
        healthy = [s for s in self.states if s.down_until <= now]
        if not healthy:
            return min(self.states, key=lambda s: s.down_until)
        return max(healthy, key=lambda s: (s.limits.room(), -s.in_flight, -s.calls))

    async def take(self) -> EndpointState:
        """The endpoint for the next request (`pick`) once one has room under its window (each endpoint's rate limit
        is its own: refed_dspy.engine.window): while the healthy ones are full, the request waits for one of their
        requests to come back."""
        while True:
            state = self.pick()
            if state.limits.room() >= 1 or state.down_until > self.clock():
                return state
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            await waiter

    def freed(self) -> None:
        """A request came back: the first request waiting for room looks again."""
        while self.waiting:
            waiter = self.waiting.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def succeeded(self, state: EndpointState) -> None:
        state.fails_in_row = 0
        state.down_until = 0.0

    def failed(self, state: EndpointState) -> None:
        state.failures += 1
        state.fails_in_row += 1
        if state.fails_in_row >= _FAILS_TO_TAKE_OUT:
            cooldown = min(_MAX_COOLDOWN_S, _COOLDOWN_S * 2 ** (state.fails_in_row - _FAILS_TO_TAKE_OUT))
            if state.down_until <= self.clock():
                state.taken_out += 1
            state.down_until = self.clock() + cooldown

    def route(self, url: str, state: EndpointState) -> str:
        """`url` (built for the primary endpoint) sent to `state`'s endpoint instead."""
        if url.startswith(self.primary):
            return state.url + url[len(self.primary) :]
        return url

    # ---- the transport ----------------------------------------------------------------------------
    def stream(self, request: Any) -> _Routed:
        return _Routed(self, request)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    def figures(self) -> dict[str, dict[str, Any]]:
        """Calls, failures and times taken out, by endpoint URL."""
        return {s.url: s.as_dict() for s in self.states}


class _Routed:
    def __init__(self, spread: EndpointSpread, request: Any):
        self.spread = spread
        self.request = request
        self.state: EndpointState | None = None
        self.inner_cm: Any = None

    async def __aenter__(self) -> Any:
        spread = self.spread
        state = self.state = await spread.take()
        state.in_flight += 1
        state.calls += 1
        request = dataclasses.replace(self.request, url=spread.route(self.request.url, state))
        self.inner_cm = spread.inner.stream(request)
        sent = time.monotonic()
        level = state.limits.leave(sent)
        try:
            resp = await self.inner_cm.__aenter__()
        except BaseException as err:
            state.limits.back(level, sent, None)
            state.in_flight -= 1
            if isinstance(err, Exception):  # not when cancelled: that is not the endpoint's fault
                spread.failed(state)
            spread.freed()
            raise
        state.limits.back(level, sent, resp.status, getattr(resp, "headers", None) or ())
        if resp.status >= 500:
            spread.failed(state)
        else:
            spread.succeeded(state)
        spread.freed()
        return resp

    async def __aexit__(self, *exc: Any) -> Any:
        assert self.state is not None
        self.state.in_flight -= 1
        return await self.inner_cm.__aexit__(*exc)


def fit_api_base(lm: Any, own_engines: bool = False) -> Any:
    """Give a dspy.LM's `api_base` (if any) the form the client DSPy picks for it expects: lm15's
    (`Provider.native_base`), or LiteLLM's (`Provider.host_form`); `own_engines`: the client of the engines
    `wide_engines` will build for it instead. Returns `lm`, changed in place."""
    kwargs = getattr(lm, "kwargs", None)
    base = (kwargs or {}).get("api_base")
    if not isinstance(base, str):
        return lm
    native = _served_natively(lm, own_engines)  # by the client settings it carries, whatever form its api_base has
    serving = provider_for(str(lm.model))
    if not (serving.base_suffixes or serving.native_path):  # its api_base is passed on as written, to any client
        return lm
    kwargs["api_base"] = serving.native_base(base) if native else serving.host_form(base)
    return lm


def _served_natively(lm: Any, own_engines: bool = False) -> bool:
    """DSPy serves `lm` with its own client (lm15) rather than LiteLLM: as DSPy picks for it, or (`own_engines`) on the
    engines `wide_engines` builds for it (`_selected`)."""
    from dspy.clients.backend_selection import select_backend

    try:
        return bool((_selected(lm) if own_engines else select_backend(lm, {})).native)
    except Exception:  # noqa: BLE001 - DSPy internals moved, or a model lm15 does not know: LiteLLM's convention
        return False


def _selected(lm: Any) -> Any:
    """The client of the engines refed builds for `lm` (a BackendSelection): DSPy's choice, except that an LM given its
    endpoint is served by DSPy's own client where that client serves its model and settings, though DSPy would hand it
    to LiteLLM for an endpoint variable of the environment (OPENAI_BASE_URL: DSPy keeps such a gateway for an LM told
    of no endpoint; this one was told). An engine named on the LM is kept."""
    from dspy.clients.backend_selection import select_backend
    from dspy.lm15 import UnknownModelError, UnsupportedFeatureError

    chosen = select_backend(lm, {})
    if chosen.native or lm.engine != "auto" or not (lm.kwargs.get("api_base") or lm.kwargs.get("base_url")):
        return chosen
    try:
        return select_backend(lm.copy(engine="lm15"), {})
    except (UnknownModelError, UnsupportedFeatureError):
        return chosen
