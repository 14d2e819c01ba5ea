"""What a failure means: an exception from one work item classified into a reject reason, or a fatal run error; and
the first calls of a run, which check its endpoint (`FirstCalls`); and which of the errors of one task's concurrent
calls decides how the task ends (`deciding_error`, `gather_settled`).

Until a call of this invocation gets a reply in the endpoint's format, the engine keeps one piece of work in flight
(`Engine.slots_free`), so a wrong `api_base`, a refused key or a server of another format costs one or two calls, not
a window of them and 25 failures. Such a failure (`ENDPOINT_REASONS`; a server at the one `api_base` of the config
that does not answer at all, after the client's own retries, included) before any reply stops the run as a config
error (`EndpointError`, exit 2), in one line naming the URL called, the format it expected and the likely fix
(`explain`). After a reply, the same failure is the provider's (RunAborted, exit 3).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dspy.utils.exceptions import (
    AdapterParseError,
    ContextWindowExceededError,
    LMAuthError,
    LMBillingError,
    LMError,
    LMInvalidRequestError,
    LMNotConfiguredError,
    LMRateLimitError,
    LMUnsupportedFeatureError,
    LMUnsupportedModelError,
    is_retryable_lm_error,
)
from pydantic import ValidationError

from refed_dspy.adapters import DegenerateOutputError, describe_parse_error
from refed_dspy.clients.calls import (
    BudgetExceeded,
    CallInfo,
    HeldShort,
    LMOutputError,
    OutputRefused,
    OutputTruncated,
    ReplyFormatError,
)
from refed_dspy.clients.tries import gave_up_waiting, never_connected, retry_after_s, stopped_waiting
from refed_dspy.config.lm import LMSpec
from refed_dspy.errors import ConfigError, EndpointError, KeyProviderError, RefedError
from refed_dspy.providers.base import Provider, provider_of
from refed_dspy.providers.registry import call_url, examples, provider_for, server_root, wires
from refed_dspy.secrets import first_line
from refed_dspy.text.counts import counted

RAW_CHARS = 2000  # of what the LM returned, kept in a reject record


@dataclass(frozen=True)
class Failure:
    """How an item failed. `final` rejects are not retried on resume; `fatal` ones stop the run;
    `retryable` ones (429, 5xx, timeouts, connection errors) the runner retries after `retry_after`
    seconds when given (the provider's Retry-After), else with backoff. `raw` is the start of what the
    LM returned, when it returned something unusable. One not `counted` (a service tier with no capacity now)
    neither counts toward the consecutive-failure abort nor ends a streak."""

    reason: str
    detail: str
    final: bool = True
    fatal: bool = False
    retryable: bool = False
    retry_after: float | None = None
    raw: str | None = None
    counted: bool = True  # counts toward the consecutive-failure abort (no capacity on a service tier does not)
    needs: float | None = None  # held short: the most the call refused on a worker could cost (HeldShort)

    def record_fields(self) -> dict[str, Any]:
        """The fields a reject record keeps of this failure."""
        out: dict[str, Any] = {"reason": self.reason, "detail": self.detail, "final": self.final}
        if self.raw is not None:
            out["raw"] = self.raw
        return out


def _raw(text: Any) -> str | None:
    if text is None:
        return None
    return (text if isinstance(text, str) else str(text))[:RAW_CHARS]


# LiteLLM's words for a model whose provider it cannot place (DSPy hands it what its own client does not route)
_NO_PROVIDER = "LLM Provider NOT provided"
# no such endpoint (or not for POST): every call will get the same answer
_NOT_FOUND = (404, 405)


def _seconds(detail: str) -> str:
    """` of 1s` from DSPy's read-timeout message (its own advice names a client API a config does not set)."""
    found = re.search(r"no bytes for ([0-9.]+)s", detail)
    return f" of {found.group(1)}s" if found else ""


def _unsent(err: BaseException, detail: str) -> Failure | None:
    """The Failure of a call refused before it was sent; None for any other error."""
    if isinstance(err, KeyProviderError):  # the HTTP layer refused to send a key where it must not go: the config's
        return Failure("key_refused", detail, final=False, fatal=True)
    if isinstance(err, ConfigError):  # a call its LM's arguments make one the ledger cannot count (several completions)
        return Failure("config", detail, final=False, fatal=True)
    if isinstance(err, HeldShort):  # its piece started again at once, held at what the call needs
        return Failure(
            "held_short", detail, final=False, retryable=True, retry_after=0.0, counted=False, needs=err.bound
        )
    if isinstance(err, BudgetExceeded):  # a call's counted prompt needed more than the budget had left: kept for later
        return Failure("budget", detail, final=False)
    return None


def classify(err: BaseException) -> Failure:
    """Map an exception raised while processing one item to a Failure."""
    detail = first_line(err)
    unsent = _unsent(err, detail)
    if unsent is not None:
        return unsent
    if isinstance(err, OutputTruncated):
        return Failure("truncated", detail, raw=_raw(err.raw))
    if isinstance(err, OutputRefused):
        return Failure("refused", detail, raw=_raw(err.raw))
    if isinstance(err, ReplyFormatError):
        return Failure("wrong_format", detail, final=False, fatal=True)
    if isinstance(err, LMOutputError):
        return Failure("invalid_output", detail, raw=_raw(err.raw))
    if isinstance(err, DegenerateOutputError):
        return Failure("degenerate", describe_parse_error(err)[:500], raw=_raw(err.lm_response))
    if isinstance(err, AdapterParseError):
        return Failure("unparseable", describe_parse_error(err)[:500], raw=_raw(err.lm_response))
    if isinstance(err, ContextWindowExceededError):
        return Failure("context_window", detail)
    if isinstance(err, (LMAuthError, LMNotConfiguredError)):
        return Failure("auth", f"the provider rejected the credentials: {detail}", final=False, fatal=True)
    if isinstance(err, LMBillingError):
        return Failure("billing", f"the provider refused for billing or quota: {detail}", final=False, fatal=True)
    if isinstance(err, LMUnsupportedFeatureError):
        return Failure(
            "unsupported",
            f"the model's client cannot send this request (check the role's extra settings): {detail}",
            final=False,
            fatal=True,
        )
    if isinstance(err, LMUnsupportedModelError):
        return Failure("unknown_model", f"the provider does not serve this model: {detail}", final=False, fatal=True)
    if isinstance(err, LMInvalidRequestError) and getattr(err, "status", None) in _NOT_FOUND:
        return Failure("not_found", f"HTTP {err.status}: {detail}", final=False, fatal=True)
    if isinstance(err, LMInvalidRequestError) and _NO_PROVIDER in str(err):
        return Failure("unknown_provider", detail, final=False, fatal=True)
    if isinstance(err, LMInvalidRequestError):
        low = detail.lower()
        if "content" in low and ("filter" in low or "policy" in low or "management" in low):
            return Failure("content_filter", detail)
        return Failure("invalid_request", detail)
    if isinstance(err, LMError) and getattr(err, "tier_unavailable", False):  # marked by the call boundary
        return Failure(
            "tier_unavailable",
            f"the service tier asked for had no capacity, after the call boundary's waits: {detail}",
            final=False,
            retryable=True,
            retry_after=retry_after_s(err),
            counted=False,
        )
    if isinstance(err, LMRateLimitError):
        return Failure("rate_limited", detail, final=False, retryable=True, retry_after=retry_after_s(err))
    if isinstance(err, LMError) and never_connected(err):
        return Failure("unreachable", f"nothing answered at the endpoint: {detail}", final=False, retryable=True)
    if isinstance(err, LMError) and gave_up_waiting(err) and not stopped_waiting(err):
        status = getattr(err, "status", None)
        return Failure(
            "provider_timeout",
            f"the provider timed out{f' (HTTP {status})' if status else ''}; counted as paid: {detail}",
            final=False,
            retryable=True,
            retry_after=retry_after_s(err),
        )
    if isinstance(err, LMError) and gave_up_waiting(err):
        return Failure(
            "timeout",
            f"no reply within the LM's timeout{_seconds(detail)}; counted as paid (the provider may have answered it)",
            final=False,
            retryable=True,
            retry_after=retry_after_s(err),
        )
    if isinstance(err, LMError):
        return Failure(
            "api_error", detail, final=False, retryable=is_retryable_lm_error(err), retry_after=retry_after_s(err)
        )
    if isinstance(err, (ValidationError, ValueError)):
        return Failure("invalid_output", detail)
    return Failure("internal_error", f"{type(err).__name__}: {detail}", final=False)


def deciding_error(errors: Sequence[BaseException], partial: bool = False) -> BaseException:
    """Of the errors that one task's concurrent calls raised, the one the task ends with (the first of its rank).

    A cancellation, then a fatal failure (the run stops either way). Then, for a task that needs every call's reply
    (`partial` false), one that a retry would meet again (final, a refused budget): retrying the task for a
    sibling's 5xx would pay for its calls again only to fail the same way. For a task that can use any call's reply
    (`partial`: the samples of a reference), a retryable one, whose retry may still give part of the work.
    """
    if not errors:
        raise ValueError("no error to choose from")
    stops = [e for e in errors if not isinstance(e, Exception)]
    if stops:
        return stops[0]
    failures = [classify(e) for e in errors]
    rank = sorted(range(len(errors)), key=lambda i: (not failures[i].fatal, failures[i].retryable != partial))
    return errors[rank[0]]


async def gather_settled(*aws: Awaitable[Any]) -> list[Any]:
    """Like asyncio.gather, but wait for every awaitable to finish, then raise the error that decides
    (`deciding_error`).

    Plain gather returns at the first exception while its siblings keep running; their LM calls would then complete
    after the caller has accounted the calls, and go uncounted.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise deciding_error(errors)
    return list(results)


# what to try when a run keeps failing for one reason
_HINTS = {
    "truncated": "raise {role}.max_tokens, or ask for shorter outputs",
    "unparseable": 'try {role}.adapter = "json_schema" (a server that enforces schemas), more {role}.max_repairs, '
    "or a stronger model",
    "invalid_output": "try a stronger model",
    "degenerate": "the model echoes the format or its inputs instead of answering: try a stronger model, "
    'or {role}.adapter = "json_schema"',
    "refused": "the provider refuses this content; check the seeds",
    "content_filter": "the provider filters this content; check the seeds",
    "timeout": "the LM did not answer within its timeout: raise {role}.timeout if the model needs longer, or lower "
    "the concurrency a slow server is given",
    "tier_unavailable": "the flex tier kept having no capacity: set {role}.flex_fallback to send such requests on the "
    "default tier, or resume later",
    "context_window": "the prompts do not fit the model's context: use a model with a longer context or shorter seeds",
}


def hint_for(reason: str, role: str = "teacher") -> str | None:
    """What to try when `role`'s outputs keep failing for `reason` (None: nothing to name)."""
    hint = _HINTS.get(reason)
    return hint.format(role=role) if hint else None


def refused_for_too_long(patience_s: float, last: Failure) -> Failure:
    """The Failure that stops a run whose endpoint answered nothing but 429 (rate limited) for `patience_s` seconds
    with no piece of work succeeding (`last`: the latest refusal); resumable, as every abort is."""
    return Failure(
        "rate_limited",
        f"rate limited for {patience_s:.0f}s with no call succeeding ({last.detail}); wait for the provider's limit to "
        "reset, or lower the concurrency, then run the same command again",
        final=False,
        fatal=True,
    )


class FailureStreak:
    """Consecutive failed items, of any kind (API errors after retries, and final rejects of the LM's output
    alike); a success resets it. At `limit` in a row, or at once for a fatal failure, `note` returns the
    Failure that aborts the run (resumable): its detail names the count, the last reason and what to try."""

    def __init__(self, limit: int, what: str = "LM", role: str = "teacher"):
        self.limit, self.what, self.role = limit, what, role
        self.count = 0
        self.reasons: dict[str, int] = {}

    def note(self, failure: Failure | None) -> Failure | None:
        """Count one finished item (None: it succeeded); the abort Failure when the run must stop."""
        if failure is None:
            self.count, self.reasons = 0, {}
            return None
        if failure.fatal:
            return failure
        if not failure.counted:
            return None
        self.count += 1
        self.reasons[failure.reason] = self.reasons.get(failure.reason, 0) + 1
        if self.count < self.limit:
            return None
        kinds = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        hint = hint_for(failure.reason, self.role)
        hint = f"; {hint}" if hint else ""
        return Failure(
            "too_many_failures",
            f"{self.count} consecutive {self.what} failures ({kinds}), the last: {failure.detail}{hint}",
            final=False,
            fatal=True,
        )


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
        env = spec.key_variable()
        if env is None:
            return f"the endpoint wants an API key: set {role}.api_key_env to the variable that holds it"
        return f"the endpoint refused the key in ${env}: check that it holds a valid key of this provider"
    if reason == "unreachable":
        return (
            f"start the server it names, or fix {role}.api_base (host and port); the local model refed starts itself "
            "takes [local] serve = true and its name as the model (openai/smollm2, or openai/<file stem> of [local] "
            "gguf)"
        )
    if reason == "unknown_model":
        return f"check {role}.model: the endpoint does not serve '{spec.model}'"
    fix = _format_fix(provider_for(spec.model), reason, role, spec.model.split("/", 1)[-1], host)
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
    sent = f"stopped after {counted(calls, 'LM request')}" if calls else "no LM call was made"
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
