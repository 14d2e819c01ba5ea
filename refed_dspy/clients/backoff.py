"""How long to wait before a failed request (429, 5xx, a timeout, a reset) is sent again: the provider's Retry-After
when it sent one, else a jittered exponential backoff of 0.5 s doubling with each retry, at most 30 s, times a uniform
0.5-1.5. The engine's retries of a piece of work and the call boundary's retries of one call wait alike."""

from __future__ import annotations


def retry_delay_s(retry: int, draw: float, retry_after: float | None = None) -> float:
    """Seconds before retry number `retry` (1 for the first); `draw` is uniform in [0, 1)."""
    if retry_after is not None:
        return retry_after
    return min(30.0, 0.5 * 2 ** (retry - 1)) * (0.5 + draw)
