"""LMs by role, built from config, and per-call accounting.

`RefedLM` is a `dspy.LM` that, instead of growing an in-memory history, hands one compact
`CallInfo` per completed call (cache hits included) to the collector of the current asyncio
task. It also turns a reply cut off by max_tokens, or stopped by a content filter, into an
exception right away, so DSPy does not pay for a JSONAdapter retry of a reply that cannot parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import LMError, LMUnsupportedFeatureError

from refed_dspy.clients.endpoints import EndpointSpread
from refed_dspy.clients.keys import check_key
from refed_dspy.clients.pricing import Price, resolve_price
from refed_dspy.clients.spec import LMSpec
from refed_dspy.errors import ConfigError

log = logging.getLogger(__name__)
# dspy 3.4's built-in client (lm15 transports, DEFAULT_MAX_CONNECTIONS): the pool of an LM that build_lm
# cannot give its own wider engine (models DSPy serves through LiteLLM)
CLIENT_MAX_CONNECTIONS = 100


class LMOutputError(Exception):
    """The provider ended a reply in a way that makes it unusable; `raw` is the text it did return."""

    def __init__(self, message: str, raw: str | None = None):
        super().__init__(message)
        self.raw = raw


class OutputTruncated(LMOutputError):
    """The provider stopped the reply at max_tokens (finish_reason 'length')."""


class OutputRefused(LMOutputError):
    """The provider refused or filtered the reply (finish_reason 'content_filter')."""


@dataclass
class CallInfo:
    """One completed LM call, as the accounting sees it."""

    stage: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_hit: bool = False
    finish_reason: str | None = None
    seconds: float = 0.0  # from the request to the parsed-out reply (a cache hit: the cache read)
    repair: bool = False  # a repair call: the same ask again, with the last reply's error shown
    parse_error: bool = False  # the reply broke its format or contract (the adapter says so after parsing)
    error: str | None = None  # the request failed (429, 5xx, timeout, reset): no reply, no tokens
    interrupted: bool = False  # in flight when its work was cancelled: perhaps answered and billed, never read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallTag:
    """What an adapter knows about the call it is about to make, and the CallInfo the LM made of it."""

    repair: bool = False
    info: CallInfo | None = None


_calls: contextvars.ContextVar[list[CallInfo] | None] = contextvars.ContextVar("refed_calls", default=None)
_stage: contextvars.ContextVar[str] = contextvars.ContextVar("refed_stage", default="unknown")
_tag: contextvars.ContextVar[CallTag | None] = contextvars.ContextVar("refed_call_tag", default=None)
_started: contextvars.ContextVar[float | None] = contextvars.ContextVar("refed_call_started", default=None)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Tag the LM calls made inside this block with a stage name (feedback, synthesize, ...)."""
    token = _stage.set(name)
    try:
        yield
    finally:
        _stage.reset(token)


def current_stage() -> str:
    """The stage name the LM calls made here are tagged with (see `stage`)."""
    return _stage.get()


@contextlib.contextmanager
def collect_calls(into: list[CallInfo] | None = None) -> Iterator[list[CallInfo]]:
    """Collect the CallInfo of every LM call made in this block (in this task/context), into `into` when given
    (the owner of a piece of work keeps that list, so what a cancelled piece of work paid is not lost)."""
    calls = into if into is not None else []
    token = _calls.set(calls)
    try:
        yield calls
    finally:
        _calls.reset(token)


@contextlib.contextmanager
def tag_call(repair: bool = False) -> Iterator[CallTag]:
    """Tag the one LM call made inside this block (an adapter's call); the tag then holds its CallInfo."""
    tag = CallTag(repair=repair)
    token = _tag.set(tag)
    try:
        yield tag
    finally:
        _tag.reset(token)


def _first_text(outputs: Any) -> str | None:
    first = outputs[0] if isinstance(outputs, list) and outputs else None
    if isinstance(first, dict):
        first = first.get("text")
    return first if isinstance(first, str) else None


def _finish_reason(response: Any) -> str | None:
    if response is None:
        return None
    reason = getattr(response, "finish_reason", None)
    if reason is not None:
        return str(reason)
    choices = getattr(response, "choices", None) or (response.get("choices") if isinstance(response, dict) else None)
    if choices:
        first = choices[0]
        return first.get("finish_reason") if isinstance(first, dict) else getattr(first, "finish_reason", None)
    return None


class RefedLM(dspy.LM):
    """dspy.LM that reports each call to the current collector and keeps no history.

    With a `budget` (a CallBudget) attached, every call is reserved first and recorded after, under
    `role` at `price`; the budget refuses a call that could break it. Copies share the budget.
    """

    budget: Any = None
    role: str = "lm"
    price: Price | None = None
    endpoint_spread: Any = None  # several endpoints: their EndpointSpread (calls and failures per endpoint)

    def attach_budget(self, budget: Any, role: str, price: Price | None) -> RefedLM:
        """Guard this LM (and its copies) with `budget`; returns self."""
        self.budget, self.role, self.price = budget, role, price
        return self

    def __call__(self, *args: Any, **kwargs: Any):
        started = _started.set(time.monotonic())
        try:
            if self.budget is None:
                return super().__call__(*args, **kwargs)
            self.budget.reserve(self.price, int(self.kwargs.get("max_tokens") or 0))
            try:
                return super().__call__(*args, **kwargs)
            finally:
                self.budget.release()
        except LMError as err:
            self._note_failure(err)
            raise
        finally:
            _started.reset(started)

    async def acall(self, *args: Any, **kwargs: Any):
        started = _started.set(time.monotonic())
        try:
            if self.budget is None:
                return await super().acall(*args, **kwargs)
            self.budget.reserve(self.price, int(self.kwargs.get("max_tokens") or 0))
            try:
                return await super().acall(*args, **kwargs)
            finally:
                self.budget.release()
        except asyncio.CancelledError as err:
            calls = _calls.get()
            if calls is not None and not getattr(err, "unpaid", False):  # a call still waiting in a batch: not paid
                calls.append(CallInfo(stage=_stage.get(), model=self.model, interrupted=True))
            raise
        except LMError as err:
            self._note_failure(err)
            raise
        finally:
            _started.reset(started)

    def _note_failure(self, err: LMError) -> None:
        """A request that failed (no reply, no tokens) joins the calls collected, so failures reconcile with
        what the provider saw; one that never left the client (a setting it cannot send) does not."""
        calls = _calls.get()
        if calls is not None and not isinstance(err, LMUnsupportedFeatureError):
            started = _started.get()
            calls.append(
                CallInfo(
                    stage=_stage.get(),
                    model=self.model,
                    error=type(err).__name__,
                    seconds=round(time.monotonic() - started, 4) if started is not None else 0.0,
                )
            )

    def update_history(self, entry: dict[str, Any]) -> None:
        usage = entry.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        response = entry.get("response")
        if isinstance(response, tuple):
            response = response[0] if response else None
        finish = _finish_reason(response)
        started = _started.get()
        tag = _tag.get()
        info = CallInfo(
            stage=_stage.get(),
            model=self.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int((details or {}).get("cached_tokens") or 0),
            cache_hit=not usage,
            finish_reason=finish,
            seconds=round(time.monotonic() - started, 4) if started is not None else 0.0,
            repair=tag is not None and tag.repair,
        )
        if tag is not None:
            tag.info = info
        calls = _calls.get()
        if calls is not None:
            calls.append(info)
        if self.budget is not None:
            self.budget.record(
                self.role, self.price, info.prompt_tokens, info.completion_tokens, info.cached_tokens, info.cache_hit
            )
        if finish == "length":
            raise OutputTruncated(
                f"reply cut off at max_tokens ({info.completion_tokens} completion tokens)",
                _first_text(entry.get("outputs")),
            )
        if finish == "content_filter":
            raise OutputRefused("reply stopped by the provider's content filter", _first_text(entry.get("outputs")))


def _wide_engines(
    lm: dspy.LM, max_connections: int, wrap: Callable[[Any], Any] | None = None
) -> tuple[Any, Any] | None:
    """DSPy's own native (lm15) engines for `lm`, built as DSPy would but with a connection pool of
    `max_connections` (DSPy's is fixed at 100 per LM); `wrap` turns the async engine's HTTP transport into the
    one it uses (batch mode, several endpoints). None when DSPy would not use its native engine for this model
    (LiteLLM fallback, declared providers): then the LM keeps DSPy's choice."""
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
        async_config = config
        if wrap is not None:
            from dspy._vendor.lm15.transports import StdlibAsyncTransport

            async_config = RouterConfig(**common, transport=wrap(StdlibAsyncTransport(**config.transport_kwargs())))
        return LM15Engine(config, model_type=lm.model_type), AsyncLM15Engine(async_config, model_type=lm.model_type)
    except Exception:  # noqa: BLE001 - DSPy internals moved: keep DSPy's own engine choice
        return None


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
    is wider than DSPy's, a warning says that the calls beyond DSPy's pool will wait. `wrap` (batch mode: a
    function of the HTTP transport returning refed_dspy.engine.batch.BatchTransport) carries the LM's async calls
    another way. Several `spec.api_base` endpoints are reached through an EndpointSpread (refed_dspy.clients.endpoints),
    kept on the LM as `endpoint_spread`. A model DSPy does not serve natively can take neither (ConfigError).
    """
    key = check_key(spec, role)
    kwargs: dict[str, Any] = dict(spec.extra)
    spread = None
    if len(spec.endpoints) > 1 and wrap is None:
        spread = EndpointSpread(spec.endpoints)
        wrap = spread.wrap
    if spec.api_base:
        kwargs["api_base"] = spec.primary_api_base
    if spec.api_version:
        kwargs["api_version"] = spec.api_version
    if spec.timeout:
        kwargs["timeout"] = spec.timeout
    if key is not None:
        kwargs["api_key"] = key
    elif spec.api_base:
        kwargs["api_key"] = "unused"  # OpenAI-compatible clients insist on some key
    retries = spec.num_retries if num_retries is None else num_retries
    try:
        lm = RefedLM(
            spec.model, temperature=spec.temperature, max_tokens=spec.max_tokens, num_retries=retries, **kwargs
        )
    except (ValueError, TypeError, dspy.utils.exceptions.LMConfigurationError) as err:
        raise ConfigError(f"{role}: cannot build an LM for model '{spec.model}': {err}") from None
    lm.refed_spec = spec  # what it was built from: its provenance is the config's (refed_dspy.synthesis.provenance)
    if max_connections is None and wrap is None:
        return lm
    engines = _wide_engines(lm, max_connections or CLIENT_MAX_CONNECTIONS, wrap)
    if engines is None and wrap is not None:
        what = "several api_base endpoints" if spread is not None else "batch mode"
        raise ConfigError(
            f"{role}: {what} cannot carry the calls of '{spec.model}' (DSPy does not serve it with its "
            'own client); give one api_base and use mode = "online"'
        )
    if engines is None:
        if max_connections > CLIENT_MAX_CONNECTIONS:
            log.warning(
                "%s: %d calls in flight, but DSPy's HTTP client holds at most %d connections for '%s'; "
                "the calls beyond that wait in its pool",
                role,
                max_connections,
                CLIENT_MAX_CONNECTIONS,
                spec.model,
            )
        return lm
    assert engines is not None
    rest = {k: v for k, v in kwargs.items() if k not in ("api_key", "api_base", "base_url", "timeout", "api_version")}
    wide = RefedLM(
        spec.model,
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        num_retries=retries,
        engine=engines[0],
        async_engine=engines[1],
        **rest,
    )
    wide.endpoint_spread = spread
    wide.refed_spec = spec
    return wide


def price_of(spec: LMSpec, batch: bool = False) -> Price | None:
    """Price for this spec from config, else LiteLLM's price map; `batch`: at the spec's batch_price_factor."""
    price = resolve_price(spec.model, spec.input_usd_per_mtok, spec.cached_input_usd_per_mtok, spec.output_usd_per_mtok)
    return price.scaled(spec.batch_price_factor) if batch and price is not None else price


def require_price(spec: LMSpec, role: str, budget_field: str) -> None:
    """A cost budget needs a price: ConfigError (naming the fields to set) when `spec`'s model has none."""
    if price_of(spec) is None:
        raise ConfigError(
            f"{budget_field} needs a price for the {role} '{spec.model}', which is not in the price table: "
            f"set {role}.input_usd_per_mtok and {role}.output_usd_per_mtok"
        )
