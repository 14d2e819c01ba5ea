"""Await concurrent LM calls so that none outlives its caller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def gather_settled(*aws: Awaitable[Any]) -> list[Any]:
    """Like asyncio.gather, but wait for every awaitable to finish before raising the first error.

    Plain gather returns at the first exception while its siblings keep running; their LM calls
    would then complete after the caller has accounted the calls, and go uncounted.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)
