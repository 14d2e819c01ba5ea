"""How far a failed LM request got: never connected (`never_connected`), or sent whole and not answered in time, so
that the provider may have answered and billed it (`gave_up_waiting`).

A request that timed out while the client read its reply (no headers yet, or mid-body) was sent whole: the provider
may be working on it and bill it. One that never connected, or whose body was still being written, was not. DSPy's
client reports a read timeout as an `LMTransportError` caused by its transport's `ReadTimeout`; a request DSPy sends
through LiteLLM as an `LMTimeoutError` of status 408 caused by httpx's `ReadTimeout`. A provider that says it timed out
(504, a `timeout_error`) is an `LMTimeoutError` too, paid, except a 408 of the provider's, which says the request never
arrived.
"""

from __future__ import annotations

from dspy._vendor.lm15.transports import ConnectError, ReadTimeout
from dspy.utils.exceptions import LMTimeoutError

_READ_TIMEOUTS = ("ReadTimeout", "APITimeoutError")  # httpx's and the OpenAI SDK's, in a user's own LM


def _chain(err: BaseException):
    """`err` and what caused it, outermost first."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def never_connected(err: BaseException) -> bool:
    """True when `err` ended a request that never reached a server: refused, unresolvable or timed out connecting."""
    return any(isinstance(cause, (ConnectError, ConnectionRefusedError)) for cause in _chain(err))


def stopped_waiting(err: BaseException) -> bool:
    """True when our side stopped waiting for the reply of a request sent whole: the client's read timeout."""
    return any(isinstance(cause, ReadTimeout) or type(cause).__name__ in _READ_TIMEOUTS for cause in _chain(err))


def gave_up_waiting(err: BaseException) -> bool:
    """True when `err` ended a request the provider received and may have answered and billed (see the module)."""
    if stopped_waiting(err):
        return True  # LiteLLM's route reports that as a 408 of its own: the chain says so
    if isinstance(err, LMTimeoutError):
        return getattr(err, "status", None) != 408
    return False
