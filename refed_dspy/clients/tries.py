"""A failed LM request: how far it got, whether it is sent again, and after how long.

How long: the provider's Retry-After when it sent one, else a jittered exponential backoff of 0.5 s doubling with each
retry, at most 30 s, times a uniform 0.5-1.5 (`retry_delay_s`); the engine's retries of a piece of work and the call
boundary's retries of one call wait alike.

When, at the call boundary (refed_dspy.clients.boundary): DSPy's retries of a failed request, made there so that each
request is counted, and, apart from them, a service tier's "no capacity now" answers (OpenAI's flex: 429 "resource
unavailable", not billed) waited out; after `flex_fallback` of those the next attempt goes on the default tier, and
after `TIER_WAITS` of them without a fallback it fails. Pure decisions: the boundary waits and sends.

How far it got: never connected (`never_connected`), or sent whole and not answered in time, so that the provider may
have answered and billed it (`gave_up_waiting`).

A request that timed out while the client read its reply (no headers yet, or mid-body) was sent whole: the provider
may be working on it and bill it. One that never connected, or whose body was still being written, was not. DSPy's
client reports a read timeout as an `LMTransportError` caused by its transport's `ReadTimeout`; a request DSPy sends
through LiteLLM as an `LMTimeoutError` of status 408 caused by httpx's `ReadTimeout`. A provider that says it timed out
(504, a `timeout_error`) is an `LMTimeoutError` too, paid, except a 408 of the provider's, which says the request never
arrived.
"""

from __future__ import annotations

import random
from typing import Any

from dspy._vendor.lm15.transports import ConnectError, ReadTimeout
from dspy.utils.exceptions import LMError, LMTimeoutError, is_retryable_lm_error

TIER_WAITS = 8  # "no capacity on this tier" answers to one request waited out (about 90 s in all) before it fails
DEFAULT_TIER = "default"


class Tries:
    """One request's attempts at the call boundary: DSPy's retries used, "no capacity on the tier asked for" answers
    waited out, and the keyword arguments the next attempt is sent with."""

    def __init__(self, kwargs: dict[str, Any]):
        self.kwargs, self.retries, self.unavailable, self.fallback = kwargs, 0, 0, False


def again(
    err: LMError, tries: Tries, retries: int, flex_fallback: int | None, tier_waits: int = TIER_WAITS
) -> float | None:
    """Seconds to wait before the request is sent again after `err` (None: it fails with `err`): DSPy's retries (at
    most `retries`); and, apart from them, a tier's "no capacity" answers (at most `tier_waits`, or `flex_fallback`
    before the next attempt goes on the default tier: `tries` is updated)."""
    if getattr(err, "tier_unavailable", False):
        tries.unavailable += 1
        if flex_fallback is not None and tries.unavailable >= flex_fallback and not tries.fallback:
            tries.kwargs, tries.fallback = {**tries.kwargs, "service_tier": DEFAULT_TIER}, True
            return 0.0
        if tries.unavailable <= tier_waits:
            return retry_delay_s(tries.unavailable, random.random(), retry_after_s(err))
        return None
    tries.retries += 1  # DSPy's retries, made here so that each request is counted
    if tries.retries > retries or not is_retryable_lm_error(err):
        return None
    return retry_delay_s(tries.retries, random.random(), retry_after_s(err))


def tier_asked(kwargs: dict[str, Any], lm_kwargs: dict[str, Any] | None) -> str | None:
    """The service tier a request with these keyword arguments asks for, else the LM's own (`lm_kwargs`); None: it
    names none."""
    tier = kwargs.get("service_tier", (lm_kwargs or {}).get("service_tier"))
    return tier if isinstance(tier, str) and tier else None


def retry_delay_s(retry: int, draw: float, retry_after: float | None = None) -> float:
    """Seconds before retry number `retry` (1 for the first); `draw` is uniform in [0, 1)."""
    if retry_after is not None:
        return retry_after
    return min(30.0, 0.5 * 2 ** (retry - 1)) * (0.5 + draw)


def retry_after_s(err: Any) -> float | None:
    """The Retry-After an error carries (`retry_after`, as DSPy's LM errors do), at most 300 s; None without one."""
    value = getattr(err, "retry_after", None)
    try:
        return max(0.0, min(float(value), 300.0)) if value is not None else None
    except (TypeError, ValueError):
        return None


_READ_TIMEOUTS = ("ReadTimeout", "APITimeoutError")  # httpx's and the OpenAI SDK's, in a user's own LM


def causes(err: BaseException):
    """`err` and what caused it, outermost first."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def never_connected(err: BaseException) -> bool:
    """True when `err` ended a request that never reached a server: refused, unresolvable or timed out connecting."""
    return any(isinstance(cause, (ConnectError, ConnectionRefusedError)) for cause in causes(err))


def stopped_waiting(err: BaseException) -> bool:
    """True when our side stopped waiting for the reply of a request sent whole: the client's read timeout."""
    return any(isinstance(cause, ReadTimeout) or type(cause).__name__ in _READ_TIMEOUTS for cause in causes(err))


def gave_up_waiting(err: BaseException) -> bool:
    """True when `err` ended a request the provider received and may have answered and billed (see the module)."""
    if stopped_waiting(err):
        return True  # LiteLLM's route reports that as a 408 of its own: the chain says so
    if isinstance(err, LMTimeoutError):
        return getattr(err, "status", None) != 408
    return False
