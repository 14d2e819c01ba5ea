"""How long to wait before a failed request (429, 5xx, a timeout, a reset) is sent again: the provider's Retry-After
when it sent one, else a jittered exponential backoff of 0.5 s doubling with each retry, at most 30 s, times a uniform
0.5-1.5. The engine's retries of a piece of work and the call boundary's retries of one call wait alike."""

from __future__ import annotations

from typing import Any


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
