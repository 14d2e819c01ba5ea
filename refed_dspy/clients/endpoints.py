"""Where an LM's requests go: its `api_base` in the form each client takes, and several OpenAI-compatible endpoints of
one model (vLLM or llama.cpp replicas) behind one LM.

`EndpointSpread` wraps the LM's HTTP transport: each request, built for the first endpoint, goes to the
healthy endpoint with the fewest requests in flight (ties: the fewest sent). An endpoint whose request fails
(no answer: a refused or reset connection, a timeout; or a 5xx) twice in a row is taken out for a cool-down
that doubles with each further failure (up to 60 s); after it, one request probes it, and an answer puts it
back. When every endpoint is out, the one due back first is used. A 429 is the server's way to say "slower",
not a failure: the engine's window handles it. Calls and failures are counted per endpoint.

On Ray, where each worker holds its own spread and sees only its own calls, the driver chooses the endpoint of each
task from what is in flight over the whole cluster and sets it as `preferred_endpoint` around the task's calls: a
spread takes it while that endpoint is healthy in its own view.

How each LM client is given `api_base` (`fit_api_base`, `endpoint_of`): LiteLLM's form, or the one DSPy's own client
(lm15) expects. LiteLLM takes an `api_base` in its provider's form (`Provider.host_form`: the host, for a provider
whose api_base is its host). DSPy 3.4's own client (lm15) appends less of the path to some providers' bases (only /messages for
Anthropic's), so the same config reached another URL there: it is given the base with the rest of the path
(`Provider.native_path`). A config may write such an api_base either way; `fit_api_base` gives each LM the form of
the client DSPy picks for it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from typing import Any

from refed_dspy.providers.registry import provider_for

# the index of the endpoint the calls of the current task should go to (None: the spread's own choice)
preferred_endpoint: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "refed_preferred_endpoint", default=None
)

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

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "failures": self.failures, "taken_out": self.taken_out}


class EndpointSpread:
    """Spreads an LM's requests over `urls` (see the module docstring). Use `wrap` as build_lm's transport wrapper."""

    def __init__(self, urls: list[str], clock: Any = time.monotonic):
        self.states = [EndpointState(u.rstrip("/")) for u in urls]
        self.primary = self.states[0].url
        self.inner: Any = None
        self.clock = clock

    def wrap(self, inner: Any) -> EndpointSpread:
        """Take `inner` (the HTTP transport lm15 would use) as the transport to send through; returns self."""
        self.inner = inner
        return self

    # ---- choosing ---------------------------------------------------------------------------------
    def pick(self) -> EndpointState:
        """The endpoint for the next request: the preferred one of the current task while it is healthy, else the
        healthy one with the fewest requests in flight."""
        now = self.clock()
        preferred = preferred_endpoint.get()
        if preferred is not None and 0 <= preferred < len(self.states) and self.states[preferred].down_until <= now:
            return self.states[preferred]
        healthy = [s for s in self.states if s.down_until <= now]
        if not healthy:
            return min(self.states, key=lambda s: s.down_until)
        return min(healthy, key=lambda s: (s.in_flight, s.calls))

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
        state = self.state = spread.pick()
        state.in_flight += 1
        state.calls += 1
        request = dataclasses.replace(self.request, url=spread.route(self.request.url, state))
        self.inner_cm = spread.inner.stream(request)
        try:
            resp = await self.inner_cm.__aenter__()
        except Exception:
            state.in_flight -= 1
            spread.failed(state)
            raise
        except BaseException:  # cancelled: not the endpoint's fault
            state.in_flight -= 1
            raise
        if resp.status >= 500:
            spread.failed(state)
        else:
            spread.succeeded(state)
        return resp

    async def __aexit__(self, *exc: Any) -> Any:
        assert self.state is not None
        self.state.in_flight -= 1
        return await self.inner_cm.__aexit__(*exc)


def fit_api_base(lm: Any) -> Any:
    """Give a dspy.LM's `api_base` (if any) the form the client DSPy picks for it expects: lm15's
    (`Provider.native_base`), or LiteLLM's (`Provider.host_form`). Returns `lm`, changed in place."""
    kwargs = getattr(lm, "kwargs", None)
    base = (kwargs or {}).get("api_base")
    if not isinstance(base, str):
        return lm
    native = _served_natively(lm)  # by the client settings it carries, whatever form its api_base has
    provider = provider_for(str(lm.model))
    if provider.base_suffixes or provider.native_path:  # else its api_base is passed on as written, to any client
        kwargs["api_base"] = provider.native_base(base) if native else provider.host_form(base)
    return lm


def _served_natively(lm: Any) -> bool:
    """DSPy serves `lm` with its own client (lm15) rather than LiteLLM."""
    try:
        from dspy.clients.backend_selection import select_backend

        return bool(select_backend(lm, {}).native)
    except Exception:  # noqa: BLE001 - DSPy internals moved, or a model lm15 does not know: LiteLLM's convention
        return False


def endpoint_of(lm: Any) -> str | None:
    """The endpoint `lm`'s requests are addressed to, as its client was given it: its `api_base` (or `base_url`), else,
    for an LM that carries engines of its own (build_lm's, which DSPy refuses client settings beside), the base URL
    those engines were configured with; None: the provider's own endpoint."""
    kwargs = getattr(lm, "kwargs", None) or {}
    base = kwargs.get("api_base") or kwargs.get("base_url")
    if base:
        return base
    config = getattr(getattr(lm, "engine", None), "config", None)
    return next(iter((getattr(config, "base_urls", None) or {}).values()), None)
