"""LMs by role, built from config (`build_lm`), and their prices.

`RefedLM` is DSPy's LM behind refed's call boundary (refed_dspy.clients.boundary); the engines and HTTP transports
build_lm gives it are refed_dspy.clients.engines's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dspy

from refed_dspy.clients.boundary import CallBoundary
from refed_dspy.clients.engines import CLIENT_MAX_CONNECTIONS, EndpointSpread, fit_api_base, wide_engines
from refed_dspy.config.lm import CLIENT_REACH, LMSpec, PriceBook, price_of
from refed_dspy.errors import ConfigError
from refed_dspy.providers.base import Provider
from refed_dspy.providers.keys import check_key
from refed_dspy.providers.prices import Price
from refed_dspy.providers.registry import provider_for

log = logging.getLogger(__name__)


class RefedLM(CallBoundary, dspy.LM):
    """The dspy.LM that build_lm makes: DSPy's LM behind refed's call boundary."""


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
    Several `spec.api_base` endpoints are reached through an EndpointSpread (refed_dspy.clients.engines),
    kept on the LM as `endpoint_spread`. A model DSPy does not serve natively can take neither (ConfigError).
    `api_base` is taken as LiteLLM takes it for the model's provider (refed_dspy.clients.engines). Where the model's
    provider caches prompts on a request's word and `spec.prompt_cache` is on, the LM has engines of its own whatever
    it is built for (an optimization's LMs, an experiment's, a metric's judge), and they ask it to cache each prompt's
    repeated part (refed_dspy.clients.engines.PromptCacheTransport); the async one is made for each event loop that
    calls the LM.
    """
    problem = spec.tier_problem(role)  # a section made in Python, or copied, was not checked as a config is
    if problem is not None:
        raise ConfigError(problem)
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
    engines = wide_engines(lm, max_connections or CLIENT_MAX_CONNECTIONS, wrap, cache)
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
