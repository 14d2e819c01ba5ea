"""The first calls of a run check its endpoint.

Until a call of this invocation gets a reply in the endpoint's format, the engine keeps one piece of work in flight
(`Engine.slots_free`), so a wrong `api_base`, a refused key or a server of another format costs one or two calls, not
a window of them and 25 failures. Such a failure (`ENDPOINT_REASONS`; a server at the one `api_base` of the config
that does not answer at all, after the client's own retries, included) before any reply stops the run as a config
error (`EndpointError`, exit 2), in one line naming the URL called, the format it expected and the likely fix
(`explain`). After a reply, the same failure is the provider's (RunAborted, exit 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from refed_dspy.clients.calls import CallInfo
from refed_dspy.clients.keys import api_key_env
from refed_dspy.config.lm import LMSpec
from refed_dspy.engine.failures import Failure
from refed_dspy.errors import EndpointError, KeyProviderError, RefedError
from refed_dspy.providers.base import Provider, provider_of
from refed_dspy.providers.registry import call_url, examples, provider_for, server_root, wires

# failures that say the endpoint, the key or the format is wrong, whatever is asked
ENDPOINT_REASONS = ("not_found", "auth", "wrong_format", "unknown_model", "unreachable", "unknown_provider")
# of those, the ones one request can meet from an endpoint that has answered others
ITEM_REASONS_ONCE_ANSWERED = ("not_found", "wrong_format")


def understood(calls: Iterable[CallInfo], failure: Failure | None) -> bool:
    """A piece of work shows that the endpoint takes this run's calls: one of its calls reached it and got a reply
    (not replayed from the cache), and the work succeeded or failed only on what the reply said."""
    if failure is not None and not failure.final:
        return False
    return any(c.error is None and not c.cache_hit and not c.interrupted for c in calls)


class FirstCalls:
    """The engine's watch on its endpoint: until a piece of work shows the endpoint takes the run's calls (`answered`),
    one piece of work runs at a time online; `calls` counts the requests sent meanwhile."""

    def __init__(self, unreachable_stops: bool = True) -> None:
        self.answered = False
        self.calls = 0
        # a server that never answers stops the run as the config's error only at one api_base of the user's: among
        # replicas the spread takes it out; a provider's own endpoint out of reach is this machine's network
        self.unreachable_stops = unreachable_stops

    def holds(self, running: bool, waits_outside: bool) -> bool:
        """No more work may start now: some is running and nothing has been answered yet (work that waits outside
        this process, on a provider's batch, waits for all)."""
        return not self.answered and running and not waits_outside

    def note(self, calls: list[CallInfo], failure: Failure | None) -> Failure | None:
        """A piece of work ended with `calls` and `failure`; returns the failure as the engine takes it: once the
        endpoint has answered, a 404 or a reply without text is that piece of work's own (a gateway with no route for
        one request, a model being swapped), a reject, not a stop of the run."""
        if self.answered:
            if failure is not None and failure.fatal and failure.reason in ITEM_REASONS_ONCE_ANSWERED:
                return dataclasses.replace(failure, fatal=False, final=True)
            return failure
        replied = any(c.error is None and not c.cache_hit and not c.interrupted for c in calls)
        if failure is not None and failure.reason == "unreachable" and self.unreachable_stops and not replied:
            # never answered this invocation, after the client's own retries: the address, or a server not started
            failure = dataclasses.replace(failure, fatal=True, retryable=False)
        self.calls += sum(1 for c in calls if not c.cache_hit)
        self.answered = understood(calls, failure)
        return failure


def _example_name(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model


def _format_fix(provider: Provider, reason: str, role: str, name: str, host: str | None) -> str | None:
    """What to change when the server does not take the format of the provider's calls: the api_base in the
    provider's form, or the model string of the other format a server there may speak (None: no format known)."""
    wire = provider.wire
    if wire is None:
        return None
    other = next((w for w in wires() if w is not wire), None)
    instead = other.reach.format(name=name, host=host or "http://HOST:PORT") if other is not None else ""
    if provider.base_form == "host":
        if reason == "not_found" or other is None:
            optional = min(provider.base_suffixes, key=len, default="")
            fix = f"set {role}.api_base to the server's host (refed calls <host>{wire.path}, as LiteLLM does"
            fix += f"; a trailing {optional} is optional)" if optional else ")"
            return fix + (f"; a server that speaks only the {other.family} format takes {instead}" if other else "")
        return (
            f"the server likely speaks the {other.family} format: use {instead}, or point api_base at the host of an "
            f"{wire.name} server"
        )
    fix = (
        f"set {role}.api_base to the server's {wire.family}-compatible base, version path included (e.g. "
        f"http://HOST:8000/v1; refed calls <api_base>{wire.path})"
    )
    return fix + (f"; an {other.name} server takes {instead}" if other is not None else "")


def _fix(reason: str, spec: LMSpec, role: str) -> str:
    """What to change, by what went wrong and the format the model's calls use."""
    base = spec.primary_api_base
    host = server_root(base) if base else None
    if reason == "auth":
        env = api_key_env(spec)
        if env is None:
            return f"the endpoint wants an API key: set {role}.api_key_env to the variable that holds it"
        return f"the endpoint refused the key in ${env}: check that it holds a valid key of this provider"
    if reason == "unreachable":
        return (
            f"start the server it names, or fix {role}.api_base (host and port); a local model refed starts itself "
            "takes [local] serve = true"
        )
    if reason == "unknown_model":
        return f"check {role}.model: the endpoint does not serve '{spec.model}'"
    fix = _format_fix(provider_for(spec.model), reason, role, _example_name(spec.model), host)
    return fix or f"check {role}.api_base and {role}.model against what the server serves"


def _what(reason: str, failure: Failure, spec: LMSpec) -> str:
    wire = provider_for(spec.model).wire
    fmt = wire.name if wire is not None else f"{provider_of(spec.model)}'s"
    if reason == "wrong_format":
        return f"answered, but not in the {fmt} format (no text, no token usage)"
    if reason == "unreachable":
        return f"did not answer ({failure.detail.rsplit(': ', 1)[-1]})"
    if reason == "not_found":
        status = failure.detail.split(":", 1)[0].removeprefix("HTTP ")
        return f"answered {status} (no such endpoint) to a request in the {fmt} format"
    return f"refused the request: {failure.detail}"


def explain(failure: Failure, spec: LMSpec, role: str, calls: int) -> str:
    """The one line an endpoint failure on the first calls ends the run with."""
    if failure.reason == "unknown_provider":
        return (
            f"{role}.model = '{spec.model}' names no provider DSPy or LiteLLM knows: write it as provider/name "
            f"({'; '.join(examples())}) (no LM call was made)"
        )
    url = call_url(spec.model, spec.primary_api_base)
    sent = f"stopped after {calls} LM request{'s' if calls != 1 else ''}" if calls else "no LM call was made"
    return f"{role}: {url} {_what(failure.reason, failure, spec)}: {_fix(failure.reason, spec, role)} ({sent})"


def endpoint_error(abort: Failure | None, answered: bool, spec: LMSpec, role: str, calls: int) -> RefedError | None:
    """The EndpointError a run stopped by `abort` after `calls` requests ends with, or None when it is not one
    (another failure, or the endpoint had already answered this invocation). A key the HTTP layer refused to send
    where it must not go is the config's mistake whenever it happens (KeyProviderError)."""
    if abort is not None and abort.reason == "key_refused":
        return KeyProviderError(f"{role}: {abort.detail}")
    if abort is None or answered or abort.reason not in ENDPOINT_REASONS:
        return None
    return EndpointError(explain(abort, spec, role, calls))
