"""Which failed LM request reached the provider and may be billed: one the client stopped waiting for.

A request that timed out while the client read its reply (no headers yet, or mid-body) was sent whole: the provider
may be working on it and bill it. One that never connected, or whose body was still being written, was not. DSPy's
client reports a read timeout as an `LMTransportError` caused by its transport's `ReadTimeout`; a provider that says
it timed out (504, a `timeout_error`) is an `LMTimeoutError`, except a 408, which says the request never arrived.
"""

from __future__ import annotations

from dspy._vendor.lm15.transports import ReadTimeout
from dspy.utils.exceptions import LMTimeoutError

_READ_TIMEOUTS = ("ReadTimeout", "APITimeoutError")  # httpx's and the OpenAI SDK's, in a user's own LM


def gave_up_waiting(err: BaseException) -> bool:
    """True when `err` ended a request the provider received and may have answered and billed (see the module)."""
    if isinstance(err, LMTimeoutError):
        return getattr(err, "status", None) != 408
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ReadTimeout) or type(cause).__name__ in _READ_TIMEOUTS:
            return True
        cause = cause.__cause__ or cause.__context__
    return False
